"""Evaluate predicted PVS masks against reference masks, case by case and over the cohort.

    >>> per_case, summary = evaluate("preds/", "labels/", regions="aseg/")
    >>> per_case[["case_id", "dice", "cluster_dice", "hd95_mm"]]
    >>> summary["metrics"]["dice"]["mean"], summary["agreement"]["count"]["icc31"]
    >>> write_evaluation(per_case, summary, "eval/")   # per_case.csv, summary.csv, summary.json

Pairing: a case's id is its file name without the NIfTI extension and without trailing
mask-like suffixes (:func:`case_id`: ``_pvs``, ``_mask``, ``_seg``, ``_dseg``, ``_label(s)``,
``_pred``, ``_gt``, ``_ref``, ``_manual``, ``_probseg``, ``_aseg``, ``_synthseg``, ``_regions``
and BIDS ``_desc-<x>``, in any combination), so ``sub-01_ses-1_desc-pvs_mask.nii.gz``,
``sub-01_ses-1_pvs.nii.gz`` and ``sub-01_ses-1.nii.gz`` pair up. The reference may also be a
cohort manifest (``.csv``/``.tsv``) or BIDS-like folder as read by
:func:`mednet_pvs.data.cases.load_cases`: its ``label`` column is the reference, its case key
the id, and an extra ``regions`` (or ``aseg``) column the region map.

A case that cannot be evaluated (no prediction, no reference, unreadable file, grids that differ,
a mask that is not binary 0/1) becomes a row with ``status`` other than ``"ok"`` and an ``error``
message naming the file and the problem, never a crash, and the other cases are still scored
(``strict=True`` raises instead). Masks follow the same value rule as ``mednet-pvs check-data``
(:func:`mednet_pvs.data.checks.label_value_problem`): values 0/1/2, 255 or -1 are an error, never
silently binarised. Metrics are those of :mod:`mednet_pvs.analysis.metrics`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from mednet_pvs.analysis._tables import write_csv, write_strict_json
from mednet_pvs.data.cases import REGION_COLUMNS
from mednet_pvs.data.checks import label_value_problem
from mednet_pvs.analysis.clusters import binary_mask
from mednet_pvs.analysis.metrics import (
    EVAL_GROUPS,
    SMALL_MAX_VOXELS,
    SURFACE_TOLERANCE_MM,
    agreement,
    case_metrics,
)
from mednet_pvs.analysis.regions import load_regions
from mednet_pvs.errors import InputError, MednetError
from mednet_pvs.io import load_image

PathType = Union[str, PathLike]
Files = Union[PathType, Sequence[PathType], Mapping[str, PathType]]

_NII = (".nii.gz", ".nii", ".mgz", ".mgh")
_SUFFIX = re.compile(
    r"(?:_(?:desc-[A-Za-z0-9]+|pvs|mask|masks|seg|dseg|label|labels|pred|prediction|probseg|gt|ref|manual"
    r"|aseg|synthseg|regions))+$",
    re.IGNORECASE,
)
#: Columns of the per-case table that are not metrics.
INFO_COLUMNS = ("case_id", "status", "error", "pred", "ref", "regions")


def case_id(path: PathType) -> str:
    """The case id of a file: its name without NIfTI extension and mask-like suffixes."""
    name = Path(path).name
    for ext in _NII:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    stripped = _SUFFIX.sub("", name)
    return stripped or name


def _index(files: list[Path], where: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        cid = case_id(f)
        if cid in out:
            raise InputError(where, f"two files for case '{cid}': {out[cid].name} and {f.name}; keep one")
        out[cid] = f
    return out


def _is_cohort(folder: Path) -> bool:
    return any((folder / m).is_file() for m in ("manifest.csv", "manifest.tsv")) or any(folder.glob("sub-*/"))


def _nifti_files(folder: Path) -> list[Path]:
    """NIfTI files of a folder; a ``mednet-pvs predict`` output folder (``<case>/<case>_mask.nii.gz``) gives its masks."""
    def nii(ps):
        return sorted(p for p in ps if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(_NII))

    files = nii(folder.iterdir())
    return files or nii(folder.glob("*/*_mask.nii.gz"))


def _cohort(src: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """``({id: label}, {id: region map})`` of a manifest or BIDS folder."""
    from mednet_pvs.data.cases import load_cases

    labels: dict[str, Path] = {}
    regions: dict[str, Path] = {}
    base = src.parent if src.is_file() else src
    for case in load_cases(src, require_label=True):
        labels[case.key] = Path(case.label)  # type: ignore[arg-type]
        for col in REGION_COLUMNS:
            if case.extra.get(col):
                p = Path(case.extra[col]).expanduser()
                regions[case.key] = p if p.is_absolute() else base / p
                break
    return labels, regions


def collect(src: Files | None, what: str) -> dict[str, Path]:
    """``{case id: file}`` from a folder of NIfTI files, a list of files or a ``{id: file}`` mapping."""
    if src is None:
        return {}
    if isinstance(src, Mapping):
        return {str(k): Path(v) for k, v in src.items()}
    if isinstance(src, (str, PathLike)):
        p = Path(src).expanduser()
        if not p.exists():
            raise InputError(p, f"{what} not found")
        if p.is_dir():
            files = _nifti_files(p)
            if not files:
                raise InputError(p, f"no NIfTI files (.nii, .nii.gz, .mgz) in this {what} folder")
            return _index(files, str(p))
        return _index([p], str(p))
    return _index([Path(f) for f in src], f"<{what} list>")


def _references(ref: Files) -> tuple[dict[str, Path], dict[str, Path]]:
    if isinstance(ref, (str, PathLike)):
        p = Path(ref).expanduser()
        if (p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".txt")) or (p.is_dir() and _is_cohort(p)):
            return _cohort(p)
    return collect(ref, "reference"), {}


def _grid_text(scan: Any) -> str:
    return f"shape {scan.shape}, spacing {' x '.join(f'{s:.4g}' for s in scan.spacing)} mm"


def _one_line(e: BaseException) -> str:
    """An unexpected exception as one line: its type and message."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _read(src: PathType, what: str, read: Any) -> Any:
    """``read(src)``, any failure that is not already a :class:`MednetError` becoming an
    :class:`InputError` that names the file (``"<file>: <type>: <message>"``)."""
    try:
        return read(src)
    except MednetError:
        raise
    except Exception as e:  # noqa: BLE001 -- an odd file (colour, complex, broken header) is its case's problem
        raise InputError(src if isinstance(src, (str, PathLike)) else f"<{what}>", _one_line(e)) from e


