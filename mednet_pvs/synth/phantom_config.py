"""The parameters of a synthetic PVS phantom (:class:`PhantomConfig`) and their checks.

Everything that changes the phantom lives here, so a phantom is fully described by
``(config.to_dict(), seed)`` - that pair is written into every JSON sidecar.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from mednet_pvs.errors import ConfigError

ANATOMIES = ("mni", "procedural")
CONTRASTS = ("T2w", "T1w", "FLAIR", "PD", "random")
#: Where PVS are placed; the names are the keys of a per-region ``burden`` mapping.
PVS_REGIONS = ("centrum_semiovale", "basal_ganglia", "midbrain", "hippocampus")


@dataclass
class PhantomConfig:
    """How to make a phantom. All lengths are in millimetres.

    Anatomy:
        anatomy: ``"mni"`` (MNI152 2009a template, cropped to the brain) or ``"procedural"``
            (a small analytic head for fast tests).
        shape: grid of the procedural head (ignored for ``"mni"``).
        spacing: isotropic voxel size of the output grid (0.8 for HCP-like T2w, 1.0 for T1w).

    PVS:
        burden: 0 (none) to 4 (severe), Potter-style; an int applies to every region, a mapping
            ``{region: level}`` sets regions one by one (missing regions get 0).
        width_mm / length_mm: ranges the tube widths (diameters) and centreline lengths are drawn from.

    Image:
        contrast: ``"T2w"`` (PVS bright), ``"T1w"`` (PVS dark) or ``"random"`` (random tissue
            intensities, PVS following CSF, for contrast-agnostic training).

    Confounders (never labelled as PVS):
        confounders: master switch; lacunes: how many; wmh: Fazekas grade 0-3; vessels: how many
        surface vessels (flow voids).

    Acquisition:
        noise: Rician noise sigma relative to the mean brain intensity; bias: strength of the
        smooth multiplicative bias field (0.2 ~ +-20 %); blur_fwhm_mm: Gaussian PSF;
        slice_thickness_mm / slice_axis: simulate thick slices (None = isotropic); motion_mm:
        rigid shift during part of the phase-encoding lines (ghosting), 0 = none.
    """

    anatomy: str = "mni"
    shape: tuple[int, int, int] = (64, 64, 64)
    spacing: float = 1.0
    contrast: str = "T2w"
    burden: int | dict[str, int] = 2
    width_mm: tuple[float, float] = (0.5, 3.0)
    length_mm: tuple[float, float] = (2.0, 20.0)
    confounders: bool = True
    lacunes: int = 2
    wmh: int = 1
    vessels: int = 6
    noise: float = 0.03
    bias: float = 0.2
    blur_fwhm_mm: float = 0.5
    slice_thickness_mm: float | None = None
    slice_axis: int = 2
    motion_mm: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes, copied into the sidecar

    def __post_init__(self) -> None:
        self.validate()

    # -- derived -------------------------------------------------------------------------------
    def burden_of(self, region: str) -> int:
        """The burden level (0-4) asked for ``region``."""
        if isinstance(self.burden, Mapping):
            return int(self.burden.get(region, 0))
        return int(self.burden)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists); :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, Mapping):
                v = dict(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PhantomConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (they would be silently ignored)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"phantom config must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown phantom config key(s) {unknown}; valid keys: {sorted(f.name for f in fields(cls))}")
        return cls(**_coerce(d))

    def replace(self, **overrides: Any) -> "PhantomConfig":
        """A copy with some fields changed (validated; unknown names are a :class:`ConfigError`)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"unknown phantom option(s) {unknown}; valid: {sorted(f.name for f in fields(self))}")
        return dataclasses.replace(self, **_coerce(overrides))

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        for k, v in _coerce(self.to_dict()).items():
            object.__setattr__(self, k, v)
        if self.anatomy not in ANATOMIES:
            raise ConfigError(f"anatomy must be one of {ANATOMIES}, got {self.anatomy!r}")
        if self.contrast not in CONTRASTS:
            raise ConfigError(f"contrast must be one of {CONTRASTS}, got {self.contrast!r}")
        if len(self.shape) != 3 or any(not isinstance(n, int) or n < 32 or n > 512 for n in self.shape):
            raise ConfigError(f"shape must be three integers in 32..512, got {self.shape!r}")
        _positive("spacing", self.spacing, lo=0.3, hi=4.0)
        levels = self.burden.values() if isinstance(self.burden, Mapping) else [self.burden]
        if isinstance(self.burden, Mapping):
            bad = sorted(set(self.burden) - set(PVS_REGIONS))
            if bad:
                raise ConfigError(f"burden regions {bad} unknown; valid: {list(PVS_REGIONS)}")
        if any(isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= 4 for b in levels):
            raise ConfigError(f"burden must be an integer 0-4 (or a mapping region -> 0-4), got {self.burden!r}")
        for name in ("width_mm", "length_mm"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi) or not math.isfinite(hi):
                raise ConfigError(f"{name} must be a range 0 < low <= high, got {(lo, hi)!r}")
        if self.width_mm[1] > 10 or self.length_mm[1] > 80:
            raise ConfigError(f"PVS of width {self.width_mm} / length {self.length_mm} mm are not plausible")
        for name, hi in (("lacunes", 50), ("vessels", 100)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise ConfigError(f"{name} must be an integer 0-{hi}, got {v!r}")
        if isinstance(self.wmh, bool) or not isinstance(self.wmh, int) or not 0 <= self.wmh <= 3:
            raise ConfigError(f"wmh must be a Fazekas grade 0-3, got {self.wmh!r}")
        for name, hi in (("noise", 1.0), ("bias", 1.0), ("blur_fwhm_mm", 10.0), ("motion_mm", 20.0)):
            _positive(name, getattr(self, name), lo=0.0, hi=hi, allow_zero=True)
        if self.slice_thickness_mm is not None:
            _positive("slice_thickness_mm", self.slice_thickness_mm, lo=self.spacing, hi=20.0)
        if self.slice_axis not in (0, 1, 2):
            raise ConfigError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis!r}")
        if not isinstance(self.extra, Mapping):
            raise ConfigError("extra must be a mapping")


def _positive(name: str, v: Any, *, lo: float, hi: float, allow_zero: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (lo <= v <= hi) and (allow_zero or v > 0)
    if not ok:
        raise ConfigError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v!r}")


def _coerce(d: Mapping[str, Any]) -> dict[str, Any]:
    """JSON round trips turn tuples into lists and ints may arrive as floats: normalise them."""
    out = dict(d)
    if "shape" in out and isinstance(out["shape"], (list, tuple)):
        out["shape"] = tuple(int(n) if isinstance(n, float) and n.is_integer() else n for n in out["shape"])
    elif "shape" in out and isinstance(out["shape"], int):
        out["shape"] = (out["shape"],) * 3
    for k in ("width_mm", "length_mm"):
        if k in out and isinstance(out[k], (list, tuple)):
            if len(out[k]) != 2:
                raise ConfigError(f"{k} must be a (low, high) pair, got {out[k]!r}")
            out[k] = (float(out[k][0]), float(out[k][1]))
    for k in ("spacing", "noise", "bias", "blur_fwhm_mm", "motion_mm", "slice_thickness_mm"):
        if isinstance(out.get(k), int) and not isinstance(out.get(k), bool):
            out[k] = float(out[k])
    if isinstance(out.get("burden"), Mapping):
        out["burden"] = dict(out["burden"])
    return out
