"""Measurements the phantom tests share: per-tube geometry from the label, orientation statistics."""
from __future__ import annotations

import numpy as np


def tube_measurements(ph) -> list[dict]:
    """For every PVS record, its width and length measured from the label voxels (PCA).

    length = extent along the first principal axis + one voxel; width = diameter of the circle whose
    area is the labelled volume / length.
    """
    h = float(ph.affine[0, 0])
    idx = np.nonzero(ph.instances)
    ids = ph.instances[idx]
    coords = np.stack(idx, axis=1) * h
    out = []
    for rec in ph.meta["pvs"]:
        v = coords[ids == rec["id"]]
        c = v.mean(0)
        _, _, vt = np.linalg.svd(v - c, full_matrices=False)
        axis = vt[0]
        proj = (v - c) @ axis
        length = float(proj.max() - proj.min() + h)
        width = float(2 * np.sqrt(len(v) * h**3 / (np.pi * length)))
        out.append({"rec": rec, "width": width, "length": length, "axis": axis, "centre": c + ph.affine[:3, 3],
                    "n": len(v)})
    return out


def radial_cosines(ph, measured: list[dict]) -> np.ndarray:
    """|cos| between each centrum-semiovale PVS axis and the direction from the centroid of the
    lateral ventricle on its side to the PVS centre."""
    h = float(ph.affine[0, 0])
    vc = {side: np.argwhere(ph.regions == code).mean(0) * h + ph.affine[:3, 3] for side, code in (("L", 4), ("R", 43))}
    cos = []
    for m in measured:
        if m["rec"]["region"] != "centrum_semiovale":
            continue
        r = m["centre"] - vc[m["rec"]["hemisphere"]]
        cos.append(abs(m["axis"] @ r) / np.linalg.norm(r))
    return np.array(cos)


def vertical_cosines(measured: list[dict], region: str = "basal_ganglia") -> np.ndarray:
    return np.array([abs(m["axis"][2]) for m in measured if m["rec"]["region"] == region])
