"""Brain anatomies the phantoms are drawn on: the MNI152 2009a template and a procedural head.

Both give tissue fractions (GM, WM, CSF, summing to the brain fraction), a brain mask, a region
map with FreeSurfer ``aseg`` codes and the helper maps PVS placement needs. Anatomies are cached
per grid (``functools.lru_cache``) and their arrays are read-only: phantoms copy what they change.

Region codes (FreeSurfer ``aseg``; left / right):

==========================  =====  =====
cerebral white matter          2     41
cerebral cortex                3     42
lateral ventricle              4     43
cerebellum white matter        7     46
cerebellum cortex              8     47
thalamus                      10     49
caudate                       11     50
putamen                       12     51
pallidum                      13     52
hippocampus                   17     53
amygdala                      18     54
brain stem (incl. midbrain)   16     16
other CSF (sulci, cisterns,   24     24
3rd/4th ventricle)
==========================  =====  =====

Midbrain PVS are placed in the upper part of the brain stem (MNI z > -20 mm); they carry aseg
code 16 and the region name ``"midbrain"`` in the phantom's per-PVS list.

MNI152: GM/WM are nilearn's MNI152 2009a tissue maps, CSF = brain mask - GM - WM. The lateral
ventricles are the largest CSF-dominant component on each side of a box around them. Deep
structures are ellipsoids at their usual MNI coordinates (approximate centroids and extents as
in standard subcortical atlases, rounded, and checked by eye against this template)
intersected with the tissue maps (GM-dominant voxels for caudate/putamen/hippocampus/amygdala,
any parenchyma for pallidum/thalamus/brain stem); the cerebellum is the parenchyma below a tent
approximating the tentorium. This is an approximation good to a few millimetres, not an atlas;
the centroid of each nucleus is within 6 mm of its reference coordinate (tested).

Procedural head: an ellipsoidal brain with a CSF shell, a cortex with a wavy (gyrified) grey/white
border, an interhemispheric fissure, bent lateral ventricles, a 3rd ventricle, caudate, putamen,
pallidum, thalamus, hippocampus, amygdala and a brain stem, all with partial-volume edges. It has
no cerebellum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth._util import bbox, box_around, box_coords, perpendiculars, ramp, unit

ASEG_NAMES: dict[int, str] = {
    2: "Left-Cerebral-White-Matter", 3: "Left-Cerebral-Cortex", 4: "Left-Lateral-Ventricle",
    7: "Left-Cerebellum-White-Matter", 8: "Left-Cerebellum-Cortex", 10: "Left-Thalamus",
    11: "Left-Caudate", 12: "Left-Putamen", 13: "Left-Pallidum", 16: "Brain-Stem",
    17: "Left-Hippocampus", 18: "Left-Amygdala", 24: "CSF",
    41: "Right-Cerebral-White-Matter", 42: "Right-Cerebral-Cortex", 43: "Right-Lateral-Ventricle",
    46: "Right-Cerebellum-White-Matter", 47: "Right-Cerebellum-Cortex", 49: "Right-Thalamus",
    50: "Right-Caudate", 51: "Right-Putamen", 52: "Right-Pallidum", 53: "Right-Hippocampus",
    54: "Right-Amygdala",
}
#: (left, right) aseg codes of each structure.
CODES: dict[str, tuple[int, int]] = {
    "wm": (2, 41), "cortex": (3, 42), "ventricle": (4, 43), "cerebellum_wm": (7, 46),
    "cerebellum_cortex": (8, 47), "thalamus": (10, 49), "caudate": (11, 50), "putamen": (12, 51),
    "pallidum": (13, 52), "hippocampus": (17, 53), "amygdala": (18, 54), "brainstem": (16, 16),
    "csf": (24, 24),
}
BASAL_GANGLIA = ("caudate", "putamen", "pallidum")

#: Placement compartments (disjoint); PVS, lacunes and deep WMH are seeded inside one of them and
#: never leave it. Index + 1 is the value in :attr:`Anatomy.groups`.
GROUPS = ("wm_L", "wm_R", "bg_L", "bg_R", "thal_L", "thal_R", "midbrain", "hip_L", "hip_R")


def group_id(name: str) -> int:
    return GROUPS.index(name) + 1


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Tissue fractions, masks and placement helpers on one grid (arrays are read-only).

    Grid convention: voxel ``i`` has world (RAS, mm) coordinate ``origin + i * spacing``;
    "grid mm" below means ``i * spacing`` (world minus origin).
    """

    name: str
    affine: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brainmask: np.ndarray
    regions: np.ndarray
    groups: np.ndarray  # uint8, see GROUPS
    clearance: np.ndarray  # float32 mm from a voxel to the edge of its group (0 outside groups)
    radial: np.ndarray  # float32 (3, ...) coarse unit field pointing from ventricles to cortex
    radial_step: int  # voxels per radial-field cell
    vent_box: tuple[slice, ...]  # box around the lateral ventricles (+ margin)
    vent_dist: np.ndarray  # float32 mm to the nearest lateral-ventricle voxel, inside vent_box
    cso_z: float  # grid-mm z above which cerebral WM is "centrum semiovale"
    hippo_axis: np.ndarray  # unit long axis of the hippocampus (left; mirror x for right)
    scale: float  # linear size of this brain relative to the MNI152 brain
    _seed_cache: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.regions.shape  # type: ignore[return-value]

    @property
    def spacing(self) -> float:
        return float(self.affine[0, 0])

    @property
    def origin(self) -> np.ndarray:
        return self.affine[:3, 3].copy()

    def seeds(self, group: str, min_clearance: float) -> np.ndarray:
        """Flat indices of the voxels of ``group`` at least ``min_clearance`` mm from its edge."""
        key = (group, round(float(min_clearance), 2))
        if key not in self._seed_cache:
            self._seed_cache[key] = _seeds(self, *key)
        return self._seed_cache[key]

    def surface_seeds(self) -> np.ndarray:
        """Flat indices of cortex voxels next to CSF (where surface vessels start)."""
        if "surface" not in self._seed_cache:
            m = np.isin(self.regions, CODES["cortex"]) & (self.csf >= 0.25)
            self._seed_cache["surface"] = np.flatnonzero(m)
        return self._seed_cache["surface"]

    def direction(self, p: np.ndarray) -> np.ndarray:
        """Unit radial direction (ventricles -> cortex) at grid-mm point ``p``."""
        k = self.radial_step * self.spacing
        idx = np.clip(np.rint(p / k).astype(int), 0, np.array(self.radial.shape[1:]) - 1)
        return self.radial[:, idx[0], idx[1], idx[2]].astype(float)


