"""``make_phantom``: one synthetic PVS phantom (image, label, mask, regions, sidecar)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.errors import ConfigError
from mednet_pvs.synth.phantom_config import PhantomConfig

#: how the label is defined, copied into every sidecar
LABEL_DEFINITION = (
    "label = PVS occupancy >= 0.5; occupancy is a distance-based partial-volume ramp one voxel wide "
    "around each tube wall (so a voxel is PVS when its centre lies inside the tube); tubes thinner than "
    "a voxel are drawn with half a voxel radius and their centreline voxels count as half occupied, "
    "so every PVS is one connected component; lacunes, WMH and vessels are never labelled"
)


@dataclass
class Phantom:
    """A synthetic scan with its ground truth, all on one grid (X, Y, Z; RAS ``affine`` in mm).

    Attributes:
        image: float32 image of ``meta["config"]["contrast"]``.
        label: uint8 PVS mask (0/1).
        brainmask: uint8 brain mask (0/1).
        regions: int16 FreeSurfer aseg codes (see :mod:`mednet_pvs.synth.anatomy`).
        affine: 4x4 voxel-to-RAS-mm matrix.
        meta: JSON-able description: seed, config, counts, volumes, one record per PVS.
        pvs_fraction: float32 PVS volume fraction per voxel (what the image shows).
        instances: uint16 PVS instance map, ``i`` -> ``meta["pvs"][i - 1]``.
        confounders: uint8 map, 1 lacune, 2 WMH, 3 vessel.
    """

    image: np.ndarray
    label: np.ndarray
    brainmask: np.ndarray
    regions: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any]
    pvs_fraction: np.ndarray = field(repr=False)
    instances: np.ndarray = field(repr=False)
    confounders: np.ndarray = field(repr=False)

    @property
    def contrast(self) -> str:
        return str(self.meta["config"]["contrast"])

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(0)))  # type: ignore[return-value]

    def __repr__(self) -> str:
        m = self.meta
        return (f"Phantom({m['anatomy']}, shape={self.image.shape}, spacing={self.spacing[0]:g} mm, "
                f"{self.contrast}, burden={m['config']['burden']}, pvs={m['pvs_count']}, "
                f"{m['pvs_volume_mm3']:.0f} mm^3, seed={m['seed']})")

    def save(self, outdir: str | os.PathLike, name: str, *, extras: bool = False) -> dict[str, Path]:
        """Write ``{name}_{contrast}.nii.gz``, ``{name}_pvs.nii.gz``, ``{name}_brainmask.nii.gz``,
        ``{name}_regions.nii.gz`` and ``{name}.json`` (each atomically) into ``outdir``.

        ``extras=True`` also writes ``{name}_pvsinstances.nii.gz`` and ``{name}_confounders.nii.gz``.
        Returns ``{"image", "label", "brainmask", "regions", "json", ...}`` -> path.
        """
        import nibabel as nib

        from mednet_pvs.io import save_nifti, write_json

        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ConfigError(f"phantom name must be a plain file-name stem, got {name!r}")
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        code = 4 if str(self.meta.get("anatomy", "")).startswith("mni") else 1  # 4 = MNI152 space, 1 = scanner
        items = [("image", f"{name}_{self.contrast}.nii.gz", self.image, np.float32),
                 ("label", f"{name}_pvs.nii.gz", self.label, np.uint8),
                 ("brainmask", f"{name}_brainmask.nii.gz", self.brainmask, np.uint8),
                 ("regions", f"{name}_regions.nii.gz", self.regions, np.int16)]
        if extras:
            items += [("instances", f"{name}_pvsinstances.nii.gz", self.instances, np.uint16),
                      ("confounders", f"{name}_confounders.nii.gz", self.confounders, np.uint8)]
        paths: dict[str, Path] = {}
        for key, fname, data, dtype in items:
            img = nib.Nifti1Image(np.asarray(data, dtype=dtype), self.affine)
            img.header.set_xyzt_units("mm")
            img.set_sform(self.affine, code=code)
            img.set_qform(self.affine, code=code)
            paths[key] = save_nifti(img, out / fname)
        paths["json"] = write_json(dict(self.meta, files={k: p.name for k, p in paths.items()}), out / f"{name}.json")
        return paths


def make_phantom(config: PhantomConfig | None = None, *, seed: int = 0, **overrides: Any) -> Phantom:
    """Make one phantom. ``overrides`` change fields of ``config`` (default :class:`PhantomConfig`).

    Same ``(config, seed)`` -> identical arrays; a different seed -> a different phantom.

    Example::

        ph = make_phantom(anatomy="procedural", contrast="T1w", burden=3, seed=7)
    """
    from mednet_pvs.synth.acquisition import acquire
    from mednet_pvs.synth.anatomy import get_anatomy
    from mednet_pvs.synth.contrast import tissue_means
    from mednet_pvs.synth._util import rng_for

    if config is not None and not isinstance(config, PhantomConfig):
        raise ConfigError(f"config must be a PhantomConfig, got {type(config).__name__}")
    cfg = (config or PhantomConfig()).replace(**overrides) if overrides else (config or PhantomConfig())
    cfg.validate()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    anat = get_anatomy(cfg.anatomy, cfg.shape, cfg.spacing)
    h = anat.spacing
    means = tissue_means(cfg.contrast, rng_for(seed, "contrast"))
    img, label, pvs, conf = render_brain(anat, cfg, seed, means)
    img, acq = acquire(img, anat.brainmask, h, cfg, seed)
    meta = phantom_meta(anat, cfg, seed, label, pvs, conf, means)
    meta["acquisition"] = acq
    return Phantom(
        image=img,
        label=label.astype(np.uint8),
        brainmask=anat.brainmask.astype(np.uint8),
        regions=anat.regions.copy(),
        affine=np.array(anat.affine, float),
        meta=meta,
        pvs_fraction=pvs.frac,
        instances=pvs.instances,
        confounders=conf.codes,
    )


def render_brain(anat: Any, cfg: PhantomConfig, seed: int, means: dict[str, float]) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """The noise-free brain of a phantom: confounders and PVS placed in ``anat`` and painted with
    the tissue ``means``. Returns (image float32, PVS label bool, the PVS result, the confounders)."""
    from mednet_pvs.synth.confounders import add_confounders
    from mednet_pvs.synth.contrast import base_image, paint
    from mednet_pvs.synth.pvs import place_pvs

    reserved = np.zeros(anat.shape, bool)
    conf = add_confounders(anat, cfg, seed, reserved)
    pvs = place_pvs(anat, cfg, seed, reserved)
    img = base_image(anat, means)
    for p in conf.paints:
        paint(img, p.box, p.frac, means[p.tissue])
    img += pvs.frac * (np.float32(means["pvs"]) - img)
    for p in conf.late_paints:
        paint(img, p.box, p.frac, means[p.tissue])
    label = (pvs.occ >= 0.5) & anat.brainmask
    return img, label, pvs, conf


def phantom_meta(anat: Any, cfg: PhantomConfig, seed: int, label: np.ndarray, pvs: Any, conf: Any,
                 means: dict[str, float]) -> dict[str, Any]:
    """The JSON-able description of a phantom (everything but the acquisition)."""
    from mednet_pvs.synth.anatomy import ASEG_NAMES
    from mednet_pvs.synth.confounders import CONFOUNDER_CODES

    h = anat.spacing
    n_lab = int(label.sum())
    records = pvs.records
    per_region: dict[str, int] = {}
    for r in records:
        per_region[r["region"]] = per_region.get(r["region"], 0) + 1
    meta: dict[str, Any] = {
        "generator": "mednet_pvs.synth",
        "seed": seed,
        "config": cfg.to_dict(),
        "anatomy": anat.name,
        "shape": list(anat.shape),
        "spacing_mm": [h, h, h],
        "affine": np.asarray(anat.affine).round(6).tolist(),
        "label_definition": LABEL_DEFINITION,
        "region_codes": {str(k): v for k, v in sorted(ASEG_NAMES.items())},
        "pvs_count": len(records),
        "pvs_count_by_region": per_region,
        "pvs_requested": pvs.requested,
        "pvs_volume_mm3": round(n_lab * h**3, 3),
        "pvs_fraction_volume_mm3": round(float(pvs.frac.sum(dtype=np.float64)) * h**3, 3),
        "pvs": records,
        "confounders": conf.meta,
        "confounder_codes": {str(v): k for k, v in CONFOUNDER_CODES.items()},
        "tissue_means": {k: round(v, 4) for k, v in means.items()},
    }
    return meta