def _read_mask(src: PathType, what: str) -> Any:
    scan = _read(src, what, lambda s: load_image(s, kind="label", max_anisotropy=None))
    if problem := label_value_problem(scan.data):
        raise InputError(scan.name, f"{what} is not a binary mask: {problem}")
    return scan


def evaluate_case(pred: PathType, ref: PathType, regions: PathType | None = None, **options: Any) -> dict[str, float]:
    """Metrics of one predicted mask against its reference (files or anything ``load_image`` reads).

    Args:
        pred: predicted mask.
        ref: reference mask, on the same grid.
        regions: region map of the case (any grid).
        options: ``groups``, ``min_size_mm3``, ``tolerance_mm``, ``small_max_voxels`` of
            :func:`~mednet_pvs.analysis.metrics.case_metrics`.

    Raises:
        InputError: unreadable file; a mask whose values are not exactly 0/1 (a probability map,
            labels 0/1/2, -1...: :func:`~mednet_pvs.data.checks.label_value_problem`, the rule of
            ``check-data``); or prediction and reference on different grids (the message names
            both files with their shapes and spacings). The message always names the file.
    """
    p = _read_mask(pred, "prediction")
    r = _read_mask(ref, "reference")
    if p.shape != r.shape or not np.allclose(p.affine, r.affine, atol=1e-3):
        what = "shapes differ" if p.shape != r.shape else "affines differ (same shape, different position/orientation)"
        raise InputError(
            p.name,
            f"not on the reference's grid ({what}): prediction {_grid_text(p)}; reference {r.name} {_grid_text(r)}. "
            "Resample the prediction to the reference grid (e.g. save it with mednet_pvs.io.save_like).",
        )
    reg, reg_aff = (None, None)
    if regions is not None:
        reg, reg_aff, _ = _read(regions, "region map", load_regions)
    return case_metrics(
        binary_mask(p.data, p.name),
        binary_mask(r.data, r.name),
        r.affine,
        regions=reg,
        regions_affine=reg_aff,
        **options,
    )


