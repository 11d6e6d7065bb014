"""The Hub path, for real over HTTP: huggingface_hub's own client against a loopback Hub (see _zoo_fakehub)."""
from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.zoo import UnpinnedRevisionWarning, load_pretrained, push_to_hub, save_pretrained
from mednet_pvs.zoo.import_nnunet_v1 import import_nnunet_v1
from mednet_pvs.zoo.catalog import ENV_PATH

REPO = "lab/tiny-mednext"


@pytest.fixture(scope="module")
def tiny(mednext_release):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_nnunet_v1(mednext_release, folds=[0], name="mednet-pvs-t2w", device="cpu")


@pytest.fixture(scope="module")
def tiny_files(tiny, tmp_path_factory) -> dict[str, bytes]:
    folder = save_pretrained(tiny, tmp_path_factory.mktemp("bundle") / "b", load_as=f"hf://{REPO}")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.networks[0].state_dict().values(), b.networks[0].state_dict().values()))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_push_then_load_pinned_and_cached(fake_hub, tiny, tmp_path, monkeypatch):
    result = push_to_hub(tiny, REPO, token="hf_test_token")
    # what the Hub now holds: the bundle, weights through LFS (PUT to the storage host, then verified)
    files = fake_hub.files(REPO)
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert result.revision == fake_hub.repos[REPO].refs["main"] and result.spec == f"hf://{REPO}@{result.revision}"
    assert result.sha256 == {"config.json": _sha(files["config.json"]), "model.safetensors": _sha(files["model.safetensors"])}
    routes = [(s.server, s.method, s.path.split("?")[0]) for s in fake_hub.requests()]
    assert ("hub", "POST", "/api/repos/create") in routes
    assert ("hub", "POST", f"/{REPO}.git/info/lfs/objects/batch") in routes
    assert ("cdn", "PUT", f"/upload/{result.sha256['model.safetensors']}") in routes
    assert ("hub", "POST", f"/api/models/{REPO}/commit/main") in routes
    card = files["README.md"].decode()
    assert "| voxel Dice | white matter | 0.88 |" in card and f"load_pretrained('hf://{REPO}')" in card
    assert json.loads(files["config.json"])["name"] == "mednet-pvs-t2w"
    assert "kind: hub" in result.entry_weights() and result.revision in result.entry_weights()

    n = len(fake_hub.requests())
    model = load_pretrained(result.spec, device="cpu")
    assert _same_weights(model, tiny) and model.meta["loaded_from"]["revision"] == result.revision
    assert model.meta["loaded_from"]["sha256"] == result.sha256
    downloads = [(s.server, s.method) for s in fake_hub.requests()[n:]]
    assert downloads.count(("hub", "HEAD")) == 2 and ("cdn", "GET") in downloads  # weights from the storage host

    # pinned and cached: no request at all, online or offline
    n = len(fake_hub.requests())
    assert _same_weights(load_pretrained(result.spec, device="cpu"), tiny)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _same_weights(load_pretrained(result.spec, device="cpu"), tiny)
    assert len(fake_hub.requests()) == n


