"""mednet-pvs: segment enlarged perivascular spaces (PVS) in brain MRI.

    from mednet_pvs import load_image, make_phantom, load_pretrained, pvs_burden, evaluate

    model = load_pretrained("model_folder/")                # a bundle folder, hf://..., or a zoo name
    pred = model.predict("scan.nii.gz")                     # probabilities + mask on the input grid
    burden = pvs_burden(pred.mask, pred.scan.affine)        # count, volume, per-cluster table

Heavy parts (torch, TorchIO, pandas) load on first use of the names that need them.
"""
from __future__ import annotations

import importlib
from typing import Any

from mednet_pvs.errors import ConfigError, InputError, MednetError
from mednet_pvs.version import __version__
from mednet_pvs.io import Scan, load_image, save_like
from mednet_pvs.synth import PhantomConfig, make_phantom

#: name -> module, imported on first access (PEP 562).
_LAZY = {
    "PVSModel": "mednet_pvs.inference.model",
    "InferenceConfig": "mednet_pvs.inference.settings",
    "Prediction": "mednet_pvs.inference.prediction",
    "CaseOutputs": "mednet_pvs.inference.outputs",
    "predict_batch": "mednet_pvs.inference.batch",
    "pvs_burden": "mednet_pvs.analysis.burden",
    "evaluate": "mednet_pvs.analysis.evaluate",
    "create_network": "mednet_pvs.nets",
    "list_networks": "mednet_pvs.nets",
    "PreprocessConfig": "mednet_pvs.data.preprocessing",
    "PVSDataModule": "mednet_pvs.data.datamodule",
    "load_cases": "mednet_pvs.data.cases",
    "validate_cases": "mednet_pvs.data.checks",
    "load_pretrained": "mednet_pvs.zoo",
    "save_pretrained": "mednet_pvs.zoo",
    "push_to_hub": "mednet_pvs.zoo",
    "list_models": "mednet_pvs.zoo",
    "import_nnunet_v1": "mednet_pvs.zoo",
    "PVSSegmenter": "mednet_pvs.training",
    "finetune": "mednet_pvs.training",
    "export_bundle": "mednet_pvs.training",
    "save_overview": "mednet_pvs.viz",
    "show": "mednet_pvs.viz",
    "show_slices": "mednet_pvs.viz",
    "show_mip": "mednet_pvs.viz",
    "show_mosaic": "mednet_pvs.viz",
    "show_cluster_gallery": "mednet_pvs.viz",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mednet_pvs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "ConfigError",
    "InputError",
    "MednetError",
    "PhantomConfig",
    "Scan",
    "load_image",
    "make_phantom",
    "save_like",
    *_LAZY,
]
