"""A real ``predict`` output folder for the report tests, made fast: small phantoms, and a model that
returns each phantom's true PVS label (so counts are known and quick), run through ``predict_batch``
(the real writers, summary, run record and provenance)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mednet_pvs.inference.batch import collect_inputs, predict_batch
from mednet_pvs.inference.prediction import Prediction
from mednet_pvs.io import load_image
from mednet_pvs.synth import PhantomConfig, make_cohort


class TruthModel:
    """Predicts a phantom's true label (``<subject>_pvs.nii.gz`` beside its ``_T2w`` scan)."""

    name = "truth-model"
    meta: ClassVar[dict[str, Any]] = {}

    def predict(self, scan: Any, **_: Any) -> Prediction:
        label = load_image(str(scan.path).replace("_T2w", "_pvs"), kind="label").data > 0
        return Prediction(np.where(label, 0.9, 0.02).astype(np.float32), label.astype(np.uint8), scan)

    def provenance(self, **_: Any) -> dict[str, Any]:
        return {"model": {"name": self.name, "kind": "test", "weights_sha256": "ab" * 32}, "settings": {"threshold": 0.5}}


def predict_output(root: Path, n: int = 6, *, extras: bool = True, preview: bool = False) -> Path:
    """``root/out``: ``n`` burden-1 cases over two sites (``site1``, ``site2``) and, with ``extras``,
    ``sub-heavy`` (burden 4: an outlier), ``sub-empty`` (burden 0: an empty mask) and ``sub-broken``
    (an unreadable scan: a failed case). Inputs under ``root/scans`` (a manifest with sites)."""
    cfg: dict[str, Any] = {"anatomy": "procedural", "shape": (32, 32, 32), "contrast": "T2w", "confounders": False}
    manifest = make_cohort(root / "scans", n, PhantomConfig(burden=1, **cfg), seed=3, sites=2)
    if extras:
        for name, burden in (("heavy", 4), ("empty", 0)):
            make_cohort(root / name, 1, PhantomConfig(burden=burden, **cfg), seed=9)
        (root / "scans" / "broken_T2w.nii.gz").write_bytes(b"not a nifti")
        lines = manifest.read_text().splitlines()
        head = lines[0].split(",")

        def row(**kw: str) -> str:
            return ",".join(kw.get(c, "") for c in head)

        lines += [row(subject=f"sub-{name}", image=f"../{name}/sub-001/sub-001_T2w.nii.gz", site=site,
                      regions=f"../{name}/sub-001/sub-001_regions.nii.gz") for name, site in (("heavy", "site1"), ("empty", "site2"))]
        lines.append(row(subject="sub-broken", image="broken_T2w.nii.gz", site="site2"))
        manifest.write_text("\n".join(lines) + "\n")
    predict_batch(collect_inputs(manifest), root / "out", TruthModel(), preview=preview, save_probs=True, overlap_io=False)
    return root / "out"


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder`` (to see it untouched)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}
