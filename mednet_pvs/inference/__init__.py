"""Inference: preprocess -> sliding window (+TTA, ensemble) -> back onto the input's grid.

    from mednet_pvs.inference import PVSModel
    model = PVSModel.from_pretrained("model_folder/")
    pred = model.predict("scan.nii.gz")          # Prediction: probabilities, mask on the input grid
"""
from mednet_pvs.inference.model import InferenceConfig, Prediction, PVSModel
from mednet_pvs.inference.sliding_window import (
    SlidingWindowConfig,
    gaussian_importance_map,
    sliding_window_predict,
    tile_starts,
)

__all__ = [
    "InferenceConfig",
    "PVSModel",
    "Prediction",
    "SlidingWindowConfig",
    "gaussian_importance_map",
    "sliding_window_predict",
    "tile_starts",
]
