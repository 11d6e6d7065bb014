"""W. Pham's custom nnU-Net v2 normalisation schemes and spacing-agnostic reader, in exact mode.

The references (``tests/data/nnunet_v2_reference``, ``make_reference_custom.py``) were made by
nnU-Net 2.8.1's own predictor with their classes put into nnU-Net's package as their README says:
``Dataset903_PVSAgno``, one T1w channel, ``AgnoSITKIO`` and one plans per scheme; dipy 1.11 (their
code predates dipy 1.12's new ``nlmeans`` default).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.data.nnunet_normalizations import (
    ahe_normalization,
    nlmf_normalization,
    t1w_pvs_normalization,
)
from mednet_pvs.data.nnunet_preprocessing import NnUNetPipeline, preprocess
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.zoo import load_pretrained

REF = Path(__file__).resolve().parents[1] / "data" / "nnunet_v2_reference"
DATASET = "Dataset903_PVSAgno"
#: scheme -> (plans name, cases nnU-Net predicted)
MODELS = {
    "T1wPVSNormalization": ("nnUNetResEncUNetMPlans", ("ras", "lps", "aniso")),
    "AHENormalization": ("nnUNetResEncUNetMPlansAHE", ("ras",)),
    "NLMFNormalization": ("nnUNetResEncUNetMPlansNLMF", ("ras",)),
}
PAIRS = [(scheme, case) for scheme, (_, cases) in MODELS.items() for case in cases]


def _folder(scheme: str) -> Path:
    return REF / "results" / DATASET / f"nnUNetTrainer__{MODELS[scheme][0]}__3d_fullres"


@pytest.fixture(scope="module")
def models():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers; on a loaded 2-core machine far faster than two
    yield {scheme: load_pretrained(str(_folder(scheme)), device="cpu") for scheme in MODELS}
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("scheme", "case"), PAIRS)
def test_matches_nnunet_predictor(models, scheme, case):
    base = REF / "predictions" / f"{DATASET}__{MODELS[scheme][0]}"
    labels_ref = np.asarray(nib.load(base / f"{case}.nii.gz").dataobj)
    pvs_ref = np.load(base / f"{case}_pvs.npz")["probability"].astype(np.float32).T  # nnU-Net's (z, y, x), float16
    model = models[scheme]
    assert model.pipeline.normalization_schemes == (scheme,) and model.pipeline.reader == "AgnoSITKIO"
    pred = model.predict(REF / "inputs" / f"{case}_T1w.nii.gz", tta=False, step=0.5)
    assert pred.mask.shape == labels_ref.shape == pred.scan.shape
    agree = float((pred.mask == labels_ref).mean())
    assert agree >= 0.999, f"labels agree in {agree:.5f} of voxels"
    assert labels_ref.any() and (labels_ref == 0).any()  # the reference is not trivial
    np.testing.assert_allclose(pred.probabilities, pvs_ref, atol=1e-3)


def test_spacing_agnostic_reader_ignores_the_voxel_size():
    image = np.asarray(nib.load(REF / "inputs" / "aniso_T1w.nii.gz").dataobj, dtype=np.float32)
    agno = NnUNetPipeline(reader="AgnoSITKIO", normalization_schemes=("NoNormalization",))
    plain = NnUNetPipeline(reader="SimpleITKIO", normalization_schemes=("NoNormalization",))
    a = preprocess([image], (0.9, 0.9, 3.0), agno)
    assert a.spacing == (1.0, 1.0, 1.0) and a.data.shape[1:] == a.shape_after_cropping  # not resampled
    b = preprocess([image], (0.9, 0.9, 3.0), plain)
    assert b.data.shape[1:] != b.shape_after_cropping  # SimpleITKIO resamples 3 mm to the plans' 1 mm


# --------------------------------------------------------------- schemes vs the libraries called directly
@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """The ras T1w phantom cropped to its nonzero box, nnU-Net axes, float32 (what a scheme receives)."""
    image = np.asarray(nib.load(REF / "inputs" / "ras_T1w.nii.gz").dataobj, dtype=np.float32).transpose(2, 1, 0)
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(image))
    return np.ascontiguousarray(image[box])


def _clip_rescale(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skimage import exposure

    image = image.copy()
    lo, hi = np.min(image[np.where(image != 0)]), np.max(image[np.where(image != 0)])
    image[image < lo] = lo
    image[image > hi] = hi
    p1, p2 = np.percentile(image, (2, 98))
    return exposure.rescale_intensity(image, in_range=(p1, p2)), image > 0


def _nlm(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from dipy.denoise.nlmeans import nlmeans
    from dipy.denoise.noise_estimate import estimate_sigma

    return nlmeans(image, mask=mask, sigma=estimate_sigma(image) / 2, patch_radius=1, block_radius=2, rician=True,
                   method="classic")  # dipy <= 1.11's nlmeans (their code predates dipy 1.12's new default)


def _otsu(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_dilation
    from skimage.filters import threshold_otsu

    return np.where(binary_dilation(image > threshold_otsu(image), iterations=5), image, 0)


def test_t1w_pvs_normalization(crop):
    import torch
    from skimage import exposure

    want = exposure.equalize_adapthist(_nlm(*_clip_rescale(crop)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = t1w_pvs_normalization(crop.copy(), np.zeros_like(crop, np.int8), False, {})
        assert torch.get_num_threads() == 1  # dipy's OpenMP call would leave torch on every core
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(got, want)
    assert 0 <= got.min() < got.max() <= 1


def test_ahe_normalization(crop):
    from skimage import exposure

    cleaned, _ = _clip_rescale(_otsu(crop))
    np.testing.assert_array_equal(ahe_normalization(crop.copy(), None, True, {}), exposure.equalize_adapthist(cleaned))


def test_nlmf_normalization(crop):
    got = nlmf_normalization(crop.copy(), None, True, {})
    np.testing.assert_array_equal(got, _nlm(*_clip_rescale(_otsu(crop))))
    assert not np.array_equal(got, _clip_rescale(_otsu(crop))[0])  # the denoising did something


def test_all_zero_image_is_one_line():
    with pytest.raises(InputError, match="T1wPVSNormalization: the image is zero everywhere"):
        t1w_pvs_normalization(np.zeros((4, 4, 4), np.float32), None, False, {})


# ------------------------------------------------------------------------------ dependencies, reader
def test_missing_dipy_is_one_line(monkeypatch, crop):
    monkeypatch.setitem(sys.modules, "dipy.denoise.nlmeans", None)
    for scheme in (t1w_pvs_normalization, nlmf_normalization, ahe_normalization):
        with pytest.raises(ConfigError) as err:
            scheme(crop.copy(), None, False, {})
        assert "\n" not in str(err.value) and "pip install 'mednet-pvs[nnunet]'" in str(err.value)
        assert "dipy" in str(err.value)


def test_importing_exact_mode_loads_neither_dipy_nor_skimage():
    code = ("import sys, mednet_pvs.data.nnunet_preprocessing as m; "
            "assert 'T1wPVSNormalization' in m.NORMALIZATIONS; "
            "print([k for k in ('dipy', 'skimage') if k in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _edit(folder: Path, name: str, key: str, value: str | None) -> None:
    data = json.loads((folder / name).read_text())
    if value is None:
        data.pop(key)
    else:
        data[key] = value
    (folder / name).write_text(json.dumps(data))


def test_reader_is_the_plans_one_as_in_nnunets_predictor(tmp_path):
    from mednet_pvs.zoo.import_nnunet_v2 import import_nnunet_v2

    folder = tmp_path / "m"
    shutil.copytree(_folder("AHENormalization"), folder)
    assert json.loads((folder / "dataset.json").read_text())["overwrite_image_reader_writer"] == "AgnoSITKIO"
    _edit(folder, "dataset.json", "overwrite_image_reader_writer", "None")  # nnU-Net's "no override"
    assert import_nnunet_v2(folder).pipeline.reader == "AgnoSITKIO"  # plans["image_reader_writer"]
    _edit(folder, "plans.json", "image_reader_writer", "AgnoAHESITKIO")  # their other reader: not reproduced
    with pytest.raises(InputError, match=r"plans.json: image reader 'AgnoAHESITKIO' is not supported"):
        import_nnunet_v2(folder)
    _edit(folder, "plans.json", "image_reader_writer", None)
    _edit(folder, "dataset.json", "overwrite_image_reader_writer", "AgnoSITKIO")
    assert import_nnunet_v2(folder).pipeline.reader == "AgnoSITKIO"  # plans without one: the dataset's override


@pytest.mark.slow
def test_zoo_entry_import_command_keeps_scheme_and_reader(models, tmp_path):
    """``wpham-pvs-t1w``'s command, on the fixture folder: a bundle that still runs their scheme and reader."""
    import shlex

    from mednet_pvs.cli.main import main
    from mednet_pvs.zoo import get_entry

    argv = shlex.split(get_entry("wpham-pvs-t1w").weights.import_command)[1:]
    assert argv[:2] == ["import-nnunet-v2", "-i"] and "Dataset703_PVSpseudo" in argv[2]
    argv[2] = str(_folder("T1wPVSNormalization"))
    argv[argv.index("-o") + 1] = str(tmp_path / "b")
    assert main(argv) == 0
    back = load_pretrained(str(tmp_path / "b"), device="cpu")
    assert back.meta["licence"] == get_entry("wpham-pvs-t1w").licence  # the entry's facts travel with --name
    assert back.pipeline.reader == "AgnoSITKIO" and back.pipeline.normalization_schemes == ("T1wPVSNormalization",)
    image = REF / "inputs" / "aniso_T1w.nii.gz"
    a, b = models["T1wPVSNormalization"].predict(image, tta=False), back.predict(image, tta=False)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
