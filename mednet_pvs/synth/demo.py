"""The quick-start job behind ``mednet-pvs demo``: make a phantom, save it and a picture of it.

Kept as a plain function so later steps (segmenting the phantom with a bundled model, reporting
Dice) can be added here without touching the CLI.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the embedded default phantom of the demo: full-brain MNI152 at 1 mm, T2w, moderate burden
DEMO_DEFAULTS: dict[str, Any] = {"anatomy": "mni", "spacing": 1.0, "contrast": "T2w", "burden": 2}


@dataclass
class DemoResult:
    """What :func:`run_demo` made."""

    out: Path
    paths: dict[str, Path]
    pvs_count: int
    pvs_volume_mm3: float
    pvs_by_region: dict[str, int]
    shape: tuple[int, int, int]
    spacing_mm: float
    seconds: float
    meta: dict[str, Any] = field(repr=False, default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [
            f"phantom: {self.meta.get('anatomy')} {self.shape[0]}x{self.shape[1]}x{self.shape[2]} at "
            f"{self.spacing_mm:g} mm, {self.meta['config']['contrast']}, burden {self.meta['config']['burden']}, "
            f"seed {self.meta['seed']}",
            f"PVS: {self.pvs_count} tubes, {self.pvs_volume_mm3:.1f} mm^3 labelled ("
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.pvs_by_region.items()) + ")",
        ]
        conf = self.meta.get("confounders", {})
        lines.append(f"confounders (not labelled): {conf.get('lacunes', 0)} lacunes, WMH Fazekas "
                     f"{conf.get('wmh_fazekas', 0)}, {conf.get('vessels', 0)} surface vessels")
        lines += [f"{k:>9}: {p}" for k, p in self.paths.items()]
        lines.append(f"done in {self.seconds:.1f} s")
        return lines


def run_demo(out: str | os.PathLike = "demo_out", seed: int = 0, *, anatomy: str = "mni", name: str = "phantom",
             **overrides: Any) -> DemoResult:
    """Make one phantom (defaults :data:`DEMO_DEFAULTS`), save its NIfTIs, sidecar and ``overview.png``."""
    from mednet_pvs.synth.phantom import make_phantom
    from mednet_pvs.viz import save_overview

    t0 = time.perf_counter()
    settings = dict(DEMO_DEFAULTS, anatomy=anatomy, **overrides)
    ph = make_phantom(seed=seed, **settings)
    out = Path(out)
    paths = ph.save(out, name)
    paths["overview"] = save_overview(ph.image, ph.label, ph.affine, out / "overview.png",
                                      title=f"synthetic PVS phantom, {ph.meta['pvs_count']} PVS, seed {seed}")
    return DemoResult(
        out=out,
        paths=paths,
        pvs_count=int(ph.meta["pvs_count"]),
        pvs_volume_mm3=float(ph.meta["pvs_volume_mm3"]),
        pvs_by_region=dict(ph.meta["pvs_count_by_region"]),
        shape=tuple(ph.image.shape),  # type: ignore[arg-type]
        spacing_mm=float(ph.spacing[0]),
        seconds=time.perf_counter() - t0,
        meta=ph.meta,
    )