def evaluate(
    pred: Files,
    ref: Files,
    *,
    regions: Files | None = None,
    groups: Sequence[str] = EVAL_GROUPS,
    min_size_mm3: float = 0.0,
    tolerance_mm: float = SURFACE_TOLERANCE_MM,
    small_max_voxels: int = SMALL_MAX_VOXELS,
    strict: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Evaluate every predicted mask against its reference.

    Args:
        pred: folder of predicted masks, list of files, or ``{case id: file}``.
        ref: folder of reference masks, list, mapping, or a cohort manifest / BIDS folder.
        regions: region maps (folder, list or mapping), paired by case id like the masks.
        groups: region groups to report (``wm``, ``bg``, ``midbrain``, ``hippocampus``).
        min_size_mm3: clusters smaller than this are removed from both masks before scoring.
        tolerance_mm: surface Dice tolerance (mm).
        small_max_voxels: largest "small" PVS (voxels) for the split detection scores.
        strict: raise on the first case that fails instead of recording it.

    Returns:
        ``(per_case, summary)``: one row per case id found on either side (``case_id``,
        ``status`` -- ``ok``, ``missing_pred``, ``missing_ref``, ``missing_regions`` (metrics without
        regions) or ``error`` --, ``error``, file paths, then the metrics); and :func:`summarize`'s
        dict.
    """
    preds = collect(pred, "prediction")
    refs, manifest_regions = _references(ref)
    regs = collect(regions, "region map") if regions is not None else manifest_regions
    rows: list[dict[str, Any]] = []
    for cid in sorted(set(preds) | set(refs)):
        p, r, g = preds.get(cid), refs.get(cid), regs.get(cid)
        row: dict[str, Any] = {"case_id": cid, "status": "ok", "error": "", "pred": p, "ref": r, "regions": g}
        if p is None or r is None:
            row["status"] = "missing_pred" if p is None else "missing_ref"
            row["error"] = f"no {'prediction' if p is None else 'reference'} for this case"
            if strict:
                raise InputError(r or p, row["error"])
            rows.append(row)
            continue
        if regs and g is None:
            row["status"], row["error"] = "missing_regions", "no region map for this case (metrics without regions)"
        try:
            row.update(
                evaluate_case(
                    p, r, g, groups=groups, min_size_mm3=min_size_mm3, tolerance_mm=tolerance_mm,
                    small_max_voxels=small_max_voxels,
                )
            )
        except MednetError as e:
            if strict:
                raise
            row["status"], row["error"] = "error", str(e)
        except Exception as e:  # noqa: BLE001 -- one bad case never costs the others their results
            if strict:
                raise
            row["status"], row["error"] = "error", f"{p}: {_one_line(e)}"
        rows.append(row)
    per_case = pd.DataFrame(rows, columns=None)
    if per_case.empty:
        per_case = pd.DataFrame(columns=list(INFO_COLUMNS))
    params = {
        "groups": list(groups) if regs else [],
        "min_size_mm3": min_size_mm3,
        "tolerance_mm": tolerance_mm,
        "small_max_voxels": small_max_voxels,
        "connectivity": 26,
    }
    return per_case, summarize(per_case, groups=groups, parameters=params)


def _stats(values: pd.Series) -> dict[str, float]:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": np.nan, "std": np.nan, "median": np.nan, "q1": np.nan, "q3": np.nan, "min": np.nan, "max": np.nan, "n": 0}
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else np.nan,
        "median": float(np.median(v)),
        "q1": float(np.percentile(v, 25)),
        "q3": float(np.percentile(v, 75)),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def summarize(
    per_case: pd.DataFrame, *, groups: Sequence[str] = EVAL_GROUPS, parameters: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Cohort summary of a per-case table.

    Returns:
        ``{"n_cases", "n_ok", "n_failed", "failed": [{case_id, status, error}], "metrics":
        {metric: {mean, std (sample), median, q1, q3, min, max, n}}, "agreement": {"count",
        "volume_mm3", "<group>_count", "<group>_volume_mm3": {pearson_r, icc31, n}}, "parameters"}``
        (distances in mm, volumes in mm^3); NaN values
        (undefined metrics, failed cases) are left out of every statistic.
    """
    metrics = [c for c in per_case.columns if c not in INFO_COLUMNS]
    failed = per_case[per_case["status"] != "ok"] if "status" in per_case else per_case.iloc[:0]
    agree: dict[str, dict[str, float]] = {}
    for prefix in ("", *(f"{g}_" for g in groups)):
        for what, (a, b) in (("count", ("n_pred", "n_ref")), ("volume_mm3", ("vol_pred_mm3", "vol_ref_mm3"))):
            if f"{prefix}{a}" in per_case and f"{prefix}{b}" in per_case:
                x = pd.to_numeric(per_case[f"{prefix}{a}"], errors="coerce")
                y = pd.to_numeric(per_case[f"{prefix}{b}"], errors="coerce")
                agree[f"{prefix}{what}"] = agreement(x.to_numpy(float), y.to_numpy(float))
    return {
        "n_cases": int(len(per_case)),
        "n_ok": int(len(per_case) - len(failed)),
        "n_failed": int(len(failed)),
        "failed": [{"case_id": r.case_id, "status": r.status, "error": r.error} for r in failed.itertuples()],
        "metrics": {m: _stats(per_case[m]) for m in metrics},
        "agreement": agree,
        "parameters": dict(parameters or {}),
    }


def summary_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """The summary as a table: one row per metric (``metric, mean, std, median, q1, q3, min, max,
    n``), then one row per agreement statistic (``metric`` = ``count_pearson_r``,
    ``count_icc31``...; the value in ``mean``)."""
    rows = [{"metric": m, **s} for m, s in summary["metrics"].items()]
    for what, a in summary["agreement"].items():
        rows += [{"metric": f"{what}_{k}", "mean": a[k], "n": a["n"]} for k in ("pearson_r", "icc31")]
    return pd.DataFrame(rows, columns=["metric", "mean", "std", "median", "q1", "q3", "min", "max", "n"])


def write_evaluation(per_case: pd.DataFrame, summary: Mapping[str, Any], outdir: PathType) -> dict[str, Path]:
    """Write ``per_case.csv``, ``summary.csv`` and ``summary.json`` into ``outdir``, atomically."""
    out = Path(outdir)
    return {
        "per_case": write_csv(per_case, out / "per_case.csv"),
        "summary_csv": write_csv(summary_table(summary), out / "summary.csv"),
        "summary_json": write_strict_json(dict(summary), out / "summary.json"),
    }
