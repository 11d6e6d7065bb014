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
``classes``     ``<case>_classes.nii.gz``   uint8 label of every class, for models with several
                                            (e.g. PVS and WMH); ``stats`` then has ``"classes"``
``brainmask``   ``<case>_brainmask.nii.gz`` uint8 brain mask, for models that find the brain
                                            (``mednet-pvs-synth-any``); ``stats`` then has
                                            ``"brain_volume_mm3"``
``preview``     ``<case>_preview.png``      orthogonal slices with the mask overlaid
``stats``       ``<case>_stats.json``       the burden's numbers (:meth:`~mednet_pvs.analysis.Burden.to_dict`)
``clusters``    ``<case>_clusters.csv``     one row per cluster; written last: its presence means done
==============  ==========================  =====================================================

Every NIfTI goes on the grid of the scan it was predicted from (its affine and header kept).
Models with several classes also write one clusters table per class other than PVS
(:meth:`CaseOutputs.class_clusters_path`: ``<case>_wmh_clusters.csv``; ``bids``:
``<case>_desc-wmh_clusters.tsv``), before the stats and the PVS table.

BIDS derivatives (``layout="bids"``, ``mednet-pvs predict --layout bids``)
-------------------------------------------------------------------------
``CaseOutputs.bids(root, "sub-01_ses-1")`` names the same outputs as a BIDS derivative dataset
does (as fMRIPrep's): the folder is ``<root>/sub-01/ses-1/anat/`` and the prefix the input's own
BIDS entities (:func:`bids_prefix`: ``sub-01_ses-1_T2w.nii.gz`` -> ``sub-01_ses-1``):

==========================  ==================================  ===================================
key                         file (after ``<prefix>_``)          what
==========================  ==================================  ===================================
``mask``                    ``desc-pvs_mask.nii.gz``            as above
``probabilities``           ``desc-pvs_probseg.nii.gz``         as above
``probabilities_sidecar``   ``desc-pvs_probseg.json``           its sidecar: Sources, provenance
``labels``                  ``desc-pvsclusters_dseg.nii.gz``    as above
``classes``                 ``desc-classes_dseg.nii.gz``        as above
``brainmask``               ``desc-brain_mask.nii.gz``          as above
``preview``                 ``desc-pvs_preview.png``            as above (listed in ``.bidsignore``)
``stats``                   ``desc-pvs_mask.json``              the mask's sidecar: ``Type``,
                                                                ``Sources``, the burden's numbers,
                                                                ``provenance``
``clusters``                ``desc-pvs_clusters.tsv``           as above, tab-separated, ``n/a``
                                                                (listed in ``.bidsignore``)
==========================  ==================================  ===================================

:func:`write_bids_dataset` writes the dataset's own files: ``dataset_description.json``
(``DatasetType: derivative``, ``GeneratedBy`` with the model and its weights' sha256),
``README.md``, ``.bidsignore`` and the cohort table ``phenotype/pvs_burden.tsv``
(``participant_id`` first, BIDS's place for per-participant measures) with its column
descriptions ``phenotype/pvs_burden.json``. Sidecars name the input scan in ``Sources`` and
``SpatialReference`` (``file:`` URIs). The deno BIDS validator (``bids-validator-deno`` 3.0.2)
finds no error in such a dataset; the rules are written down in ``tests/inference/test_batch_bids.py``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.errors import InputError
from mednet_pvs.io import (
    PathType,
    Scan,
    safe_case_id,
    save_like,
    write_json,
    write_text,
)

#: key -> file name suffix (after ``<case>_``), in the order they are written.
OUTPUT_FILES = {
    "mask": "mask.nii.gz",
    "probabilities": "prob.nii.gz",
    "labels": "clusters.nii.gz",
    "classes": "classes.nii.gz",
    "brainmask": "brainmask.nii.gz",
    "preview": "preview.png",
    "stats": "stats.json",
    "clusters": "clusters.csv",
}
#: The same outputs named as BIDS derivatives (after ``<prefix>_``), in the order they are written.
BIDS_OUTPUT_FILES = {
    "mask": "desc-pvs_mask.nii.gz",
    "probabilities": "desc-pvs_probseg.nii.gz",
    "probabilities_sidecar": "desc-pvs_probseg.json",
    "labels": "desc-pvsclusters_dseg.nii.gz",
    "classes": "desc-classes_dseg.nii.gz",
    "brainmask": "desc-brain_mask.nii.gz",
    "preview": "desc-pvs_preview.png",
    "stats": "desc-pvs_mask.json",
    "clusters": "desc-pvs_clusters.tsv",
}
#: Output layouts: name -> its file names.
LAYOUTS = {"flat": OUTPUT_FILES, "bids": BIDS_OUTPUT_FILES}
#: The BIDS version the ``bids`` layout follows.
BIDS_VERSION = "1.10.0"
#: A BIDS file-name prefix: ``sub-<label>`` and further ``<key>-<label>`` entities (labels alphanumeric).
BIDS_PREFIX = re.compile(r"sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*")
_BIDS_NAME = re.compile(rf"(?P<prefix>{BIDS_PREFIX.pattern})_[A-Za-z0-9]+\.(?:nii\.gz|nii|mgz)")
#: The cohort table of a BIDS-layout run (BIDS's home for per-participant measures), and the
#: dataset-level files that are not BIDS files (listed in ``.bidsignore``).
BIDS_TABLE = "phenotype/pvs_burden.tsv"
BIDS_IGNORE = ("summary*.csv", "run*.json", "converted", "*_desc-pvs_preview.png", "*_clusters.tsv")


@dataclass(frozen=True)
class CaseOutputs:
    """The output files of one case: ``<folder>/<case_id>_<suffix>``.

    Args:
        folder: where the case's files go (created when writing).
        case_id: the prefix of every file name (``bids`` layout: BIDS entities, ``sub-01[_ses-1]``).
        layout: ``"flat"`` (:data:`OUTPUT_FILES`) or ``"bids"`` (:data:`BIDS_OUTPUT_FILES`; see
            :meth:`bids`).
    """

    folder: Path
    case_id: str
    layout: str = "flat"

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))
        if self.layout not in LAYOUTS:
            raise InputError(None, f"output layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if safe_case_id(self.case_id) != self.case_id:  # refuses ids that escape the folder
            raise InputError(None, f"case id {self.case_id!r} is not a safe file name; use {safe_case_id(self.case_id)!r}")
        if self.layout == "bids" and not BIDS_PREFIX.fullmatch(self.case_id):
            raise InputError(None, f"{self.case_id!r} is not a BIDS file-name prefix (sub-<label>[_ses-<label>]..., labels alphanumeric)")

    @classmethod
    def bids(cls, root: PathType, prefix: str) -> CaseOutputs:
        """A case's outputs in a BIDS derivative dataset at ``root``: ``<root>/sub-<label>[/ses-<label>]/anat/<prefix>_*``."""
        if not BIDS_PREFIX.fullmatch(prefix):
            raise InputError(None, f"{prefix!r} is not a BIDS file-name prefix (sub-<label>[_ses-<label>]..., labels alphanumeric)")
        entities = dict(part.split("-", 1) for part in prefix.split("_"))
        folder = Path(root) / f"sub-{entities['sub']}"
        if "ses" in entities:
            folder = folder / f"ses-{entities['ses']}"
        return cls(folder / "anat", prefix, "bids")

    @property
    def names(self) -> dict[str, str]:
        """This layout's file names after ``<case_id>_``, by key."""
        return LAYOUTS[self.layout]

    def path(self, key: str) -> Path:
        """The file of output ``key`` (one of :attr:`names`)."""
        return self.folder / f"{self.case_id}_{self.names[key]}"

    __getitem__ = path

    @property
    def paths(self) -> dict[str, Path]:
        """Every output's path, by key."""
        return {k: self.path(k) for k in self.names}

    def done(self, *also: str) -> bool:
        """Whether a complete result is on disk: stats, the clusters table written after it, and
        the optional outputs named in ``also`` (e.g. ``"probabilities"``, ``"preview"``)."""
        return all(self.path(k).is_file() for k in ("stats", "clusters", *also))

    def partial_files(self) -> list[Path]:
        """Temp files of this case's outputs left by an interrupted write (:func:`~mednet_pvs.io.atomic_path`)."""
        if not self.folder.is_dir():
            return []
        names = {f".{self.path(k).name}." for k in self.names}
        stem = f".{self.case_id}_"  # per-class cluster tables: .<case>_<class>_clusters.csv.<...>.tmp

        def ours(name: str) -> bool:
            return any(name.startswith(n) for n in names) or (name.startswith(stem) and "_clusters." in name)

        return sorted(p for p in self.folder.iterdir() if ".tmp" in p.name and ours(p.name))

    def remove_partial(self) -> list[Path]:
        """Delete :meth:`partial_files` (called before writing); returns what was removed."""
        gone = self.partial_files()
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    def class_clusters_path(self, name: str) -> Path:
        """The clusters table of class ``name`` (models with several classes): ``<case>_<class>_clusters.csv``
        (``bids``: ``<case>_desc-<class>_clusters.tsv``), the class in lower-case letters and digits."""
        slug = class_slug(name)
        return self.folder / (f"{self.case_id}_desc-{slug}_clusters.tsv" if self.layout == "bids"
                              else f"{self.case_id}_{slug}_clusters.csv")

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
        sources: Sequence[str] = (),
        label_map: np.ndarray | None = None,
        classes: Mapping[int, str] | None = None,
        class_burdens: Mapping[str, Any] | None = None,
        brainmask: np.ndarray | None = None,
    ) -> dict[str, Path]:
        """Write this case's outputs on ``scan``'s grid, atomically, in :attr:`names` order.

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
                in the stats JSON as ``"provenance"`` (needs ``burden``; ``bids`` layout: also in the
                probability map's sidecar).
            sources: ``bids`` layout: the sidecars' ``Sources`` (URIs of the input files).
            label_map: (X, Y, Z) label of every class (models with several classes): written as
                ``classes``, and each class's voxel count and volume go into the stats as
                ``"classes": {name: {"label", "voxels", "volume_mm3"}}``.
            classes: label value -> name of ``label_map``.
            class_burdens: class name -> :class:`~mednet_pvs.analysis.Burden` of that class's mask:
                its cluster count and per-region numbers join the class's entry in the stats, and
                each class but PVS (:func:`is_pvs_class`) gets its own clusters table
                (:meth:`class_clusters_path`), written before the stats and the PVS table.
            brainmask: (X, Y, Z) brain mask the model found: written as ``brainmask``, its volume
                in the stats as ``"brain_volume_mm3"``.

        Returns:
            ``{key: path}`` of the files written.
        """
        from mednet_pvs.analysis._tables import write_csv, write_strict_json

        self.remove_partial()
        written = {"mask": save_like(np.asarray(mask), scan, self.path("mask"), dtype=np.uint8)}
        if probabilities is not None and save_probabilities:
            written["probabilities"] = save_like(np.asarray(probabilities, np.float32), scan, self.path("probabilities"), dtype=np.float32)
            if self.layout == "bids":
                sidecar = {"Description": "PVS probability per voxel (the model's output before thresholding)",
                           **_references(sources), **({"provenance": provenance} if provenance else {})}
                written["probabilities_sidecar"] = write_json(sidecar, self.path("probabilities_sidecar"))
        if labels:
            if burden is None:
                raise ValueError("labels=True needs the burden whose cluster ids to write")
            written["labels"] = save_like(burden.labels, scan, self.path("labels"), dtype=np.int32)
        class_stats = None
        if label_map is not None:
            written["classes"] = save_like(np.asarray(label_map), scan, self.path("classes"), dtype=np.uint8)
            voxel_mm3 = float(abs(np.linalg.det(scan.affine[:3, :3])))
            counts = np.bincount(np.asarray(label_map, np.int64).ravel())
            class_stats = {name: {"label": int(v), "voxels": int(counts[v]) if v < counts.size else 0,
                                  "volume_mm3": (int(counts[v]) if v < counts.size else 0) * voxel_mm3}
                           for v, name in sorted((classes or {}).items()) if int(v) != 0}
            for name, b in (class_burdens or {}).items():
                if name in class_stats:
                    class_stats[name].update(clusters=b.count, per_region=b.to_dict()["per_region"])
            for name, b in (class_burdens or {}).items():  # before the stats: the PVS table stays last
                if name in class_stats and not is_pvs_class(name):
                    path = self.class_clusters_path(name)
                    written[f"clusters:{name}"] = (write_text(_tsv(b.clusters), path) if self.layout == "bids"
                                                   else write_csv(b.clusters, path))
        brain_mm3 = None
        if brainmask is not None:
            written["brainmask"] = save_like(np.asarray(brainmask), scan, self.path("brainmask"), dtype=np.uint8)
            brain_mm3 = float(np.count_nonzero(brainmask)) * float(abs(np.linalg.det(scan.affine[:3, :3])))
        if preview:
            from mednet_pvs.viz import show

            show(scan, mask, probs=probabilities, title=title, save=self.path("preview"))
            written["preview"] = self.path("preview")
        if burden is not None:
            stats = burden.to_dict() if provenance is None else {**burden.to_dict(), "provenance": provenance}
            if class_stats is not None:
                stats["classes"] = class_stats
            if brain_mm3 is not None:
                stats["brain_volume_mm3"] = brain_mm3
            if self.layout == "bids":  # the stats are the mask's sidecar
                stats = {"Type": "ROI", "Description": "enlarged perivascular spaces (PVS)", **_references(sources), **stats}
            written["stats"] = write_strict_json(stats, self.path("stats"))
            if self.layout == "bids":
                written["clusters"] = write_text(_tsv(burden.clusters), self.path("clusters"))
            else:
                written["clusters"] = write_csv(burden.clusters, self.path("clusters"))
        return written


def class_slug(name: str) -> str:
    """A class name as it appears in file names and summary columns: lower-case letters and digits."""
    return re.sub(r"[^a-z0-9]", "", name.lower()) or "class"


def is_pvs_class(name: str) -> bool:
    """Whether class ``name`` is PVS (it mentions PVS or perivascular): its table is the main clusters table."""
    return "pvs" in name.lower() or "perivascular" in name.lower()


def _references(sources: Sequence[str]) -> dict[str, Any]:
    """A BIDS sidecar's ``Sources`` and ``SpatialReference`` (the first source: the input scan, whose grid the output is on)."""
    return {"Sources": list(sources), **({"SpatialReference": sources[0]} if sources else {})}


def _tsv(table: Any) -> str:
    """A table as BIDS TSV text: tabs, a header row, ``n/a`` for missing values."""
    return table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.6g")


# ------------------------------------------------------------------------------ BIDS derivatives


def bids_prefix(image: PathType, *, subject: str | None = None, session: str | None = None) -> str | None:
    """The BIDS entities that name a case's outputs in the ``bids`` layout (``None``: none found).

    In order: the input file's own (``sub-01_ses-1_acq-fast_T2w.nii.gz`` -> ``sub-01_ses-1_acq-fast``:
    every entity but the suffix, as BIDS derivatives keep their source's); else ``subject`` and
    ``session`` (a manifest's columns) when they are BIDS labels (``01`` or ``sub-01``, letters and
    digits only).
    """
    m = _BIDS_NAME.fullmatch(Path(image).name)
    if m:
        return m.group("prefix")
    sub = re.sub(r"^sub-", "", subject or "")
    ses = re.sub(r"^ses-", "", session or "")
    if sub.isalnum() and sub.isascii() and (not ses or (ses.isalnum() and ses.isascii())):
        return f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    return None


def bids_fallback_prefix(case_id: str) -> str:
    """``sub-<case id without its non-alphanumerics>``: the prefix of an input without BIDS entities."""
    return "sub-" + (re.sub(r"[^A-Za-z0-9]", "", case_id) or "unnamed")


def dataset_description(provenance: Mapping[str, Any], *, name: str = "mednet-pvs PVS segmentation") -> dict[str, Any]:
    """``dataset_description.json`` of a derivative dataset made by one run (``provenance``: see
    :func:`~mednet_pvs.inference.batch.run_provenance`): ``GeneratedBy`` names mednet-pvs, its
    version and the model (name, kind, weights' sha256)."""
    model = dict(provenance.get("model") or {})
    what = f"model {model.get('name', '?')} ({model.get('kind', '?')})"
    if model.get("weights_sha256"):
        what += f", weights sha256 {model['weights_sha256']}"
    return {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mednet-pvs", "Version": str(provenance.get("version", "unknown")),
                         "Description": f"Enlarged perivascular space segmentation; {what}",
                         "CodeURL": "https://pypi.org/project/mednet-pvs/"}],
    }


