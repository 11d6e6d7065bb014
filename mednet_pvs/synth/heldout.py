"""The held-out test set of the any-contrast model: phantoms the training stream never makes.

    from mednet_pvs.synth.heldout import heldout_groups, heldout_cases, make_heldout_case

    for case in heldout_cases(heldout_groups(contrasts=("T2w",)), n=1):
        ph = make_heldout_case(case)          # a Phantom, stored in case.orientation

Groups (:class:`HeldoutGroup`) are contrast x resolution x head:

* **contrast**: a preset without jitter (:data:`HELDOUT_CONTRASTS`: T1w, T2w, FLAIR, PD);
* **resolution** (:data:`RESOLUTIONS`): ``0.8mm`` isotropic (phantom grid 0.8 mm), ``1mm``
  isotropic, ``thick`` 1 x 1 x 5 mm axial slices (the slice axis is z), each stored on its
  acquisition grid (what a scanner writes);
* **head**: the whole head, or skull-stripped (zero outside a dilated brain mask, cut to the brain);

made by :func:`~mednet_pvs.synth.domain.make_domain_phantom` with settings the training never
used exactly (:data:`HELDOUT_OVERRIDES`: deformations up to 6 mm, scaling 0.8-1.2 instead of 4 mm
and 0.85-1.15; no contrast jitter), plus the group ``legacy-1mm``: the old generator's
(:func:`~mednet_pvs.synth.make_phantom`, skull-stripped, undeformed, 1 mm, T1w or T2w), the ground
the per-contrast bundled models were trained on.

Seeds (:func:`heldout_seed`) start at :data:`HELDOUT_SEED_BASE` = 7,000,000, one block per group
and role: the training stream draws ``seed + i`` from 0 (about 10^5 at most) and validation/test
phantoms from ``2**31`` on, so no held-out case shares a seed with them. Cases alternate between
RAS and LPS storage (:func:`~mednet_pvs.synth.domain.store_as`: the voxels move, the world
coordinates stay). ``role="fit"`` cases (one per contrast and resolution) are for fitting a
baseline's settings (the Frangi threshold), never scored.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mednet_pvs.errors import ConfigError

#: first seed of the held-out set (far above every training seed, below the 2**31 validation block)
HELDOUT_SEED_BASE = 7_000_000
#: preset contrasts of the held-out groups, in seed order
HELDOUT_CONTRASTS = ("T1w", "T2w", "FLAIR", "PD")
#: acquisition voxel sizes (x, y, z) in mm, in seed order
RESOLUTIONS: dict[str, tuple[float, float, float]] = {"0.8mm": (0.8, 0.8, 0.8), "1mm": (1.0, 1.0, 1.0),
                                                      "thick": (1.0, 1.0, 5.0)}
#: the phantom grid (mm) each resolution is rendered on before it is sampled on its own grid
PHANTOM_SPACING: dict[str, float] = {"0.8mm": 0.8, "1mm": 1.0, "thick": 1.0}
#: the old generator's group (skull-stripped, undeformed 1 mm, T1w/T2w only)
LEGACY = "legacy-1mm"
LEGACY_CONTRASTS = ("T1w", "T2w")
#: what differs from the training generator (``DomainConfig`` defaults 4 mm and 0.85-1.15)
HELDOUT_OVERRIDES: dict[str, Any] = {"deform_mm": 6.0, "scale_range": (0.8, 1.2)}
#: storage orders the cases alternate between
ORIENTATIONS = ("RAS", "LPS")
#: cases per group and role at most (the seed block's size)
MAX_CASES = 500
ROLES = ("test", "fit")
#: the procedural anatomy's grid for quick runs of the legacy group (the domain generator's own)
PROCEDURAL_SHAPE = (96, 96, 96)


@dataclass(frozen=True)
class HeldoutGroup:
    """One group of the table: a contrast, a resolution key (or :data:`LEGACY`) and the field of view."""

    contrast: str
    resolution: str
    head: bool

    def __post_init__(self) -> None:
        if self.resolution == LEGACY:
            if self.contrast not in LEGACY_CONTRASTS or self.head:
                raise ConfigError(f"{LEGACY} has skull-stripped {'/'.join(LEGACY_CONTRASTS)} phantoms only, "
                                  f"not {self.contrast} {'whole head' if self.head else ''}".rstrip())
        elif self.resolution not in RESOLUTIONS:
            raise ConfigError(f"resolution must be one of {', '.join(RESOLUTIONS)} or {LEGACY}, not {self.resolution!r}")
        if self.contrast not in HELDOUT_CONTRASTS:
            raise ConfigError(f"contrast must be one of {', '.join(HELDOUT_CONTRASTS)}, not {self.contrast!r}")

    @property
    def legacy(self) -> bool:
        return self.resolution == LEGACY

    @property
    def fov(self) -> str:
        return "head" if self.head else "stripped"

    @property
    def name(self) -> str:
        """``"T2w 1mm head"``, ``"T1w legacy-1mm stripped"``."""
        return f"{self.contrast} {self.resolution} {self.fov}"

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """The voxel size (x, y, z) in mm the stored image has, before any reorientation."""
        return (1.0, 1.0, 1.0) if self.legacy else RESOLUTIONS[self.resolution]


@dataclass(frozen=True)
class HeldoutCase:
    """One held-out phantom: its group, index within the group, role, seed and storage order."""

    group: HeldoutGroup
    index: int
    role: str
    seed: int
    orientation: str

    @property
    def name(self) -> str:
        """A file-name stem: ``T2w-1mm-head-test00``."""
        return f"{self.group.contrast}-{self.group.resolution}-{self.group.fov}-{self.role}{self.index:02d}"


def _slot(group: HeldoutGroup) -> tuple[int, int, int]:
    c = HELDOUT_CONTRASTS.index(group.contrast)
    r = len(RESOLUTIONS) if group.legacy else list(RESOLUTIONS).index(group.resolution)
    return c, r, int(group.head)


def heldout_seed(group: HeldoutGroup, index: int, role: str = "test") -> int:
    """The seed of case ``index`` (0 <= index < :data:`MAX_CASES`) of ``group`` in ``role``:
    ``BASE + contrast * 100000 + resolution * 10000 + head * 1000 + role * 500 + index``, unique
    over every group, role and index."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not 0 <= int(index) < MAX_CASES:
        raise ConfigError(f"case index must be in [0, {MAX_CASES}), not {index!r}")
    c, r, h = _slot(group)
    return HELDOUT_SEED_BASE + c * 100_000 + r * 10_000 + h * 1_000 + ROLES.index(role) * MAX_CASES + int(index)


