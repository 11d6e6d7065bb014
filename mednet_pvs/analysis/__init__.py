"""Analysis of PVS masks: burden (clusters, geometry, regions) and evaluation metrics.

numpy/scipy (and pandas for tables) only; nothing here imports torch.

    from mednet_pvs.analysis import pvs_burden, evaluate
"""
from __future__ import annotations

from mednet_pvs.analysis.atlas import AtlasRegions, register_atlas
from mednet_pvs.analysis.burden import Burden, pvs_burden, write_summary
from mednet_pvs.analysis.clusters import cluster_geometry, label_clusters, remove_small_clusters
from mednet_pvs.analysis.evaluate import evaluate, evaluate_case, summarize, write_evaluation
from mednet_pvs.analysis.metrics import agreement, case_metrics, icc, pearson_r
from mednet_pvs.analysis.regions import REGION_GROUPS, RegionGroup, read_lut

__all__ = [
    "AtlasRegions",
    "Burden",
    "REGION_GROUPS",
    "RegionGroup",
    "agreement",
    "case_metrics",
    "cluster_geometry",
    "evaluate",
    "evaluate_case",
    "icc",
    "label_clusters",
    "pearson_r",
    "pvs_burden",
    "read_lut",
    "register_atlas",
    "remove_small_clusters",
    "summarize",
    "write_evaluation",
    "write_summary",
]
