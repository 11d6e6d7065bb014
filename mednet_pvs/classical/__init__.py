"""Classical (non-learned) PVS baselines: numpy/scipy only."""
from __future__ import annotations

from mednet_pvs.classical.frangi import FrangiConfig, FrangiSegmenter, ThresholdFit, fit_threshold, frangi_response

__all__ = ["FrangiConfig", "FrangiSegmenter", "ThresholdFit", "fit_threshold", "frangi_response"]