def heldout_case(group: HeldoutGroup, index: int = 0, role: str = "test") -> HeldoutCase:
    """Case ``index`` of ``group``: its seed, and RAS or LPS alternating over groups and cases."""
    c, r, h = _slot(group)
    orientation = ORIENTATIONS[(c + r + h + int(index) + ROLES.index(role)) % len(ORIENTATIONS)]
    return HeldoutCase(group, int(index), role, heldout_seed(group, index, role), orientation)


def heldout_groups(contrasts: Sequence[str] = HELDOUT_CONTRASTS, resolutions: Sequence[str] = tuple(RESOLUTIONS),
                   heads: Sequence[bool] = (True, False), *, legacy: bool = True) -> list[HeldoutGroup]:
    """Every contrast x resolution x head group asked for, then the legacy group of each asked
    T1w/T2w contrast (``legacy=True``)."""
    groups = [HeldoutGroup(c, r, h) for c in contrasts for r in resolutions for h in heads]
    if legacy:
        groups += [HeldoutGroup(c, LEGACY, False) for c in contrasts if c in LEGACY_CONTRASTS]
    return groups


def heldout_cases(groups: Iterable[HeldoutGroup], n: int = 1) -> list[HeldoutCase]:
    """The ``n`` test cases of each group, group by group."""
    return [heldout_case(g, i) for g in groups for i in range(n)]


def fit_case(group: HeldoutGroup) -> HeldoutCase:
    """The one case a baseline is fitted on for ``group``'s contrast and resolution class: the
    skull-stripped group's first ``role="fit"`` case (never a scored case: other seed block)."""
    return heldout_case(HeldoutGroup(group.contrast, group.resolution, False), 0, "fit")


def make_heldout_case(case: HeldoutCase, *, anatomy: str = "mni") -> Any:
    """The :class:`~mednet_pvs.synth.Phantom` of ``case``, stored in ``case.orientation``.

    ``anatomy="procedural"`` (quick runs) renders the small procedural head instead of the MNI152
    brain; everything else (seed, contrast, resolution, orientation) is the same. Same case ->
    same arrays.
    """
    from mednet_pvs.synth.domain import DomainConfig, make_domain_phantom, store_as
    from mednet_pvs.synth.phantom import make_phantom

    g = case.group
    if anatomy not in ("mni", "procedural"):
        raise ConfigError(f"anatomy must be 'mni' or 'procedural', not {anatomy!r}")
    if g.legacy:
        extra = {"shape": PROCEDURAL_SHAPE} if anatomy == "procedural" else {}
        ph = make_phantom(anatomy=anatomy, contrast=g.contrast, spacing=1.0, seed=case.seed, **extra)
    else:
        cfg = DomainConfig.fixed(g.contrast, head=g.head, resolution=RESOLUTIONS[g.resolution],
                                 spacing=PHANTOM_SPACING[g.resolution], anatomy=anatomy, **HELDOUT_OVERRIDES)
        ph = make_domain_phantom(cfg, seed=case.seed)
    out = store_as(ph, case.orientation)
    out.meta.update(heldout={"group": g.name, "index": case.index, "role": case.role, "seed": case.seed,
                             "orientation": case.orientation, "anatomy": anatomy})
    return out


__all__ = ["HELDOUT_CONTRASTS", "HELDOUT_OVERRIDES", "HELDOUT_SEED_BASE", "LEGACY", "RESOLUTIONS", "HeldoutCase",
           "HeldoutGroup", "fit_case", "heldout_case", "heldout_cases", "heldout_groups", "heldout_seed",
           "make_heldout_case"]
