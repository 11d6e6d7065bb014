"""nnU-Net v2 references for W. Pham's custom normalisation schemes and spacing-agnostic reader.

Runs in the throwaway nnU-Net environment of ``make_reference.py`` (README.md here), with dipy
1.11.0 on the path (``pip install --no-deps --target /tmp/nnv2_dipy111 dipy==1.11.0``; scikit-image
and scipy are nnU-Net's own dependencies). dipy < 1.12 because their code calls ``nlmeans`` without
``method`` and dipy 1.12 changed its default algorithm (``mednet_pvs.data.nnunet_normalizations``):

    PYTHONPATH=/tmp/nnv2_dipy111 OMP_NUM_THREADS=1 /tmp/nnv2/venv/bin/python \\
        tests/data/nnunet_v2_reference/make_reference_custom.py /tmp/nnunet_v2_reference_train \\
        /work/.mirror/wpham17+nnUNet-Perivascular-Spaces/repo

The second argument is a git directory of github.com/wpham17/nnUNet-Perivascular-Spaces holding
commit :data:`COMMIT`. What it does, with nnU-Net's own code and theirs only:

1. copies the installed ``nnunetv2`` package to a temporary folder and puts their five files into
   it exactly where their README says (``imageio/agnositk_reader_writer.py``,
   ``imageio/agno_ahe_sitk_reader_writer.py``, ``imageio/reader_writer_registry.py``,
   ``preprocessing/normalization/default_normalization_schemes.py``,
   ``preprocessing/normalization/map_channel_name_to_normalization.py``, read from :data:`COMMIT`),
   and imports nnU-Net from that copy (the environment's own nnU-Net is left untouched);
2. ``Dataset903_PVSAgno``: the T1w training cases of ``make_inputs.py`` (one channel, named
   ``t1_pvs_norm`` so that their planner picks ``T1wPVSNormalization``), two classes,
   ``"overwrite_image_reader_writer": "AgnoSITKIO"`` in dataset.json;
3. fingerprint and plans by ``nnUNetPlannerResEncM`` (their models are ``nnUNetResEncUNetMPlans``),
   the network shrunk as in ``make_reference.py``; plans ``nnUNetResEncUNetMPlans``
   (``T1wPVSNormalization``), ``nnUNetResEncUNetMPlansAHE`` (``AHENormalization``) and
   ``nnUNetResEncUNetMPlansNLMF`` (``NLMFNormalization``), one fold each (``make_reference.make_folds``);
4. ``nnUNetPredictor`` (step 0.5, Gaussian, no mirroring, CPU) on ``inputs/*_T1w.nii.gz``: all three
   cases for ``T1wPVSNormalization``, the ``ras`` case for the other two; ``<case>.nii.gz`` as
   nnU-Net wrote it; of its ``<case>.npz`` only the PVS probability (class 1; class 0 is 1 minus it)
   is kept, as float16 (rounding < 2.5e-4), in ``<case>_pvs.npz`` (key ``probability``, nnU-Net's
   (z, y, x) axes), to keep the files small.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: wpham17/nnUNet-Perivascular-Spaces, "Updated model scripts" (2025-11-04).
COMMIT = "d514866ab500b59079c8de022d66bea401003513"
THEIR_FILES = (
    "imageio/agno_ahe_sitk_reader_writer.py",
    "imageio/agnositk_reader_writer.py",
    "imageio/reader_writer_registry.py",
    "preprocessing/normalization/default_normalization_schemes.py",
    "preprocessing/normalization/map_channel_name_to_normalization.py",
)
DATASET_ID, DATASET = 903, "Dataset903_PVSAgno"
#: plans name -> (normalisation scheme, cases predicted)
VARIANTS = {
    "nnUNetResEncUNetMPlans": ("T1wPVSNormalization", ("ras", "lps", "aniso")),
    "nnUNetResEncUNetMPlansAHE": ("AHENormalization", ("ras",)),
    "nnUNetResEncUNetMPlansNLMF": ("NLMFNormalization", ("ras",)),
}


def patched_nnunet(repo: Path) -> Path:
    """A copy of the installed nnunetv2 with their files put in; returns the folder to put on sys.path."""
    import importlib.util

    installed = Path(importlib.util.find_spec("nnunetv2").origin).parent
    root = Path(os.environ.setdefault("NNV2CUSTOM_PKG", tempfile.mkdtemp(prefix="nnv2custom_pkg_")))
    dest = root / "nnunetv2"
    if not dest.is_dir():
        shutil.copytree(installed, dest, ignore=shutil.ignore_patterns("__pycache__"))
        for rel in THEIR_FILES:
            text = subprocess.run(["git", "--git-dir", str(repo), "show", f"{COMMIT}:nnUNetv2/{rel}"],
                                  check=True, capture_output=True, text=True).stdout
            (dest / rel).write_text(text)
    return root


def main() -> None:
    train = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/nnunet_v2_reference_train")
    repo = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/work/.mirror/wpham17+nnUNet-Perivascular-Spaces/repo")
    pkg = patched_nnunet(repo)
    sys.path.insert(0, str(pkg))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(pkg), *filter(None, [os.environ.get("PYTHONPATH")])])
    sys.path.insert(0, str(HERE))
    import inspect

    import make_reference as mr  # sets nnU-Net's folders, imports nnU-Net (from the copy)
    import nnunetv2
    import numpy as np
    import torch
    from dipy.denoise.nlmeans import nlmeans

    assert "method" not in inspect.signature(nlmeans).parameters, "dipy < 1.12 wanted (see the docstring)"
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    assert Path(nnunetv2.__file__).is_relative_to(pkg), nnunetv2.__file__
    mr.DATASETS[DATASET_ID] = (DATASET, {"0": "t1_pvs_norm"}, {"background": 0, "PVS": 1}, "2class")
    root = mr.WORK / "nnUNet_raw" / DATASET
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for seed in (2, 3, 4):  # channel 1 of the training cases is the T1w
        shutil.copy(train / f"case{seed}_0001.nii.gz", root / "imagesTr" / f"case{seed}_0000.nii.gz")
        shutil.copy(train / "2class" / f"case{seed}.nii.gz", root / "labelsTr" / f"case{seed}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "t1_pvs_norm"}, "labels": {"background": 0, "PVS": 1}, "numTraining": 3,
        "file_ending": ".nii.gz", "overwrite_image_reader_writer": "AgnoSITKIO"}, indent=2))

    plans = mr.write_plans(DATASET_ID, "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans")
    assert plans["image_reader_writer"] == "AgnoSITKIO", plans["image_reader_writer"]
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["normalization_schemes"] == ["T1wPVSNormalization"], cfg["normalization_schemes"]
    mr.shrink(cfg, [24, 32, 24], [[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    plans["configurations"] = {"3d_fullres": cfg}

    results = HERE / "results" / DATASET
    shutil.rmtree(results, ignore_errors=True)
    for plans_name, (scheme, cases) in VARIANTS.items():
        p = json.loads(json.dumps(plans))
        p["plans_name"] = plans_name
        p["configurations"]["3d_fullres"]["normalization_schemes"] = [scheme]
        mr.save_plans(DATASET_ID, p)
        folder = mr.make_folds(DATASET_ID, p, (0,))
        dest = results / folder.name
        shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("*.txt", "*.png", "debug.json"))
        out = HERE / "predictions" / f"{DATASET}__{plans_name}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                    perform_everything_on_device=True, device=torch.device("cpu"),
                                    verbose=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(dest), use_folds=(0,), checkpoint_name="checkpoint_final.pth")
        t0 = time.perf_counter()
        predictor.predict_from_files_sequential([[str(HERE / "inputs" / f"{c}_T1w.nii.gz")] for c in cases],
                                                [str(out / c) for c in cases], save_probabilities=True, overwrite=True)
        for c in cases:
            (out / f"{c}.pkl").unlink(missing_ok=True)
            probs = np.load(out / f"{c}.npz")["probabilities"]
            np.savez_compressed(out / f"{c}_pvs.npz", probability=probs[1].astype(np.float16))
            (out / f"{c}.npz").unlink()
        for extra in ("plans.json", "dataset.json"):
            (out / extra).unlink(missing_ok=True)
        print(f"{DATASET} {plans_name} ({scheme}): predicted {len(cases)} case(s) in {time.perf_counter() - t0:.1f} s")
    shutil.rmtree(mr.WORK)
    shutil.rmtree(pkg)


if __name__ == "__main__":
    main()