def _seeds(anat: Anatomy, group: str, min_clearance: float) -> np.ndarray:
    m = (anat.groups == group_id(group)) & (anat.clearance >= min_clearance)
    if group in ("wm_L", "wm_R"):  # only the centrum semiovale, above the ventricles
        m[:, :, : max(0, int(np.ceil(anat.cso_z / anat.spacing)))] = False
    out = np.flatnonzero(m)
    out.setflags(write=False)
    return out


def get_anatomy(kind: str, shape: tuple[int, int, int], spacing: float) -> Anatomy:
    """The (cached) anatomy a :class:`~mednet_pvs.synth.PhantomConfig` asks for."""
    if kind == "mni":
        return mni_anatomy(float(spacing))
    if kind == "procedural":
        return procedural_anatomy(tuple(int(n) for n in shape), float(spacing))
    raise ConfigError(f"anatomy must be 'mni' or 'procedural', got {kind!r}")


# ---------------------------------------------------------------------------------------------
# MNI152 2009a
# ---------------------------------------------------------------------------------------------
#: name -> (left centre (x<0), semi-axes, long axis or None, tissue it is intersected with)
_MNI_STRUCTURES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float] | None, str]] = {
    "hippocampus": ((-27.0, -22.0, -13.0), (19.0, 5.5, 6.0), (0.0, -1.0, 0.45), "gm"),
    "amygdala": ((-23.0, -5.0, -19.0), (7.0, 6.0, 6.5), None, "gm"),
    "thalamus": ((-11.0, -18.0, 7.0), (8.0, 14.0, 9.0), None, "par"),
    "caudate": ((-13.0, 11.0, 10.0), (5.0, 14.0, 10.0), None, "gm"),
    "putamen": ((-25.0, 2.0, 2.0), (6.5, 16.0, 12.0), None, "gm"),
    "pallidum": ((-19.0, -4.0, -1.0), (4.5, 8.0, 5.5), None, "par"),
}
#: brain stem as a union of ellipsoids: midbrain, pons, medulla (centre, semi-axes)
_MNI_BRAINSTEM = (((0.0, -24.0, -11.0), (13.0, 11.0, 9.0)),
                  ((0.0, -25.0, -31.0), (14.0, 13.0, 12.0)),
                  ((0.0, -37.0, -50.0), (9.0, 9.0, 13.0)))
