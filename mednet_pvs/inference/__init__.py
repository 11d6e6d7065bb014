"""Inference: preprocess -> sliding window (+TTA, ensemble) -> back onto the input's grid."""
from mednet_pvs.inference.sliding_window import (
    SlidingWindowConfig,
    gaussian_importance_map,
    sliding_window_predict,
    tile_starts,
)

__all__ = ["SlidingWindowConfig", "gaussian_importance_map", "sliding_window_predict", "tile_starts"]
