"""Data layer: cohorts (manifest, BIDS), checks, preprocessing and augmentation (TorchIO), patch
sampling, splits and the Lightning data module.

Typical use::

    from mednet_pvs.data import load_cases, validate_cases, PVSDataModule

    cases = load_cases("cohort/manifest.csv")            # or a BIDS-like folder
    report = validate_cases(cases, skip_bad=True)       # every problem at once
    dm = PVSDataModule("cohort/manifest.csv", augmentation="nnunet", patch_size=128)

Submodules are imported lazily: ``import mednet_pvs.data`` does not import torch or TorchIO
until one of their names is used.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Case": "cases",
    "load_cases": "cases",
    "read_manifest": "cases",
    "scan_bids": "cases",
    "write_manifest": "cases",
    "Problem": "checks",
    "Report": "checks",
    "CaseStats": "checks",
    "validate_cases": "checks",
    "grid_difference": "checks",
    "PreprocessConfig": "preprocessing",
    "build_preprocessing": "preprocessing",
    "subject_from_case": "preprocessing",
    "subject_from_files": "preprocessing",
    "subject_from_arrays": "preprocessing",
    "to_input_grid": "preprocessing",
    "resample_to_grid": "preprocessing",
    "input_grid": "preprocessing",
    "AugmentationConfig": "augmentation",
    "build_augmentation": "augmentation",
    "build_training_transform": "augmentation",
    "label_sampler": "sampling",
    "make_queue": "sampling",
    "patch_loader": "sampling",
    "collate_subjects": "sampling",
    "Split": "splits",
    "make_split": "splits",
    "kfold_splits": "splits",
    "loso_split": "splits",
    "save_split": "splits",
    "load_split": "splits",
    "PVSDataModule": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mednet_pvs.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mednet_pvs.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