_MNI_MIDBRAIN_Z = -20.0


@lru_cache(maxsize=2)  # ~100 MB per 1 mm grid
def mni_anatomy(spacing: float = 1.0) -> Anatomy:
    """MNI152 2009a (nilearn's copy) on an isotropic ``spacing`` grid cropped to the brain + 5 mm."""
    from nilearn import datasets
    from scipy import ndimage

    if not 0.3 <= spacing <= 4.0:
        raise ConfigError(f"spacing must be in [0.3, 4] mm, got {spacing}")
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    src_aff = mask_img.affine
    if not np.allclose(src_aff[:3, :3], np.eye(3)):
        raise RuntimeError("nilearn's MNI152 template is expected on a 1 mm RAS grid")
    maps = {
        "mask": np.asarray(mask_img.dataobj, dtype=np.float32),
        "gm": np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32),
        "wm": np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32),
    }
    box = bbox(maps["mask"] > 0, margin=5)
    lo_w = src_aff[:3, 3] + [s.start for s in box]
    hi_w = src_aff[:3, 3] + [s.stop - 1 for s in box]
    shape = tuple(int(n) for n in np.floor((hi_w - lo_w) / spacing + 1e-6).astype(int) + 1)
    off = lo_w - src_aff[:3, 3]  # source voxel index of the new voxel 0
    out = {}
    for k, a in maps.items():
        if spacing == 1.0:  # same grid: a crop is exact
            out[k] = a[box]
        else:
            out[k] = _resample_linear(a, off, spacing, shape)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = lo_w
    brainmask = out["mask"] >= 0.5
    gm = np.where(brainmask, np.clip(out["gm"], 0, 1), 0).astype(np.float32)
    wm = np.where(brainmask, np.clip(out["wm"], 0, 1), 0).astype(np.float32)
    tot = gm + wm
    over = tot > 1
    gm[over] /= tot[over]
    wm[over] /= tot[over]
    csf = np.where(brainmask, 1.0 - gm - wm, 0).astype(np.float32)
    del out, maps

    h = spacing
    x, y, z = (lo_w[i] + np.arange(shape[i]) * h for i in range(3))
    left = (x < 0)[:, None, None]
    par = brainmask & (csf < 0.5)
    gm_dom = par & (gm >= wm)
    regions = np.zeros(shape, np.int16)
    regions[brainmask] = 24
    _paint_lr(regions, par & ~gm_dom, "wm", left)
    _paint_lr(regions, gm_dom, "cortex", left)

    # lateral ventricles: largest CSF-dominant component per side within a box around them
    box = _world_box(lo_w, h, shape, (-30, -50, -12), (30, 35, 35))
    cand = (csf[box] >= 0.5) & brainmask[box]
    cand &= (np.abs(x[box[0]]) >= 2)[:, None, None]
    lab, n = ndimage.label(cand)
    if n:
        sizes = ndimage.sum_labels(cand, lab, index=np.arange(1, n + 1))
        xs = ndimage.mean(np.broadcast_to(x[box[0]][:, None, None], cand.shape), lab, index=np.arange(1, n + 1))
        for side, code in ((xs < 0, 4), (xs > 0, 43)):
            if np.any(side):
                best = int(np.arange(1, n + 1)[side][np.argmax(sizes[side])])
                regions[box][lab == best] = code

    # cerebellum: parenchyma below a plane approximating the tentorium, behind the brain stem
    # (a tent: highest at the midline, z=-10 at y=-60, lower laterally and posteriorly)
    zt = -10.0 - 0.30 * np.abs(x)[:, None] - 0.25 * np.clip(-60.0 - y, 0, None)[None, :]
    cereb = par & (y[None, :, None] < -38.0) & (z[None, None, :] < zt[:, :, None])
    _paint_lr(regions, cereb & ~gm_dom, "cerebellum_wm", left)
    _paint_lr(regions, cereb & gm_dom, "cerebellum_cortex", left)

    for name, (c, semi, axis, tissue) in _MNI_STRUCTURES.items():
        allowed = gm_dom if tissue == "gm" else par
        for sign, code in ((1.0, CODES[name][0]), (-1.0, CODES[name][1])):
            cc = np.array(c) * [sign, 1, 1]
            ax = None if axis is None else np.array(axis) * [sign, 1, 1]
            _paint_ellipsoid(regions, allowed, lo_w, h, cc, semi, ax, code)
    stem = np.zeros(shape, bool)
    for c, semi in _MNI_BRAINSTEM:
        sl, inside = _ellipsoid_mask(lo_w, h, shape, np.array(c), semi, None)
        if sl is not None:
            stem[sl] |= inside
    stem &= par
    regions[stem] = 16
    midbrain = stem & (z >= _MNI_MIDBRAIN_Z)[None, None, :]

    brain_vol = float(brainmask.sum()) * h**3
    return _finish(
        "mni152_2009a_sym", affine, gm, wm, csf, brainmask, regions, midbrain,
        hippo_axis=unit(np.array(_MNI_STRUCTURES["hippocampus"][2])),
        scale=1.0 if brain_vol <= 0 else (brain_vol / _MNI_BRAIN_VOLUME) ** (1 / 3),
    )


