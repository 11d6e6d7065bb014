"""Step 2 of the nnU-Net v2 reference fixtures: result folders and nnU-Net's own predictions.

Runs in a throwaway environment with nnU-Net v2 installed (never in the project's venv; see
README.md here and /work/shared/notes/nnunetv2-on-cpu.md):

    NNV2=/tmp/nnv2/venv/bin/python
    $NNV2 tests/data/nnunet_v2_reference/make_reference.py /tmp/nnunet_v2_reference_train

What it does, with nnU-Net's own code only:
1. two raw datasets from the training cases of ``make_inputs.py``: ``Dataset901_PVS`` (1 channel
   T2w; background, PVS) and ``Dataset902_PVSWMH`` (2 channels T2w, T1w; background, PVS, WMH);
2. fingerprints and plans by nnU-Net's planners (``nnUNetPlannerResEncM`` for 901, the default
   ``ExperimentPlanner`` for 902), then the 3d_fullres network shrunk to 3 stages of 4/8/16 features
   and a small patch, so the folders stay small (every other plans entry is the planner's):
   - ``nnUNetResEncUNetMPlans``: ResEnc-M, 1 mm, z-score inside the nonzero mask, 2 folds;
   - ``nnUNetResEncUNetMPlansAniso``: target spacing 0.9 x 3 x 0.9 mm after transpose_forward
     (1, 0, 2), z-score over the whole crop, 1 fold;
   - 902 ``nnUNetPlans``: PlainConvUNet, two channels, three classes, 1 fold;
3. per fold, an ``nnUNetTrainer`` initialised from those plans (random weights, seed = fold),
   perturbed by N(0, 0.1) and the segmentation heads scaled x4 so classes are not tied, one epoch of
   logging values of nnU-Net's own types, saved with ``trainer.save_checkpoint`` (the real format);
4. ``nnUNetPredictor`` (step 0.5, Gaussian, CPU) on the three stored inputs with
   ``save_probabilities=True``; mirroring TTA on for the two-fold ResEnc model, off for the other
   two (``--disable_tta``), to keep the parity tests fast (``reference.json`` there says which).
Outputs land in ``results/`` (the trainer folders: plans.json, dataset.json, fold_k/checkpoint_final.pth)
and ``predictions/<dataset>__<plans>/<case>.nii.gz`` + ``<case>.npz`` (probabilities as nnU-Net wrote them).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if "NNV2REF_WORK" not in os.environ:  # once: worker processes re-import this module
    os.environ["NNV2REF_WORK"] = tempfile.mkdtemp(prefix="nnv2ref_")
for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ[key] = str(Path(os.environ["NNV2REF_WORK"]) / key)
    Path(os.environ[key]).mkdir(exist_ok=True)
os.environ.setdefault("nnUNet_def_n_proc", "1")
WORK = Path(os.environ["NNV2REF_WORK"])

import torch  # noqa: E402
from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments  # noqa: E402
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: E402
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402

CASES = ("ras", "lps", "aniso")
DATASETS = {
    901: ("Dataset901_PVS", {"0": "T2w"}, {"background": 0, "PVS": 1}, "2class"),
    902: ("Dataset902_PVSWMH", {"0": "T2w", "1": "T1w"}, {"background": 0, "PVS": 1, "WMH": 2}, "3class"),
}


def raw_dataset(dataset_id: int, train: Path) -> None:
    name, channels, labels, lab = DATASETS[dataset_id]
    root = WORK / "nnUNet_raw" / name
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    for seed in (2, 3, 4):
        for c in channels:
            shutil.copy(train / f"case{seed}_000{c}.nii.gz", root / "imagesTr" / f"case{seed}_000{c}.nii.gz")
        shutil.copy(train / lab / f"case{seed}.nii.gz", root / "labelsTr" / f"case{seed}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": channels, "labels": labels, "numTraining": 3, "file_ending": ".nii.gz"}, indent=2))


def shrink(cfg: dict, patch: list[int], strides: list[list[int]]) -> dict:
    """The planner's configuration with a 3-stage, 4/8/16-feature network and the given patch."""
    kw = cfg["architecture"]["arch_kwargs"]
    n = len(strides)
    kw["n_stages"] = n
    kw["features_per_stage"] = [4, 8, 16][:n]
    kw["strides"] = strides
    kw["kernel_sizes"] = [[3, 3, 3]] * n
    for key in ("n_blocks_per_stage", "n_conv_per_stage"):
        if key in kw:
            kw[key] = kw[key][:n]
    kw["n_conv_per_stage_decoder"] = kw["n_conv_per_stage_decoder"][: n - 1]
    cfg["patch_size"] = patch
    cfg["batch_size"] = 2
    return cfg


def write_plans(dataset_id: int, planner: str, plans_name: str) -> dict:
    name = DATASETS[dataset_id][0]
    pre = WORK / "nnUNet_preprocessed" / name
    if not (pre / f"{plans_name}.json").is_file():  # a re-run with NNV2REF_WORK set reuses the planner's output
        extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, clean=True, verbose=False)
        plan_experiments([dataset_id], planner)
    return json.loads((pre / f"{plans_name}.json").read_text())


def save_plans(dataset_id: int, plans: dict) -> None:
    pre = WORK / "nnUNet_preprocessed" / DATASETS[dataset_id][0]
    (pre / f"{plans['plans_name']}.json").write_text(json.dumps(plans, indent=2))


