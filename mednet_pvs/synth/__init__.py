"""Synthetic PVS phantoms: ground truth for tests, demos and pretraining.

    from mednet_pvs.synth import PhantomConfig, make_phantom, make_cohort

    ph = make_phantom(anatomy="procedural", burden=3, seed=1)   # 64^3 head, < 1 s
    ph = make_phantom(PhantomConfig(spacing=0.8), seed=1)       # MNI152 at 0.8 mm, T2w
    ph.save("out", "sub-001")                                   # NIfTIs + JSON sidecar

See :mod:`~mednet_pvs.synth.anatomy` (regions, aseg codes), :mod:`~mednet_pvs.synth.pvs`
(burden -> counts, orientation), :mod:`~mednet_pvs.synth.confounders`,
:mod:`~mednet_pvs.synth.contrast` and :mod:`~mednet_pvs.synth.acquisition`.
"""
from __future__ import annotations

from mednet_pvs.synth.cohort import make_cohort
from mednet_pvs.synth.phantom_config import CONTRASTS, PVS_REGIONS, PhantomConfig
from mednet_pvs.synth.phantom import Phantom, make_phantom

__all__ = ["CONTRASTS", "PVS_REGIONS", "Phantom", "PhantomConfig", "make_cohort", "make_phantom"]
