"""Inference: preprocess -> sliding window (+TTA, ensemble) -> back onto the input's grid.

    from mednet_pvs.inference import PVSModel
    model = PVSModel.from_pretrained("model_folder/")
    pred = model.predict("scan.nii.gz")          # Prediction: probabilities, mask on the input grid

Modules, bottom up: ``sliding_window`` (tiling, stitching), ``settings`` (:class:`InferenceConfig`),
``outputs`` (a case's output files, :class:`CaseOutputs`), ``prediction`` (:class:`Prediction`
and the :class:`Segmenter` interface), ``card`` (model cards), ``bundle`` (the folder format,
:class:`BundleConfig`, model kinds), ``backends`` (where networks run: torch, or ONNX Runtime
compiled and cached on disk), ``model`` (the network ensemble, kind ``network``),
``frangi_model`` (kind ``frangi``), ``nnunet_model`` (kind ``nnunet``: imported nnU-Net models
run as nnU-Net runs them), ``batch`` (many scans). Importing this package registers the built-in kinds.
"""
from mednet_pvs.inference.bundle import BundleConfig, load_bundle, read_bundle_config, register_kind, write_bundle
from mednet_pvs.inference.frangi_model import FrangiModel
from mednet_pvs.inference.model import PVSModel
from mednet_pvs.inference.nnunet_model import NnUNetModel
from mednet_pvs.inference.outputs import CaseOutputs
from mednet_pvs.inference.prediction import Prediction, Segmenter
from mednet_pvs.inference.settings import InferenceConfig
from mednet_pvs.inference.sliding_window import (
    SlidingWindowConfig,
    gaussian_importance_map,
    sliding_window_predict,
    tile_starts,
)

__all__ = [
    "BundleConfig",
    "CaseOutputs",
    "FrangiModel",
    "InferenceConfig",
    "NnUNetModel",
    "PVSModel",
    "Prediction",
    "Segmenter",
    "SlidingWindowConfig",
    "gaussian_importance_map",
    "load_bundle",
    "read_bundle_config",
    "register_kind",
    "sliding_window_predict",
    "tile_starts",
    "write_bundle",
]