def make_folds(dataset_id: int, plans: dict, folds: tuple[int, ...]) -> Path:
    name, *_ = DATASETS[dataset_id]
    dataset_json = json.loads((WORK / "nnUNet_raw" / name / "dataset.json").read_text())
    out = None
    for fold in folds:
        torch.manual_seed(fold)
        run_plans = {**json.loads(json.dumps(plans)), "continue_training": False}  # as run_training passes it
        trainer = nnUNetTrainer(run_plans, "3d_fullres", fold, dataset_json, device=torch.device("cpu"))
        data_folder = Path(trainer.preprocessed_dataset_folder)  # initialize() only looks at its file endings
        data_folder.mkdir(parents=True, exist_ok=True)
        (data_folder / "placeholder.b2nd").touch()
        trainer.initialize()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        _, _, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        trainer.inference_allowed_mirroring_axes = mirror_axes
        with torch.no_grad():
            for p in trainer.network.parameters():
                p.add_(torch.randn_like(p) * 0.1)
            for layer in trainer.network.decoder.seg_layers:
                layer.weight.mul_(4.0)
        # one epoch of logging, with the types nnU-Net's training loop logs (numpy floats, lists)
        trainer.logger.log("mean_fg_dice", np.float64(0.5), 0)
        trainer.logger.log("ema_fg_dice", np.float64(0.5), 0)
        trainer.logger.log("dice_per_class_or_region", [np.float64(0.5)] * (len(dataset_json["labels"]) - 1), 0)
        trainer.logger.log("train_losses", np.float64(-0.1), 0)
        trainer.logger.log("val_losses", np.float64(-0.1), 0)
        trainer.logger.log("lrs", 0.01, 0)
        trainer.logger.log("epoch_start_timestamps", time.time(), 0)
        trainer.logger.log("epoch_end_timestamps", time.time(), 0)
        trainer._best_ema = np.float64(0.5)
        (Path(trainer.output_folder)).mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
        out = Path(trainer.output_folder_base)
    # what nnUNetTrainer.on_train_start writes beside the folds
    (out / "plans.json").write_text(json.dumps(plans, indent=4, sort_keys=False))
    (out / "dataset.json").write_text(json.dumps(dataset_json, indent=4, sort_keys=False))
    return out


def predict(folder: Path, folds: tuple[int, ...], channels: int, dest: Path, tta: bool) -> None:
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                                perform_everything_on_device=True, device=torch.device("cpu"),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=folds, checkpoint_name="checkpoint_final.pth")
    names = ("T2w", "T1w")[:channels]
    files = [[str(HERE / "inputs" / f"{case}_{n}.nii.gz") for n in names] for case in CASES]
    dest.mkdir(parents=True, exist_ok=True)
    predictor.predict_from_files_sequential(files, [str(dest / case) for case in CASES], save_probabilities=True,
                                            overwrite=True)
    for case in CASES:
        (dest / f"{case}.pkl").unlink(missing_ok=True)  # properties: not needed, and a pickle
    for extra in ("plans.json", "dataset.json"):  # copies of the model folder's
        (dest / extra).unlink(missing_ok=True)
    # the predictor's settings (its own predict_from_raw_data_args.json does not record them)
    (dest / "reference.json").write_text(json.dumps({"use_mirroring": tta, "tile_step_size": 0.5, "use_gaussian": True,
                                                     "folds": list(folds), "checkpoint_name": "checkpoint_final.pth",
                                                     "device": "cpu", "nnunetv2": "2.8.1"}, indent=2))


def main() -> None:
    train = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/nnunet_v2_reference_train")
    for d in DATASETS:
        raw_dataset(d, train)
    models = []
    # 901: ResEnc-M, 1 mm, mask for norm; and the anisotropic variant
    plans = write_plans(901, "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans")
    cfg = plans["configurations"]["3d_fullres"]
    shrink(cfg, [24, 32, 24], [[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    cfg["use_mask_for_norm"] = [True]
    plans["configurations"] = {"3d_fullres": cfg}
    save_plans(901, plans)
    models.append((901, plans, (0, 1), 1, True))
    aniso = json.loads(json.dumps(plans))
    aniso["plans_name"] = "nnUNetResEncUNetMPlansAniso"
    aniso["transpose_forward"], aniso["transpose_backward"] = [1, 0, 2], [1, 0, 2]
    acfg = aniso["configurations"]["3d_fullres"]
    shrink(acfg, [32, 16, 32], [[1, 1, 1], [2, 1, 2], [2, 2, 2]])
    acfg["spacing"] = [0.9, 3.0, 0.9]
    acfg["use_mask_for_norm"] = [False]
    save_plans(901, aniso)
    models.append((901, aniso, (0,), 1, False))
    # 902: plain U-Net, two channels, three classes
    plans2 = write_plans(902, "ExperimentPlanner", "nnUNetPlans")
    cfg2 = plans2["configurations"]["3d_fullres"]
    shrink(cfg2, [24, 24, 24], [[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    plans2["configurations"] = {"3d_fullres": cfg2}
    save_plans(902, plans2)
    models.append((902, plans2, (0,), 2, False))

    results = HERE / "results"
    shutil.rmtree(results, ignore_errors=True)
    shutil.rmtree(HERE / "predictions", ignore_errors=True)
    for dataset_id, p, folds, channels, tta in models:
        folder = make_folds(dataset_id, p, folds)
        name = DATASETS[dataset_id][0]
        dest = results / name / folder.name
        shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("*.txt", "*.png", "debug.json"))
        t0 = time.perf_counter()
        predict(dest, folds, channels, HERE / "predictions" / f"{name}__{p['plans_name']}", tta)
        print(f"{name} {p['plans_name']}: folds {folds}, predicted {len(CASES)} cases in {time.perf_counter() - t0:.1f} s")
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
