"""nnU-Net v1 exact-mode references, made by nnU-Net 1.7.1's own code (run in a throwaway venv).

    /tmp/nnv1/bin/python tests/data/nnunet_v1_reference/make_reference.py /tmp/nnunet_v2_reference_train /tmp/nnv1_work [901 902 903]

(set-up of ``/tmp/nnv1`` in ``README.md``). Arguments: the folder of labelled training cases that
``tests/data/nnunet_v2_reference/make_inputs.py`` writes, a scratch folder (deleted first), and
optionally which tasks to (re)make (default all; the others' results are left as they are).

Task901_PVS (one channel, two classes) is described below; Task902_PVSWMH and Task903_PVSCT follow
the same steps (``TASKS``):

- ``Task902_PVSWMH``: **two channels** (T2w, T1w), **three classes** (background, PVS, WMH); one
  plans ``nnUNetPlansv2.1`` (network shrunk to 2 poolings, patch 32^3), ``use_mask_for_norm``
  {0: True, 1: False} (the planner's ``nonCT`` for both), one fold, no mirroring; kept: both
  foreground probabilities, ``<case>_fg.npz`` (key ``probability``, (class 1..2, z, y, x)).
- ``Task903_PVSCT``: two channels (T2w, T1w) both named ``CT`` in dataset.json, so that the
  planner picks ``CT`` and collects the training foreground's ``intensityproperties`` (mean, sd,
  0.5/99.5 percentiles per channel); plans ``nnUNetPlansv2.1_ct`` with normalisation {0: CT,
  1: CT2} and ``use_mask_for_norm`` {0: False, 1: True}; two classes; one fold, no mirroring.

1. A raw task ``Task901_PVS`` (T2w, labels background/PVS) from the three training cases;
   ``nnUNet_plan_and_preprocess`` (``ExperimentPlanner3D_v21``) writes the real v1 plans pickle.
2. Three plans derived from it (network shrunk: 4 base features, small patch; every other entry
   the planner's), each written as a plans pickle beside the planner's:
   - ``nnUNetPlansv2.1``: use_mask_for_norm {0: True}, two folds;
   - ``nnUNetPlansv2.1_nomask``: use_mask_for_norm {0: False}, one fold;
   - ``nnUNetPlansv2.1_aniso``: ``transpose_forward`` [1, 0, 2], target spacing (3, 0.9, 0.9) mm in
     network order (separate-z resampling), use_mask_for_norm {0: True}, one fold.
3. Each fold: ``nnUNetTrainerV2(plans_file, fold, ...)``, ``initialize(training=False)``, network
   parameters perturbed by N(0, 0.1) (seed = fold) and the segmentation heads scaled x4, one epoch
   of logging values of v1's own types, ``trainer.save_checkpoint(.../model_final_checkpoint.model)``
   (writes ``.model`` and ``.model.pkl`` as a v1 training run does).
4. ``nnunet.inference.predict.predict_from_folder`` (all folds, step 0.5, ``save_npz``; mirroring
   TTA on for ``_aniso``, off for the other two to keep the tests fast) on
   ``inputs/{ras,lps,aniso}_T2w.nii.gz`` (``make_inputs.py``); kept: ``<case>.nii.gz`` as v1
   wrote it and the PVS probability on the input grid (v1's cropped ``.npz`` softmax put back into
   its crop box, background outside) as float16 ``<case>_pvs.npz`` (key ``probability``, (z, y, x)).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs"  # make_inputs.py
CASES = ("ras", "lps", "aniso")
LABELS2 = {"0": "background", "1": "PVS"}
LABELS3 = {"0": "background", "1": "PVS", "2": "WMH"}
SMALL = {"patch_size": [32, 32, 32], "pool_op_kernel_sizes": [[2, 2, 2], [2, 2, 2]], "conv_kernel_sizes": [[3, 3, 3]] * 3}
#: task -> modalities (dataset.json), input contrasts (``inputs/<case>_<contrast>``), labels,
#: training label folder and plans variants: identifier -> (plans edits, folds, mirroring TTA)
TASKS = {
    "Task901_PVS": {"modality": {"0": "T2w"}, "contrasts": ("T2w",), "labels": LABELS2, "label_dir": "2class",
                    "plans": {"nnUNetPlansv2.1": ({"mask": [True]}, (0, 1), False),
                              "nnUNetPlansv2.1_nomask": ({"mask": [False]}, (0,), False),
                              "nnUNetPlansv2.1_aniso": ({"mask": [True], "transpose": [1, 0, 2],
                                                         "spacing": [3.0, 0.9, 0.9]}, (0,), True)}},
    "Task902_PVSWMH": {"modality": {"0": "T2w", "1": "T1w"}, "contrasts": ("T2w", "T1w"), "labels": LABELS3,
                       "label_dir": "3class",
                       "plans": {"nnUNetPlansv2.1": ({"mask": [True, False], **SMALL}, (0,), False)}},
    "Task903_PVSCT": {"modality": {"0": "CT", "1": "CT"}, "contrasts": ("T2w", "T1w"), "labels": LABELS2,
                      "label_dir": "2class",
                      "plans": {"nnUNetPlansv2.1_ct": ({"mask": [False, True], "schemes": ["CT", "CT2"], **SMALL},
                                                       (0,), False)}},
}


def _env(work: Path) -> dict[str, str]:
    env = {"nnUNet_raw_data_base": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
           "RESULTS_FOLDER": str(work / "results")}
    for v in env.values():
        Path(v).mkdir(parents=True, exist_ok=True)
    # v1's model_restore calls torch.load(path) without weights_only; torch >= 2.6 then refuses the numpy
    # scalars a v1 checkpoint holds. torch's documented switch restores the old default (no code patched).
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env["nnUNet_def_n_proc"] = "1"
    return env


def make_task(task: str, train: Path, work: Path) -> None:
    spec = TASKS[task]
    raw = work / "raw" / "nnUNet_raw_data" / task
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    (raw / "imagesTs").mkdir()
    cases = []
    for seed in (2, 3, 4):
        for c in range(len(spec["modality"])):
            shutil.copy(train / f"case{seed}_{c:04d}.nii.gz", raw / "imagesTr" / f"pvs_{seed:03d}_{c:04d}.nii.gz")
        shutil.copy(train / spec["label_dir"] / f"case{seed}.nii.gz", raw / "labelsTr" / f"pvs_{seed:03d}.nii.gz")
        cases.append({"image": f"./imagesTr/pvs_{seed:03d}.nii.gz", "label": f"./labelsTr/pvs_{seed:03d}.nii.gz"})
    dataset = {"name": task.split("_", 1)[1], "description": "phantoms", "tensorImageSize": "4D", "reference": "",
               "licence": "", "release": "0.0", "modality": spec["modality"], "labels": spec["labels"],
               "numTraining": len(cases), "numTest": 0, "training": cases, "test": []}
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))


def derive_plans(task: str, work: Path) -> dict[str, Path]:
    """The planner's plans, shrunk, in the task's variants; returns plans identifier -> pickle path."""
    folder = work / "preprocessed" / task
    with open(folder / "nnUNetPlansv2.1_plans_3D.pkl", "rb") as f:
        base = pickle.load(f)
    stage = max(base["plans_per_stage"])
    out = {}
    for ident, (v, _, _) in TASKS[task]["plans"].items():
        plans = pickle.loads(pickle.dumps(base))
        st = plans["plans_per_stage"][stage]
        plans["base_num_features"] = 4
        plans["use_mask_for_norm"] = OrderedDict(enumerate(v["mask"]))
        if "schemes" in v:
            plans["normalization_schemes"] = OrderedDict(enumerate(v["schemes"]))
        if "patch_size" in v:
            st["patch_size"] = np.array(v["patch_size"])
            st["pool_op_kernel_sizes"] = v["pool_op_kernel_sizes"]
            st["conv_kernel_sizes"] = v["conv_kernel_sizes"]
        elif "transpose" not in v:
            st["patch_size"] = np.array([32, 32, 32])
            st["pool_op_kernel_sizes"] = [[2, 2, 2], [2, 2, 2], [2, 2, 2]]
            st["conv_kernel_sizes"] = [[3, 3, 3]] * 4
        else:
            t = v["transpose"]
            plans["transpose_forward"] = t
            plans["transpose_backward"] = [int(np.argwhere(np.array(t) == i)[0][0]) for i in range(3)]
            st["current_spacing"] = np.array(v["spacing"])
            st["patch_size"] = np.array([16, 32, 32])
            st["pool_op_kernel_sizes"] = [[1, 2, 2], [2, 2, 2], [2, 2, 2]]
            st["conv_kernel_sizes"] = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
        st["num_pool_per_axis"] = [sum(1 for p in st["pool_op_kernel_sizes"] if p[a] > 1) for a in range(3)]
        plans["plans_per_stage"] = {stage: st} if stage == 0 else plans["plans_per_stage"]
        path = folder / f"{ident}_plans_3D.pkl"
        with open(path, "wb") as f:
            pickle.dump(plans, f)
        out[ident] = path
    return out


def make_folds(task: str, plans_file: Path, ident: str, folds: tuple[int, ...], work: Path) -> Path:
    import torch
    from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2

    out = work / "results" / "nnUNet" / "3d_fullres" / task / f"nnUNetTrainerV2__{ident}"
    for fold in folds:
        trainer = nnUNetTrainerV2(str(plans_file), fold, output_folder=str(out),
                                  dataset_directory=str(work / "preprocessed" / task), batch_dice=True, stage=0,
                                  unpack_data=True, deterministic=False, fp16=False)
        trainer.initialize(training=False)
        torch.manual_seed(fold)
        with torch.no_grad():
            for name, p in trainer.network.named_parameters():
                p.add_(torch.randn_like(p) * 0.1)
                if name.startswith("seg_outputs"):
                    p.mul_(4)
        # one epoch of logging, with the types v1's training loop stores (numpy floats)
        trainer.epoch = 0
        trainer.all_tr_losses = [np.float64(-0.1)]
        trainer.all_val_losses = [np.float64(-0.2)]
        trainer.all_val_eval_metrics = [np.float64(0.3)]
        trainer.save_debug_information()  # debug.json, and plans.pkl beside the folds (the predictor reads it)
        trainer.save_checkpoint(os.path.join(trainer.output_folder, "model_final_checkpoint.model"))
    return out


def predict(task: str, model: Path, ident: str, folds: tuple[int, ...], tta: bool, work: Path) -> None:
    """v1's ``predict_from_folder``; keeps the label maps and the foreground probabilities on the input grid."""
    from nnunet.inference.predict import predict_from_folder

    contrasts = TASKS[task]["contrasts"]
    inp = work / "inputs" / task
    inp.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        for c, contrast in enumerate(contrasts):
            shutil.copy(INPUTS / f"{case}_{contrast}.nii.gz", inp / f"{case}_{c:04d}.nii.gz")
    raw_out = work / "predictions" / task / ident
    predict_from_folder(str(model), str(inp), str(raw_out), list(folds), save_npz=True, num_threads_preprocessing=1,
                        num_threads_nifti_save=1, lowres_segmentations=None, part_id=0, num_parts=1, tta=tta,
                        mixed_precision=True, overwrite_existing=True, mode="normal", overwrite_all_in_gpu=None,
                        step_size=0.5, checkpoint_name="model_final_checkpoint", disable_postprocessing=True)
    dest = HERE / "predictions" / f"{task}__{ident}"
    dest.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        shutil.copy(raw_out / f"{case}.nii.gz", dest / f"{case}.nii.gz")
        softmax = np.load(raw_out / f"{case}.npz")["softmax"]  # (K, *cropped) float16, v1's axis order
        with open(raw_out / f"{case}.pkl", "rb") as f:
            props = pickle.load(f)
        full = np.zeros((softmax.shape[0] - 1, *props["original_size_of_raw_data"]), np.float16)
        box = tuple(slice(lo, lo + n) for (lo, _), n in zip(props["crop_bbox"], softmax.shape[1:]))
        full[(slice(None), *box)] = softmax[1:]
        if len(full) == 1:  # two classes: the PVS probability
            np.savez_compressed(dest / f"{case}_pvs.npz", probability=full[0])
        else:  # every foreground class
            np.savez_compressed(dest / f"{case}_fg.npz", probability=full)
    (dest / "reference.json").write_text(json.dumps(
        {"folds": list(folds), "tta": tta, "step_size": 0.5, "mixed_precision": True,
         "channels": [f"inputs/<case>_{c}.nii.gz" for c in contrasts],
         "function": "nnunet.inference.predict.predict_from_folder"}, indent=2))