_MNI_BRAIN_VOLUME = 1_883_000.0  # mm^3 inside nilearn's MNI152 brain mask


def _resample_linear(a: np.ndarray, offset: np.ndarray, step: float, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear resampling, separably: output voxel ``j`` samples input index ``offset + j * step``
    (zero outside the input). Several times faster than ``ndimage.affine_transform`` for this case."""
    out = a.astype(np.float32, copy=False)
    for ax in range(3):
        s = offset[ax] + np.arange(shape[ax]) * step
        i0 = np.floor(s).astype(int)
        w = (s - i0).astype(np.float32)
        n = out.shape[ax]
        w0 = np.where((i0 >= 0) & (i0 < n), 1 - w, 0).astype(np.float32)
        w1 = np.where((i0 + 1 >= 0) & (i0 + 1 < n), w, 0).astype(np.float32)
        lo = np.take(out, np.clip(i0, 0, n - 1), axis=ax)
        hi = np.take(out, np.clip(i0 + 1, 0, n - 1), axis=ax)
        bshape = [1, 1, 1]
        bshape[ax] = -1
        out = lo * w0.reshape(bshape) + hi * w1.reshape(bshape)
    return out


def _world_box(origin: np.ndarray, h: float, shape: tuple[int, ...], lo: tuple, hi: tuple) -> tuple[slice, ...]:
    sl = box_around(np.array(lo) - origin, np.array(hi) - origin, h, shape)
    assert sl is not None
    return sl


def _paint_lr(regions: np.ndarray, where: np.ndarray, name: str, left: np.ndarray) -> None:
    lcode, rcode = CODES[name]
    regions[where & left] = lcode
    regions[where & ~left] = rcode


def _ellipsoid_q(d: tuple[np.ndarray, ...], semi, axis) -> list[np.ndarray]:
    """Coordinates of offsets ``d`` (x, y, z arrays, mm) in units of the semi-axes of an ellipsoid.

    ``semi`` are along x, y, z, or along (axis, two perpendiculars) when ``axis`` is given.
    """
    if axis is None:
        return [d[i] / semi[i] for i in range(3)]
    a0 = unit(np.asarray(axis, float))
    a1, a2 = perpendiculars(a0)
    return [(d[0] * a[0] + d[1] * a[1] + d[2] * a[2]) / si for a, si in zip((a0, a1, a2), semi)]


def _ellipsoid_r2(lo_w: np.ndarray, h: float, shape: tuple[int, ...], centre: np.ndarray,
                  semi: tuple[float, float, float], axis: np.ndarray | None) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """Normalised squared radius of an ellipsoid (world mm centre) inside its bounding box."""
    c = centre - lo_w
    sl = box_around(c - max(semi), c + max(semi), h, shape)
    if sl is None:
        return None, np.zeros(0)
    gx, gy, gz = box_coords(sl, h)
    q = _ellipsoid_q((gx - c[0], gy - c[1], gz - c[2]), semi, axis)
    return sl, q[0] ** 2 + q[1] ** 2 + q[2] ** 2


def _ellipsoid_mask(lo_w, h, shape, centre, semi, axis):
    sl, r2 = _ellipsoid_r2(lo_w, h, shape, centre, semi, axis)
    return sl, (r2 <= 1.0) if sl is not None else None


def _paint_ellipsoid(regions, allowed, lo_w, h, centre, semi, axis, code) -> None:
    sl, inside = _ellipsoid_mask(lo_w, h, regions.shape, centre, semi, axis)
    if sl is not None:
        m = inside & allowed[sl]
        regions[sl][m] = code


# ---------------------------------------------------------------------------------------------
# procedural head
# ---------------------------------------------------------------------------------------------
#: name -> (left centre, semi-axes, long axis or None, tissue) in units of the brain semi-axes
_PROC_STRUCTURES = {
    "amygdala": ((-0.30, 0.06, -0.40), (0.075, 0.075, 0.085), None, "gm"),
    "hippocampus": ((-0.31, -0.22, -0.34), (0.24, 0.07, 0.08), (0.0, -1.0, 0.45), "gm"),
    "thalamus": ((-0.11, -0.21, 0.02), (0.10, 0.17, 0.14), None, "gm"),
    "caudate": ((-0.22, 0.18, 0.08), (0.085, 0.20, 0.17), None, "gm"),
    "putamen": ((-0.36, 0.06, -0.04), (0.11, 0.26, 0.26), None, "gm"),
    "pallidum": ((-0.255, 0.01, -0.06), (0.065, 0.12, 0.15), None, "wm"),
}
_PROC_VENTRICLE = ((-0.115, 0.02, 0.15), (0.085, 0.42, 0.13), -0.10)  # centre, semi, droop at the ends
_PROC_THIRD_VENTRICLE = ((0.0, -0.10, -0.04), (0.022, 0.15, 0.12))
_PROC_BRAINSTEM = ((0.0, -0.12, -0.70), (0.12, 0.13, 0.42))
_PROC_MIDBRAIN_Z = -0.55


@lru_cache(maxsize=8)
def procedural_anatomy(shape: tuple[int, int, int] = (64, 64, 64), spacing: float = 1.0) -> Anatomy:
    """A small analytic head filling ``shape`` (about 86 % of the field of view)."""
    shape = tuple(int(n) for n in shape)
    h = float(spacing)
    n = np.array(shape, float)
    semi = np.array([0.43, 0.46, 0.41]) * n * h  # brain semi-axes (mm)
    origin = -(n - 1) / 2 * h
    x, y, z = (origin[i] + np.arange(shape[i]) * h for i in range(3))
    X, Y, Z = x[:, None, None], y[None, :, None], z[None, None, :]
    U = (X / semi[0], Y / semi[1], Z / semi[2])

    R = float(np.mean(semi))
    csf_t, gm_t = max(0.05 * R, 0.8 * h), max(0.10 * R, 1.5 * h)
    rho = np.sqrt(U[0] ** 2 + U[1] ** 2 + U[2] ** 2)
    grad = np.sqrt((U[0] / semi[0]) ** 2 + (U[1] / semi[1]) ** 2 + (U[2] / semi[2]) ** 2)
    depth = (1.0 - rho) / np.maximum(grad, 1e-6 / R) * rho.clip(1e-6)
    # interhemispheric fissure above the corpus callosum
    fiss = np.abs(X) - 0.6 * h + np.clip(0.28 - U[2], 0, None) * semi[2] * 4
    nx, ny, nz = (u / np.maximum(rho, 1e-6) for u in U)
    fold = 0.5 * (np.sin(11 * nx + 1.3) * np.cos(9 * ny) + np.sin(8 * nz + 7 * ny + 0.4))
    pial = np.minimum(depth - csf_t, fiss)  # mm inside the pial surface (the fissure is CSF)
    wm_depth = pial - gm_t * (1.0 + 0.75 * fold)

    in_brain = ramp(depth, h)
    in_gm = np.minimum(ramp(pial, h), in_brain)
    in_wm = np.minimum(ramp(wm_depth, h), in_gm)
    fr = {"csf": in_brain - in_gm, "gm": in_gm - in_wm, "wm": in_wm}
    del depth, fiss, pial, fold, wm_depth, nx, ny, nz, rho, grad

    brainmask = in_brain >= 0.5
    left = (X < 0)
    par = brainmask & (fr["csf"] < 0.5)
    regions = np.zeros(shape, np.int16)
    regions[brainmask] = 24
    _paint_lr(regions, par & (fr["gm"] >= fr["wm"]), "cortex", left)
    _paint_lr(regions, par & (fr["gm"] < fr["wm"]), "wm", left)

    def soft(centre_u, semi_u, axis=None, droop=0.0):
        c = np.asarray(centre_u) * semi
        s = np.asarray(semi_u) * (semi if axis is None else R)  # oriented ones: in mean brain radii
        dz = droop * semi[2] * ((Y - c[1]) / s[1]) ** 2 if droop else 0.0
        q = _ellipsoid_q((X - c[0], Y - c[1], Z - c[2] - dz), s, axis)
        r = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
        g = np.sqrt(sum((qi / si) ** 2 for qi, si in zip(q, s))) / np.maximum(r, 1e-6)
        return ramp((1.0 - r) / np.maximum(g, 1e-6), h) * in_brain

    def paint(f, tissue, code=None, hemi=None):
        tot = fr["csf"] + fr["gm"] + fr["wm"]
        for k in fr:
            fr[k] = (1 - f) * fr[k] + (f * tot if k == tissue else 0)
        if code is not None:
            m = (f >= 0.5) & brainmask
            if hemi is not None:
                m &= hemi
            regions[m] = code

    vent_c, vent_s, droop = _PROC_VENTRICLE
    paint(soft(_PROC_THIRD_VENTRICLE[0], _PROC_THIRD_VENTRICLE[1]), "csf", 24)
    for sign, code in ((1.0, 4), (-1.0, 43)):
        paint(soft(np.array(vent_c) * [sign, 1, 1], vent_s, droop=droop), "csf", code)
    stem_f = soft(*_PROC_BRAINSTEM)
    paint(stem_f, "wm", 16)
    for name, (c, s, axis, tissue) in _PROC_STRUCTURES.items():
        for sign, code in ((1.0, CODES[name][0]), (-1.0, CODES[name][1])):
            ax = None if axis is None else np.array(axis) * [sign, 1, 1]
            paint(soft(np.array(c) * [sign, 1, 1], s, ax), tissue, code, hemi=left if sign > 0 else ~left)
    midbrain = (regions == 16) & (U[2] >= _PROC_MIDBRAIN_Z)

    vol = 4 / 3 * np.pi * float(np.prod(semi))
    return _finish(
        f"procedural_{shape[0]}x{shape[1]}x{shape[2]}", _affine(origin, h),
        fr["gm"].astype(np.float32), fr["wm"].astype(np.float32), fr["csf"].astype(np.float32),
        brainmask, regions, midbrain,
        hippo_axis=unit(np.array(_PROC_STRUCTURES["hippocampus"][2])),
        scale=(vol / _MNI_BRAIN_VOLUME) ** (1 / 3),
    )


def _affine(origin: np.ndarray, h: float) -> np.ndarray:
    a = np.diag([h, h, h, 1.0])
    a[:3, 3] = origin
    return a


# ---------------------------------------------------------------------------------------------
# shared: placement groups, clearance, radial field, distance to the ventricles
# ---------------------------------------------------------------------------------------------
def _finish(name, affine, gm, wm, csf, brainmask, regions, midbrain, *, hippo_axis, scale) -> Anatomy:
    from scipy import ndimage

    h = float(affine[0, 0])
    shape = regions.shape
    groups = np.zeros(shape, np.uint8)
    for side, i in (("L", 0), ("R", 1)):
        groups[regions == CODES["wm"][i]] = group_id(f"wm_{side}")
        groups[np.isin(regions, [CODES[s][i] for s in BASAL_GANGLIA])] = group_id(f"bg_{side}")
        groups[regions == CODES["thalamus"][i]] = group_id(f"thal_{side}")
        groups[regions == CODES["hippocampus"][i]] = group_id(f"hip_{side}")
    groups[midbrain] = group_id("midbrain")

    clearance = np.zeros(shape, np.float32)
    for g in range(1, len(GROUPS) + 1):
        sl = bbox(groups == g, margin=1)
        if sl is None:
            continue
        sub = groups[sl] == g
        d = ndimage.distance_transform_edt(sub, sampling=h).astype(np.float32)
        clearance[sl][sub] = d[sub]

    # radial field on a coarse grid: gradient of (distance from ventricles - distance to cortex)
    k = max(1, int(round(2.0 / h)))
    vent = np.isin(regions, CODES["ventricle"])
    # centrum semiovale = cerebral WM above (nearly) all of the lateral ventricles
    zc = np.cumsum(vent.sum(axis=(0, 1)))
    cso_z = float(np.searchsorted(zc, 0.97 * zc[-1])) * h if zc[-1] else shape[2] * h / 2
    cortex_or_out = ~brainmask | np.isin(regions, CODES["cortex"] + CODES["csf"] + CODES["cerebellum_cortex"])
    cv = vent[::k, ::k, ::k]
    co = cortex_or_out[::k, ::k, ::k]
    d_vent = ndimage.distance_transform_edt(~cv) if cv.any() else np.zeros(cv.shape)
    d_ctx = ndimage.distance_transform_edt(~co)
    f = ndimage.gaussian_filter(d_vent - d_ctx, 1.0)
    g = np.stack(np.gradient(f)).astype(np.float32)
    g /= np.maximum(np.linalg.norm(g, axis=0), 1e-6)

    vent_box = bbox(vent, margin=int(np.ceil(15.0 / h)))
    if vent_box is not None:
        vent_dist = ndimage.distance_transform_edt(~vent[vent_box], sampling=h).astype(np.float32)
    else:
        vent_box = tuple(slice(0, 0) for _ in shape)
        vent_dist = np.zeros((0, 0, 0), np.float32)

    arrays = dict(gm=gm, wm=wm, csf=csf, brainmask=brainmask, regions=regions, groups=groups,
                  clearance=clearance, radial=g, vent_dist=vent_dist)
    for a in arrays.values():
        a.setflags(write=False)
    aff = np.asarray(affine, float)
    aff.setflags(write=False)
    return Anatomy(name=name, affine=aff, radial_step=k, vent_box=vent_box, cso_z=float(cso_z),
                   hippo_axis=hippo_axis, scale=float(scale), **arrays)


def region_volumes(anat: Anatomy) -> dict[int, float]:
    """mm^3 of every aseg code present (handy for documentation and tests)."""
    codes, counts = np.unique(anat.regions, return_counts=True)
    return {int(c): float(n) * anat.spacing**3 for c, n in zip(codes, counts) if c}


__all__ = ["ASEG_NAMES", "CODES", "GROUPS", "Anatomy", "get_anatomy", "mni_anatomy", "procedural_anatomy",
           "region_volumes"]
