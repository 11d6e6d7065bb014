"""load_pretrained on folders and names, save_pretrained and the model card."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from _zoo_helpers import ds_outputs
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference.nnunet_model import NnUNetModel
from mednet_pvs.zoo import load_pretrained, model_card, save_pretrained
from mednet_pvs.zoo.import_nnunet_v1 import ZooImportWarning, import_nnunet_v1


@pytest.fixture(scope="module")
def imported_t2w(mednext_release):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZooImportWarning)
        return import_nnunet_v1(mednext_release, name="mednet-pvs-t2w", device="cpu")


def test_nnunet_v1_folder_is_imported_on_the_fly(mednext_release, mednext_reference):
    sd, x, outputs = mednext_reference
    with pytest.warns(ZooImportWarning):
        model = load_pretrained(mednext_release, device="cpu")
    assert isinstance(model, NnUNetModel) and model.pipeline.version == 1 and len(model.networks) == 2
    with torch.no_grad():
        assert torch.allclose(model.networks[0](x), outputs[0], atol=1e-5, rtol=0)


def test_save_pretrained_round_trip_with_model_card(tmp_path, imported_t2w, mednext_reference):
    _, x, outputs = mednext_reference
    folder = save_pretrained(imported_t2w, tmp_path / "mednet-pvs-t2w")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "mednet-pvs-bundle/1" and config["members"] == ["member_0", "member_1"]
    assert config["kind"] == "nnunet" and config["nnunet"]["version"] == 1  # exact mode travels with the bundle
    assert config["nnunet"]["spacing"] == [0.8, 0.8, 0.8] and config["inference"]["window"]["patch_size"] == [128, 128, 128]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: mednet-pvs\n")
    assert "| voxel Dice | white matter | 0.88 | 5-fold cross-validation | HCP-Aging T2w |" in card
    assert "## Training data" in card and "HCP-Aging" in card
    assert "Set by the authors' release" in card and "arXiv:2508.20256" in card and "@article{low2025mednetpvs" in card
    assert "names MedNeXt-L" in card  # the import warning travels with the weights
    assert f"load_pretrained({str(folder)!r})" in card
    loaded = load_pretrained(folder, device="cpu")
    assert loaded.name == "mednet-pvs-t2w" and loaded.meta == json.loads(json.dumps(imported_t2w.meta))
    for a, b in zip(loaded.networks, imported_t2w.networks):
        for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(va, vb), k
    with torch.no_grad(), ds_outputs(loaded.networks[0]) as net:
        for g, ref in zip(net(x), outputs):
            assert torch.allclose(g, ref, atol=1e-5, rtol=0)


def test_generic_unet_bundle_round_trip(tmp_path, generic_release, generic_reference):
    _, x, outputs = generic_reference
    model = import_nnunet_v1(generic_release, name="nnunet-pvs-t2w", device="cpu")
    loaded = load_pretrained(save_pretrained(model, tmp_path / "nnunet"), device="cpu")
    with torch.no_grad():
        assert torch.allclose(loaded.networks[0](x), outputs[0], atol=1e-5, rtol=0)


def test_config_and_weights_that_do_not_fit_are_refused(tmp_path, imported_t2w):
    folder = save_pretrained(imported_t2w, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["network"]["kwargs"]["n_channels"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"model\.safetensors: weights of 'member_0' do not fit the network 'mednext'"):
        load_pretrained(folder)
    config["members"].append("member_2")
    config["network"]["kwargs"]["n_channels"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="no weights for member 'member_2'"):
        load_pretrained(folder)


def test_what_is_not_a_model_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"unknown model 'mednet-pvs-t2'\. Did you mean mednet-pvs-t2w"):
        load_pretrained("mednet-pvs-t2")
    with pytest.raises(InputError, match=r"lab/model: model folder not found \(for a Hub repository write hf://lab/model\)"):
        load_pretrained("lab/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: not a model folder: no config\.json .* not an nnU-Net v1 result folder"):
        load_pretrained("empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="file.txt: not a model folder"):
        load_pretrained("file.txt")
    with pytest.raises(ConfigError, match="is not a Hub model spec"):
        load_pretrained("hf://just-a-name")
    with pytest.raises(ConfigError, match=r"'frangi' has no Hub revisions"):
        load_pretrained("frangi", revision="main")


def test_a_local_folder_wins_over_a_registry_name(tmp_path, monkeypatch, imported_t2w):
    """After `import-nnunet-v1 ... -o mednet-pvs-t2w`, the name loads that folder from the working directory."""
    save_pretrained(imported_t2w, tmp_path / "mednet-pvs-t2w")
    monkeypatch.chdir(tmp_path)
    assert load_pretrained("mednet-pvs-t2w", device="cpu").meta["zoo_entry"] == "mednet-pvs-t2w"


def test_model_card_without_figures(imported_t2w):
    config = imported_t2w.bundle_config().replace(meta={})
    card = model_card(config, load_as="hf://lab/model")
    assert "No validation figures recorded" in card and "load_pretrained('hf://lab/model')" in card
    assert "Not recorded: ask the model's authors" in card and "-m hf://lab/model" in card
    # a training config's "phantoms: seed 0" comes back from jsonargparse as a mapping: written, not a crash at export
    card = model_card(config.replace(meta={"training_data": {"phantoms": "seed 0"}}))
    assert '## Training data\n\n{"phantoms": "seed 0"}' in card