def main() -> None:
    train, work = Path(sys.argv[1]), Path(sys.argv[2])
    tasks = [t for t in TASKS if not sys.argv[3:] or t[4:7] in sys.argv[3:]]
    shutil.rmtree(work, ignore_errors=True)
    env = _env(work)
    os.environ.update(env)
    for task in tasks:
        make_task(task, train, work)
    subprocess.run([str(Path(sys.executable).parent / "nnUNet_plan_and_preprocess"), "-t", *[t[4:7] for t in tasks],
                    "-pl2d", "None", "-tl", "1", "-tf", "1"], check=True, env={**os.environ, **env})
    for task in tasks:
        plans = derive_plans(task, work)
        results = HERE / "results" / task
        shutil.rmtree(results, ignore_errors=True)
        for old in (HERE / "predictions").glob(f"{task}__*"):
            shutil.rmtree(old)
        # mirroring (8 network passes a tile) only where it is cheap, so that the parity tests stay fast
        for ident, (_, folds, tta) in TASKS[task]["plans"].items():
            model = make_folds(task, plans[ident], ident, folds, work)
            predict(task, model, ident, folds, tta, work)
            dest = results / model.name
            for fold in folds:
                (dest / f"fold_{fold}").mkdir(parents=True)
                for suffix in (".model", ".model.pkl"):  # debug.json names absolute scratch paths: not kept
                    shutil.copy(model / f"fold_{fold}" / f"model_final_checkpoint{suffix}", dest / f"fold_{fold}")


if __name__ == "__main__":
    main()
