"""Models with several classes: one clusters table per class beside the PVS one, written by
:class:`CaseOutputs` before the stats and the PVS table (whose presence means done)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mednet_pvs.analysis import pvs_burden
from mednet_pvs.inference.batch import class_columns
from mednet_pvs.inference.outputs import CaseOutputs, class_slug, is_pvs_class
from mednet_pvs.io import Scan, load_image


def _case() -> tuple[Scan, np.ndarray]:
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:4, 2:4, 2:4] = 1  # two PVS clusters
    labels[10:12, 10:12, 10:12] = 1
    labels[15:19, 2:6, 2:6] = 2  # three WMH clusters
    labels[2:6, 14:18, 14:18] = 2
    labels[15:17, 15:17, 2:4] = 2
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    return load_image((labels.astype(np.float32), affine)), labels


@pytest.mark.parametrize("layout", ["flat", "bids"])
def test_one_table_per_class_before_the_pvs_table(tmp_path, layout):
    scan, labels = _case()
    classes = {0: "background", 1: "PVS", 2: "WMH"}
    burdens = {name: pvs_burden(labels == v, scan.affine) for v, name in classes.items() if v}
    out = CaseOutputs(tmp_path, "sub-01", layout) if layout == "bids" else CaseOutputs(tmp_path, "case1")
    written = out.write(scan, labels == 1, burden=burdens["PVS"], label_map=labels, classes=classes,
                        class_burdens=burdens)
    path = out.class_clusters_path("WMH")
    assert path.name == ("sub-01_desc-wmh_clusters.tsv" if layout == "bids" else "case1_wmh_clusters.csv")
    table = pd.read_csv(path, sep="\t" if layout == "bids" else ",")
    assert len(table) == 3 and table["n_voxels"].sum() == (labels == 2).sum()
    assert table["volume_mm3"].sum() == pytest.approx((labels == 2).sum() * 0.125)
    keys = list(written)
    assert keys.index("clusters:WMH") < keys.index("stats") < keys.index("clusters") == len(keys) - 1
    assert "clusters:PVS" not in written and len(list(tmp_path.rglob("*clusters*"))) == 2
    assert out.read_stats()["classes"]["WMH"]["clusters"] == 3


def test_no_table_without_several_classes(tmp_path):
    scan, labels = _case()
    written = CaseOutputs(tmp_path, "case1").write(scan, labels == 1, burden=pvs_burden(labels == 1, scan.affine))
    assert [k for k in written if k.startswith("clusters")] == ["clusters"]


def test_names_and_summary_columns():
    assert class_slug("White matter hyperintensity!") == "whitematterhyperintensity" and class_slug("_") == "class"
    assert is_pvs_class("PVS") and is_pvs_class("perivascular space") and not is_pvs_class("WMH")
    stats = {"PVS": {"clusters": 2, "volume_mm3": 2.0}, "WMH": {"clusters": 3, "volume_mm3": 9.5}, "x": {"voxels": 0}}
    assert class_columns(stats) == {"class_pvs_count": 2, "class_pvs_volume_mm3": 2.0,
                                    "class_wmh_count": 3, "class_wmh_volume_mm3": 9.5}
    assert class_columns(None) == {}


def test_temp_files_of_a_killed_class_table_write_are_partial(tmp_path):
    """An interrupted write of a per-class table leaves a temp file that the next write removes
    (and another case's temp file is left alone)."""
    from mednet_pvs.inference.outputs import CaseOutputs

    out = CaseOutputs(tmp_path, "sub-1")
    tmp_path.mkdir(exist_ok=True)
    mine = tmp_path / ".sub-1_wmh_clusters.csv.abc123.tmp"
    other = tmp_path / ".sub-10_wmh_clusters.csv.abc123.tmp"
    mine.write_text("x")
    other.write_text("x")
    assert out.partial_files() == [mine]
    out.remove_partial()
    assert not mine.exists() and other.exists()