def test_offline_and_not_cached_says_how_to_fetch(fake_hub, tiny_files, monkeypatch):
    sha = fake_hub.commit(REPO, tiny_files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=rf"hf://{REPO}@{sha}: config\.json: not in the local Hugging Face cache and downloads "
                                         rf"are off .*`hf download {REPO} config\.json model\.safetensors --revision {sha} "
                                         r"--local-dir tiny-mednext`.*load_pretrained\('tiny-mednext'\)"):
        load_pretrained(f"hf://{REPO}@{sha}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(InputError, match="not in the local Hugging Face cache and downloads are off"):
        load_pretrained(f"hf://{REPO}@{sha}", local_files_only=True)
    assert fake_hub.requests() == []


def test_endpoint_that_is_not_a_hub_and_not_cached(fake_hub, monkeypatch):
    # (a closed port would do too, but huggingface_hub retries connection errors with back-off for ~20 s)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.cdn)  # answers 403 to /resolve/ like a misconfigured mirror
    with pytest.raises(InputError, match=rf"not in the local Hugging Face cache and the Hub \({fake_hub.cdn}\) cannot be "
                                         r"reached .*hf download"):
        load_pretrained(f"hf://{REPO}@{'a' * 40}")


def test_branch_resolves_to_one_commit_and_pins_stay_put(fake_hub, tiny_files, tiny):
    old = fake_hub.commit(REPO, tiny_files)
    perturbed = dict(tiny_files)
    from safetensors.torch import load as st_load, save as st_save

    tensors = st_load(tiny_files["model.safetensors"])
    tensors = {k: v + 1 if k.endswith("stem.weight") else v for k, v in tensors.items()}
    perturbed["model.safetensors"] = st_save(tensors, metadata={"format": "mednet-pvs-bundle/1"})
    config = json.loads(tiny_files["config.json"])  # a new upload: its config records its own weights' sha256
    perturbed["config.json"] = json.dumps({**config, "weights_sha256": _sha(perturbed["model.safetensors"])}).encode()
    new = fake_hub.commit(REPO, perturbed)
    latest = load_pretrained(f"hf://{REPO}", device="cpu")
    assert latest.meta["loaded_from"]["revision"] == new and not _same_weights(latest, tiny)
    assert _same_weights(load_pretrained(f"hf://{REPO}@{old}", device="cpu"), tiny)
    assert load_pretrained(f"hf://{REPO}", revision=old, device="cpu").meta["loaded_from"]["revision"] == old


def test_registry_hub_entry_checks_sha256(fake_hub, tiny_files, tiny, tmp_path, monkeypatch):
    sha = fake_hub.commit(REPO, tiny_files)
    good = {"config.json": _sha(tiny_files["config.json"]), "model.safetensors": _sha(tiny_files["model.safetensors"])}
    entries = tmp_path / "entries"
    entries.mkdir()
    for name, digests in (("tiny-good", good), ("tiny-tampered", {**good, "model.safetensors": "0" * 64})):
        weights = "\n".join(f"    {k}: '{v}'" for k, v in digests.items())
        (entries / f"{name}.yaml").write_text(
            f"name: {name}\ntitle: tiny\ncontrast: T2w\nweights:\n  kind: hub\n  repo_id: {REPO}\n"
            f"  revision: {sha}\n  sha256:\n{weights}\n")
    monkeypatch.setenv(ENV_PATH, str(entries))
    model = load_pretrained("tiny-good", device="cpu")
    assert _same_weights(model, tiny) and model.meta["loaded_from"]["sha256"] == good
    with pytest.raises(InputError, match=rf"model\.safetensors: sha256 {good['model.safetensors']} does not match the expected "
                                         r"0{64} for hf://lab/tiny-mednext@.*refused"):
        load_pretrained("tiny-tampered")
    with pytest.raises(ConfigError, match=r"pinned by the registry; to load another revision use hf://lab/tiny-mednext@<revision>"):
        load_pretrained("tiny-good", revision="main")


def test_hub_errors_are_named(fake_hub, tiny_files):
    with pytest.raises(InputError, match=r"hf://lab/nothing: config\.json: repository not found, or private"):
        load_pretrained("hf://lab/nothing")
    fake_hub.commit(REPO, {"config.json": tiny_files["config.json"]})
    with pytest.raises(InputError, match=r"hf://lab/tiny-mednext@v9: config\.json: the repository has no revision 'v9'"):
        load_pretrained(f"hf://{REPO}@v9")
    with pytest.raises(InputError, match=r"model\.safetensors: not in the repository: a mednet-pvs model repository holds"):
        load_pretrained(f"hf://{REPO}")


def test_downloaded_config_and_weights_that_do_not_fit(fake_hub, tiny_files):
    config = json.loads(tiny_files["config.json"])
    config["network"]["kwargs"]["kernel_size"] = 3
    fake_hub.commit(REPO, {**tiny_files, "config.json": json.dumps(config).encode()})
    with pytest.raises(InputError, match=r"hf://lab/tiny-mednext: the downloaded bundle does not load: .*model\.safetensors: "
                                         r"weights of 'member_0' do not fit the network 'mednext'"):
        load_pretrained(f"hf://{REPO}")


def test_subfolders_and_the_token_stays_on_the_hub(fake_hub, tiny_files, tiny):
    sha = fake_hub.commit(REPO, {f"t2w/{k}": v for k, v in tiny_files.items()})
    model = load_pretrained(f"hf://{REPO}/t2w@{sha}", token="hf_secret", device="cpu")
    assert _same_weights(model, tiny) and model.meta["loaded_from"]["subfolder"] == "t2w"
    hub = [s for s in fake_hub.requests("hub") if "/resolve/" in s.path]
    cdn = fake_hub.requests("cdn")
    assert hub and all(s.headers.get("authorization") == "Bearer hf_secret" for s in hub)
    assert cdn and all("authorization" not in s.headers for s in cdn)
    assert all(f"/resolve/{sha}/t2w/" in s.path for s in hub)


def test_push_a_bundle_folder_into_a_subfolder(fake_hub, tiny, tmp_path):
    folder = save_pretrained(tiny, tmp_path / "bundle")
    result = push_to_hub(folder, REPO, subfolder="t2w", token="hf_test_token", commit_message="add t2w")
    assert sorted(fake_hub.files(REPO)) == ["t2w/README.md", "t2w/config.json", "t2w/model.safetensors"]
    assert result.spec == f"hf://{REPO}/t2w@{result.revision}"
    assert _same_weights(load_pretrained(result.spec, device="cpu"), tiny)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="model.safetensors: not a readable safetensors file"):
        push_to_hub(folder, REPO, token="hf_test_token")


