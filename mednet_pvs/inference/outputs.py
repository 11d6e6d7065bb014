"""A case's output files: their names, and the one writer of them.

    out = CaseOutputs("out/sub-01", "sub-01")
    out.write(pred.scan, pred.mask, probabilities=pred.probabilities, burden=burden, preview=True)
    out.path("mask")            # out/sub-01/sub-01_mask.nii.gz

Every place that writes or looks for a case's results (``Prediction.save``, ``predict_batch`` and
its resume check, the demo, notebooks) goes through :class:`CaseOutputs`, so adding an output file
is one change here. Files, each written atomically, in this order:

==============  ==========================  =====================================================
key             file                        what
==============  ==========================  =====================================================
``mask``        ``<case>_mask.nii.gz``      uint8 PVS mask, exactly the mask given (the model's)
``probabilities`` ``<case>_prob.nii.gz``    float32 PVS probability
``labels``      ``<case>_clusters.nii.gz``  int32 cluster ids of the burden
``preview``     ``<case>_preview.png``      orthogonal slices with the mask overlaid
``stats``       ``<case>_stats.json``       the burden's numbers (:meth:`~mednet_pvs.analysis.Burden.to_dict`)
``clusters``    ``<case>_clusters.csv``     one row per cluster; written last: its presence means done
==============  ==========================  =====================================================

Every NIfTI goes on the grid of the scan it was predicted from (its affine and header kept).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.errors import InputError
from mednet_pvs.io import Scan, safe_case_id, save_like

#: key -> file name suffix (after ``<case>_``), in the order they are written.
OUTPUT_FILES = {
    "mask": "mask.nii.gz",
    "probabilities": "prob.nii.gz",
    "labels": "clusters.nii.gz",
    "preview": "preview.png",
    "stats": "stats.json",
    "clusters": "clusters.csv",
}


@dataclass(frozen=True)
class CaseOutputs:
    """The output files of one case: ``<folder>/<case_id>_<suffix>``.

    Args:
        folder: where the case's files go (created when writing).
        case_id: the prefix of every file name.
    """

    folder: Path
    case_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        if safe_case_id(self.case_id) != self.case_id:  # refuses ids that escape the folder
            raise InputError(None, f"case id {self.case_id!r} is not a safe file name; use {safe_case_id(self.case_id)!r}")

    def path(self, key: str) -> Path:
        """The file of output ``key`` (one of :data:`OUTPUT_FILES`)."""
        return self.folder / f"{self.case_id}_{OUTPUT_FILES[key]}"

    __getitem__ = path

    @property
    def paths(self) -> dict[str, Path]:
        """Every output's path, by key."""
        return {k: self.path(k) for k in OUTPUT_FILES}

    def done(self, *also: str) -> bool:
        """Whether a complete result is on disk: stats, the clusters table written after it, and
        the optional outputs named in ``also`` (e.g. ``"probabilities"``, ``"preview"``)."""
        return all(self.path(k).is_file() for k in ("stats", "clusters", *also))

    def partial_files(self) -> list[Path]:
        """Temp files of this case's outputs left by an interrupted write (:func:`~mednet_pvs.io.atomic_path`)."""
        if not self.folder.is_dir():
            return []
        names = {f".{self.path(k).name}." for k in OUTPUT_FILES}
        return sorted(p for p in self.folder.iterdir() if ".tmp" in p.name and any(p.name.startswith(n) for n in names))

    def remove_partial(self) -> list[Path]:
        """Delete :meth:`partial_files` (called before writing); returns what was removed."""
        gone = self.partial_files()
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    def read_stats(self) -> dict[str, Any]:
        """The case's ``stats.json`` content."""
        return json.loads(self.path("stats").read_text())

    def write(
        self,
        scan: Scan,
        mask: np.ndarray,
        *,
        probabilities: np.ndarray | None = None,
        save_probabilities: bool = True,
        burden: Any = None,
        labels: bool = False,
        preview: bool = False,
        title: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Path]:
        """Write this case's outputs on ``scan``'s grid, atomically, in :data:`OUTPUT_FILES` order.

        Args:
            scan: the input scan (its grid, affine and header).
            mask: (X, Y, Z) PVS mask on that grid, written as it is (uint8).
            probabilities: (X, Y, Z) PVS probability: written beside the mask (float32) unless
                ``save_probabilities`` is false, and drawn in the preview.
            save_probabilities: write ``probabilities`` (when given).
            burden: a :class:`~mednet_pvs.analysis.Burden` of the mask: writes the stats JSON and
                the clusters CSV (and, with ``labels``, the cluster id map).
            labels: also write the burden's cluster ids (needs ``burden``).
            preview: also write a PNG of orthogonal slices with the mask (and probabilities).
            title: the preview's title.
            provenance: what made this result (model, settings, inputs' sha256, version): stored
                in the stats JSON as ``"provenance"`` (needs ``burden``).

        Returns:
            ``{key: path}`` of the files written.
        """
        from mednet_pvs.analysis._tables import write_csv, write_strict_json

        self.remove_partial()
        written = {"mask": save_like(np.asarray(mask), scan, self.path("mask"), dtype=np.uint8)}
        if probabilities is not None and save_probabilities:
            written["probabilities"] = save_like(np.asarray(probabilities, np.float32), scan, self.path("probabilities"), dtype=np.float32)
        if labels:
            if burden is None:
                raise ValueError("labels=True needs the burden whose cluster ids to write")
            written["labels"] = save_like(burden.labels, scan, self.path("labels"), dtype=np.int32)
        if preview:
            from mednet_pvs.viz import show

            show(scan, mask, probs=probabilities, title=title, save=self.path("preview"))
            written["preview"] = self.path("preview")
        if burden is not None:
            stats = burden.to_dict() if provenance is None else {**burden.to_dict(), "provenance": provenance}
            written["stats"] = write_strict_json(stats, self.path("stats"))
            written["clusters"] = write_csv(burden.clusters, self.path("clusters"))
        return written
