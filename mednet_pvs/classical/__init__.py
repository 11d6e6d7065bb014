"""Classical (non-learned) PVS baselines: numpy/scipy only."""
from __future__ import annotations

from mednet_pvs.classical.frangi import (FrangiConfig, FrangiFit, FrangiSegmenter, ThresholdFit, fit_frangi_grid, fit_threshold,
                                         frangi_response)

__all__ = ["FrangiConfig", "FrangiFit", "FrangiSegmenter", "ThresholdFit", "fit_frangi_grid", "fit_threshold", "frangi_response"]