def test_a_frangi_bundle_needs_no_weights_file(fake_hub, tmp_path):
    from mednet_pvs.inference.frangi_model import FrangiModel

    result = push_to_hub(FrangiModel.for_contrast("T1w"), "lab/frangi", token="hf_test_token")
    assert sorted(fake_hub.files("lab/frangi")) == ["README.md", "config.json"] and "model.safetensors" not in result.sha256
    model = load_pretrained(result.spec)
    assert isinstance(model, FrangiModel) and model.config.polarity == "dark"


def test_unpinned_spec_loads_and_says_once_which_commit_and_how_to_pin(fake_hub, tiny_files, tiny):
    sha = fake_hub.commit(REPO, tiny_files)
    with pytest.warns(UnpinnedRevisionWarning) as record:
        model = load_pretrained(f"hf://{REPO}", device="cpu")
    assert _same_weights(model, tiny) and model.meta["loaded_from"]["revision"] == sha  # still loads: main's commit
    assert [str(w.message) for w in record if w.category is UnpinnedRevisionWarning] == [
        f"hf://{REPO} is not pinned: it follows the branch 'main', which now resolves to commit {sha} and may change; "
        f"write hf://{REPO}@{sha} to load exactly these weights every time"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnpinnedRevisionWarning)  # pinned: not a word
        load_pretrained(f"hf://{REPO}@{sha}", device="cpu")
        load_pretrained(f"hf://{REPO}", revision=sha, device="cpu")


def test_unpinned_spec_warning_is_one_line_on_the_command_line(fake_hub, tiny_files, tmp_path):
    """In a fresh interpreter (pytest records warnings instead of printing them), against the same loopback Hub."""
    import os
    import subprocess
    import sys

    import nibabel as nib
    import numpy as np

    sha = fake_hub.commit(REPO, {f"t2w/{k}": v for k, v in tiny_files.items()})  # a subfolder: kept in the pinned spec
    scan = tmp_path / "sub-01_T2w.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((24, 24, 24), dtype=np.float32), np.diag([0.8, 0.8, 0.8, 1])), scan)
    env = {**os.environ, "HF_HUB_DISABLE_XET": "1"}  # HF_HOME, HF_ENDPOINT, NO_PROXY: set by the fixtures
    res = subprocess.run([sys.executable, "-m", "mednet_pvs.cli.main", "predict", "-i", str(scan), "-o", str(tmp_path / "out"),
                          "-m", f"hf://{REPO}/t2w", "--device", "cpu", "--no-tta"],
                         capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in res.stderr.splitlines() if "is not pinned" in line]
    assert lines == [f"warning: hf://{REPO}/t2w is not pinned: it follows the branch 'main', which now resolves to commit "
                     f"{sha} and may change; write hf://{REPO}/t2w@{sha} to load exactly these weights every time"], res.stderr
    assert "Traceback" not in res.stderr and "model:" in res.stderr, res.stderr