#: Column descriptions of the cohort table (``pvs_burden.json``); per-region columns are described by pattern.
BIDS_TABLE_COLUMNS = {
    "participant_id": "BIDS subject label of the input (sub-<label>)",
    "session_id": "BIDS session label of the input (ses-<label>), n/a without sessions",
    "case_id": "the case's id in summary.csv (from the input's name)",
    "status": "ok, failed, or skipped (not a 3D anatomical scan)",
    "count": "number of PVS clusters",
    "volume_mm3": "total PVS volume in mm^3",
    "mean_probability": "mean PVS probability inside the mask",
    "error": "why the case failed",
    "reason": "why the input was not used",
}


def write_bids_dataset(root: PathType, provenance: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                       *, table: str = BIDS_TABLE) -> dict[str, Path]:
    """Write a BIDS derivative dataset's own files at ``root`` (atomically): ``dataset_description.json``,
    ``README.md``, ``.bidsignore`` and the cohort table ``table`` (one row per case,
    ``participant_id`` first, ``n/a`` for missing values) with its column descriptions (``.json``
    beside it).

    Args:
        root: the dataset folder (the run's output folder).
        provenance: the run's (model, settings, version).
        rows: one mapping per case: ``participant_id``, optionally ``session_id``, then any columns.
        table: the cohort table's path in the dataset.
    """
    import pandas as pd

    root = Path(root)
    frame = pd.DataFrame(list(rows))
    first = [c for c in ("participant_id", "session_id") if c in frame.columns]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    what = "enlarged perivascular space (PVS) burden per scan, by mednet-pvs"
    described = {"Description": what, "MeasurementToolMetadata": {"Description": what},
                 **{c: {"Description": BIDS_TABLE_COLUMNS.get(c) or _region_column(c)} for c in frame.columns}}
    description = dataset_description(provenance)
    readme = (f"# {description['Name']}\n\nBIDS derivatives written by mednet-pvs {description['GeneratedBy'][0]['Version']}: "
              "per scan, `*_desc-pvs_mask.nii.gz` (PVS mask on the input's grid), its sidecar (PVS count, volume and "
              "provenance), optional `*_desc-pvs_probseg.nii.gz`; per cohort, `phenotype/pvs_burden.tsv`.\n")
    return {
        "dataset_description": write_json(description, root / "dataset_description.json"),
        "readme": write_text(readme, root / "README.md"),
        "bidsignore": write_text("\n".join(BIDS_IGNORE) + "\n", root / ".bidsignore"),
        "table": write_text(_tsv(frame), root / table),
        "table_sidecar": write_json(described, root / Path(table).with_suffix(".json")),
    }


def _region_column(column: str) -> str:
    for end, what in (("_count", "number of PVS clusters in region"), ("_volume_mm3", "PVS volume (mm^3) in region")):
        if column.endswith(end):
            return f"{what} {column[: -len(end)]}"
    return column
