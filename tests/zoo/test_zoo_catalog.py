"""The catalogue (zoo/catalog.py): entries, their checks, the paper's set-ups, and where the YAML files live."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mednet_pvs.cli.main import main
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.zoo import get_entry, list_models, load_pretrained, model_entries
from mednet_pvs.zoo.catalog import ENTRIES_DIR, ENV_PATH, read_entry

TOP_LEVEL = Path(__file__).resolve().parents[2] / "zoo"
HUB_WEIGHTS = """weights:
  kind: hub
  repo_id: lab/model
  revision: {revision}
  sha256:
    config.json: {sha}
    model.safetensors: {sha}
"""


def test_entries_live_in_one_place_and_the_zoo_readme_lists_them():
    """The package's entries/ (what installed code reads) is the only home of the YAML; zoo/README.md,
    the page for browsing, names every entry."""
    package = sorted(p.stem for p in ENTRIES_DIR.glob("*.yaml"))
    assert package, "no entries shipped"
    assert not list(TOP_LEVEL.glob("*.yaml")), "zoo/ holds YAML copies: the entries live in mednet_pvs/zoo/entries/ only"
    readme = (TOP_LEVEL / "README.md").read_text()
    missing = [name for name in package if f"`{name}`" not in readme]
    assert not missing, f"zoo/README.md does not list {missing}"


def test_paper_entries_say_what_the_paper_reports():
    t2w, nnunet, t1w = get_entry("mednet-pvs-t2w"), get_entry("nnunet-pvs-t2w"), get_entry("mednet-pvs-t1w")
    assert (t2w.contrast, t2w.regions, t2w.network["family"], t2w.network["size"], t2w.network["kernel_size"]) == (
        "T2w", ("white matter",), "mednext", "L", 5)
    assert [(f.metric, f.region, f.value) for f in t2w.validation] == [("voxel Dice", "white matter", 0.88)]
    assert [(f.metric, f.region, f.value) for f in nnunet.validation] == [("voxel Dice", "white matter", 0.89)]
    assert nnunet.network["family"] == "generic_unet_v1" and "HCP-Aging" in nnunet.training_data
    figures = {(f.metric, f.region, f.protocol): f.value for f in t1w.validation}
    assert figures == {
        ("voxel Dice", "white matter", "5-fold cross-validation"): 0.51,
        ("voxel Dice", "basal ganglia", "5-fold cross-validation"): 0.53,
        ("voxel Dice", "white matter", "leave-one-site-out"): 0.38,
        ("voxel Dice", "basal ganglia", "leave-one-site-out"): 0.35,
        ("cluster Dice", "white matter", "leave-one-site-out"): 0.61,
        ("cluster Dice", "basal ganglia", "leave-one-site-out"): 0.62,
    }
    assert "40 T1-weighted scans from 7 studies" in t1w.training_data and t1w.regions == ("white matter", "basal ganglia")
    for e in (t2w, nnunet, t1w):
        w = e.weights
        assert w.kind == "external" and not w.loadable
        assert "data/code availability statement" in w.how_to_get and "Not on the Hugging Face Hub" in w.how_to_get
        assert not re.search(r"https?://", w.how_to_get), "no invented download links"
        assert w.import_command.startswith("mednet-pvs import-nnunet-v1 ") and w.import_command.endswith(f"--name {e.name}")
        assert "arXiv:2508.20256" in e.citation


def test_external_entries_refuse_to_load_and_say_how(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    with pytest.raises(ConfigError, match=r"mednet-pvs-t2w: no public weights to download\. .*availability statement.*"
                                          r"Command: `mednet-pvs import-nnunet-v1 .* -o mednet-pvs-t2w --name mednet-pvs-t2w`"):
        load_pretrained("mednet-pvs-t2w")
    assert list(tmp_path.iterdir()) == []  # nothing fetched or written


@pytest.mark.parametrize(
    ("entry", "release"),
    [("mednet-pvs-t2w", "mednext_release"),
     ("nnunet-pvs-t2w", "generic_release")],
)
def test_the_entrys_import_command_works(entry, release, request, tmp_path):
    """The command printed by the entry, with the placeholder filled in, makes a loadable bundle."""
    argv = shlex.split(get_entry(entry).weights.import_command)[1:]
    argv[argv.index("-i") + 1] = str(request.getfixturevalue(release))
    argv[argv.index("-o") + 1] = str(tmp_path / entry)
    assert main(argv) == 0
    model = load_pretrained(tmp_path / entry, device="cpu")
    assert model.name == entry and model.meta["zoo_entry"] == entry


def test_list_models_and_lookup():
    table = list_models()
    assert {"mednet-pvs-t2w", "nnunet-pvs-t2w", "mednet-pvs-t1w", "frangi-t2w"} <= set(table.index)
    assert list(table.columns) == ["contrast", "network", "regions", "validation", "weights", "title"]
    assert table.loc["mednet-pvs-t2w", "validation"] == "voxel Dice WM 0.88"
    assert table.loc["mednet-pvs-t1w", "regions"] == "WM, BG"
    assert list(list_models("mednet-pvs-t*").index) == ["mednet-pvs-t1w", "mednet-pvs-t2w"]
    assert list(list_models("*synth*").index) == ["mednet-pvs-synth-any", "mednet-pvs-synth-t1w", "mednet-pvs-synth-t2w"]
    assert table.loc["mednet-pvs-synth-t2w", "weights"] == "bundled with the package"
    assert get_entry("frangi").name == "frangi-t2w"  # alias
    with pytest.raises(ConfigError, match=r"unknown model 'mednet-pvs-t3w'\. Did you mean mednet-pvs-t2w.*Known models: frangi-flair"):
        get_entry("mednet-pvs-t3w")


def test_frangi_entries_load_the_baseline():
    model = load_pretrained("frangi")
    assert model.name == "frangi-t2w" and model.meta["contrast"] == "T2w" and model.config.polarity == "bright"
    assert load_pretrained("frangi-t1w").config.polarity == "dark"


def _write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ntitle: test model\ncontrast: T2w\n{body}")
    return path


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (HUB_WEIGHTS.format(revision="main", sha="a" * 64), "full 40-hex commit id"),
        (HUB_WEIGHTS.format(revision="b" * 40, sha="xyz"), "64-hex sha256"),
        ("weights:\n  kind: hub\n  repo_id: lab/model\n", "missing key\\(s\\) revision, sha256"),
        ("weights:\n  kind: magic\n", "weights.kind must be one of hub, bundled, external, frangi"),
        ("weights:\n  kind: frangi\n  contrast: T2w\nfigures: 1\n", "unknown key\\(s\\) figures"),
        ("weights:\n  kind: frangi\n  contrast: T2w\nvalidation:\n  - metric: Dice\n    value: high\n", "must be a number"),
        ("weights: [\n", "not a readable YAML entry"),
    ],
)
def test_bad_entries_name_the_file(tmp_path, monkeypatch, body, problem):
    path = _write(tmp_path / "extra", "my-model", body)
    with pytest.raises(InputError, match=f"{re.escape(str(path))}: .*{problem}"):
        read_entry(path)
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "extra"))
    with pytest.raises(InputError, match=re.escape(str(path))):
        model_entries()


def test_extra_entry_folders(tmp_path, monkeypatch):
    _write(tmp_path / "lab", "lab-frangi", "weights:\n  kind: frangi\n  contrast: FLAIR\n")
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "lab"))
    assert load_pretrained("lab-frangi").config.polarity == "dark"
    wrong = _write(tmp_path / "lab2", "other", "weights:\n  kind: frangi\n  contrast: T2w\n")
    wrong.rename(tmp_path / "lab2" / "renamed.yaml")
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "lab2"))
    with pytest.raises(InputError, match=r"renamed\.yaml: name 'other' must be .* equal the file name 'renamed'"):
        model_entries()
    _write(tmp_path / "lab3", "mednet-pvs-t2w", "weights:\n  kind: frangi\n  contrast: T2w\n")
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "lab3"))
    with pytest.raises(InputError, match=r"name 'mednet-pvs-t2w' is already used by .*entries/mednet-pvs-t2w\.yaml"):
        model_entries()
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "missing"))
    with pytest.raises(InputError, match="named in \\$MEDNET_PVS_ZOO_PATH but not a folder"):
        model_entries()


def test_bundled_entries_load_the_packaged_folder(tmp_path, monkeypatch, mednext_release):
    """Ready for bundled default models: an entry naming a folder under mednet_pvs/zoo/bundled/."""
    from mednet_pvs.zoo import catalog, save_pretrained
    from mednet_pvs.zoo.import_nnunet_v1 import import_nnunet_v1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = import_nnunet_v1(mednext_release, folds=[0], device="cpu", name="default-t2w")
    save_pretrained(model, tmp_path / "bundled" / "default_t2w")
    monkeypatch.setattr(catalog, "BUNDLED_DIR", tmp_path / "bundled")
    _write(tmp_path / "entries", "default-t2w", "weights:\n  kind: bundled\n  folder: default_t2w\n")
    _write(tmp_path / "entries", "broken", "weights:\n  kind: bundled\n  folder: nowhere\n")
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "entries"))
    loaded = load_pretrained("default-t2w", device="cpu")
    assert loaded.name == "default-t2w" and len(loaded.networks) == 1
    assert get_entry("default-t2w").weights.describe() == "bundled with the package"
    with pytest.raises(InputError, match="bundled model of 'broken' is missing from this installation"):
        load_pretrained("broken")


def test_zoo_import_and_registry_stay_light():
    """Importing the zoo and reading the registry (what `mednet-pvs models` does) need neither torch nor the Hub client."""
    code = ("import sys, mednet_pvs.zoo; mednet_pvs.zoo.model_entries(); "
            "bad = [m for m in ('torch', 'huggingface_hub', 'torchio', 'pandas') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
