"""The QC report of a ``predict`` output folder: read what predict wrote, write one HTML page.

    write_report("out/", "report.html")          # mednet-pvs report out/ -o report.html

Reads ``summary*.csv`` and ``run*.json`` (one per shard) and each case's files through
:class:`~mednet_pvs.inference.outputs.CaseOutputs` (which owns the names: a folder per case, or
the BIDS derivative layout of ``predict --layout bids``), finds each case's input scan from the provenance stored with its result, and
hands :mod:`mednet_pvs.viz.report` the cases to draw. The folder is only read.

This module sits in ``inference`` (not ``viz``) because it reads predict's output layout, which
``inference`` owns; the page itself is drawn in ``viz``.
"""
from __future__ import annotations

import csv
import datetime
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mednet_pvs.errors import ConfigError, InputError, MednetError
from mednet_pvs.inference.batch import NIFTI, case_outputs, provenance_difference
from mednet_pvs.inference.outputs import (
    BIDS_TABLE,
    LAYOUTS,
    CaseOutputs,
    bids_fallback_prefix,
)
from mednet_pvs.io import PathType, safe_case_id
from mednet_pvs.viz.report import OUTLIER_Z, CaseQC, flag_outliers, render_report

#: A case id read as ``<site>_<rest>`` when every case's id has this form (``site1/sub-01`` is
#: made ``site1_sub-01`` by predict); BIDS entities (``sub-``, ``ses-``) are not sites.
_SITE_PREFIX = re.compile(r"^(?!sub-|ses-)([A-Za-z0-9]+)_.+$")
#: Columns that name the case in a site table, in order of preference.
_ID_COLUMNS = ("case_id", "subject", "participant_id")


def read_summaries(folder: Path) -> list[dict[str, str]]:
    """The rows of every ``summary*.csv`` of a predict output folder (shards together), in file order.

    Raises:
        InputError: the folder is not a predict output (no summary CSV), or a summary is unreadable.
    """
    files = sorted(folder.glob("summary*.csv"))
    if not files:
        raise InputError(folder, "not a predict output folder: no summary.csv (make one with: mednet-pvs predict -i <scans> -o <folder>)")
    rows: list[dict[str, str]] = []
    for f in files:
        try:
            reader = csv.DictReader(f.read_text(encoding="utf-8").splitlines())
            got = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f, f"unreadable summary ({e})") from None
        if "case_id" not in (reader.fieldnames or []):
            raise InputError(f, "not a predict summary: no case_id column")
        rows += got
    return rows


def read_runs(folder: Path) -> list[dict[str, Any]]:
    """The ``run*.json`` records of a predict output folder (unreadable ones left out)."""
    runs = []
    for f in sorted(folder.glob("run*.json")):
        try:
            runs.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return runs


def _site_table(source: Path) -> dict[str, str]:
    """``{id: site}`` from a manifest/site table (CSV/TSV with a ``site`` column) or a BIDS folder."""
    from mednet_pvs.data.cases import load_cases

    if source.is_dir():
        return {c.key: c.site for c in load_cases(source, require_label=False) if c.site}
    if not source.is_file():
        raise InputError(source, "site table not found (give a manifest .csv/.tsv or a BIDS folder)")
    text = source.read_text(encoding="utf-8-sig")
    head = text.splitlines()[0] if text else ""
    delim = "\t" if source.suffix.lower() in (".tsv", ".txt") or ("\t" in head and "," not in head) else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delim)
    cols = reader.fieldnames or []
    id_col = next((c for c in _ID_COLUMNS if c in cols), None)
    if "site" not in cols or id_col is None:
        raise InputError(source, f"a site table needs a site column and one of {', '.join(_ID_COLUMNS)} (has: {', '.join(cols) or 'none'})")
    out = {}
    for row in reader:
        ident, site = (row.get(id_col) or "").strip(), (row.get("site") or "").strip()
        session = (row.get("session") or "").strip()
        if ident and site:
            try:
                out[safe_case_id(f"{ident}_{session}" if session else ident)] = site
            except InputError:
                continue
    return out


def _lookup(table: Mapping[str, str], case_id: str) -> str | None:
    """A case's site: its id, else the longest id it starts with followed by ``_`` (a subject's sessions)."""
    if case_id in table:
        return table[case_id]
    hits = [k for k in table if case_id.startswith(f"{k}_")]
    return table[max(hits, key=len)] if hits else None


def _find_cohort(image: Path | None, levels: int = 4) -> Path | None:
    """The manifest or BIDS root above an input scan: ``manifest.csv/.tsv``, or a folder with
    ``participants.tsv`` and ``sub-*`` folders, in the scan's folder or up to ``levels`` above."""
    if image is None:
        return None
    for folder in list(image.parents)[:levels + 1]:
        for name in ("manifest.csv", "manifest.tsv"):
            if (folder / name).is_file():
                return folder / name
        if (folder / "participants.tsv").is_file() and any(folder.glob("sub-*")):
            return folder
    return None


def assign_sites(case_ids: Sequence[str], *, source: PathType | None = None, images: Sequence[Path | None] = ()) -> tuple[dict[str, str], str]:
    """Each case's site, and a line saying where they came from.

    In order: ``source`` (a manifest or site table with a ``site`` column, or a BIDS folder with
    ``participants.tsv``); the cohort found above the input scans (:func:`_find_cohort`); the
    case ids' prefix when every id reads ``<site>_<rest>`` and there are 2 or more prefixes, fewer
    than cases; else one group, ``"all"``.

    Raises:
        InputError: ``source`` given but unreadable or without sites.
    """
    if source is not None:
        table = _site_table(Path(source).expanduser())
        if not table:
            raise InputError(source, "no case in it has a site")
        sites = {cid: _lookup(table, cid) or "unknown" for cid in case_ids}
        return sites, f"sites from {source}"
    found = next((c for c in (_find_cohort(p) for p in images) if c is not None), None)
    if found is not None:
        try:
            table = _site_table(found)
        except MednetError:
            table = {}
        if table and any(_lookup(table, cid) for cid in case_ids):
            return {cid: _lookup(table, cid) or "unknown" for cid in case_ids}, f"sites from {found}"
    prefixes = [_SITE_PREFIX.match(cid) for cid in case_ids]
    if prefixes and all(prefixes) and 2 <= len({m.group(1) for m in prefixes if m}) < len(case_ids):
        return {cid: m.group(1) for cid, m in zip(case_ids, prefixes) if m}, "sites from the case ids' prefix (<site>_...)"
    return {cid: "all" for cid in case_ids}, "one group: no site found (give --sites <manifest or BIDS folder>)"


def _input_scan(prov: Mapping[str, Any] | None, folder: Path) -> tuple[Path | None, str | None, str]:
    """``(path or None, sha256 stored, path as recorded)`` of a case's input scan. A relative path
    (as predict was given it) is tried from here, then from the output folder's parent."""
    image = ((prov or {}).get("inputs") or {}).get("image") or {}
    recorded = str(image.get("path") or "")
    if not recorded:
        return None, None, ""
    p = Path(recorded).expanduser()
    tries = [p] if p.is_absolute() else [p, folder.parent / p, folder / p]
    return next((t for t in tries if t.is_file()), None), image.get("sha256"), recorded


def _without_inputs(prov: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (prov or {}).items() if k != "inputs"}


def _read_case(folder: Path, case_id: str, outputs: CaseOutputs | None, row: Mapping[str, str] | None,
               run: Mapping[str, Any] | None, pictures: bool) -> tuple[CaseQC, Path | None]:
    """One case's record (numbers, regions, flags, pictures) and its input scan's path (if found)."""
    from mednet_pvs.inference.bundle import sha256_of

    qc = CaseQC(case_id, status=(row or {}).get("status") or "ok")
    if qc.status == "failed":
        qc.flag("error", f"failed: {(row or {}).get('error') or 'no reason recorded'}")
        return qc, None
    if qc.status == "skipped":  # an input predict did not segment (e.g. a DICOM localizer)
        qc.flag("warning", f"not segmented: {(row or {}).get('reason') or 'no reason recorded'}")
        return qc, None
    if outputs is None or not outputs.path("stats").is_file():
        qc.status = "incomplete"
        where = f"{outputs.path('stats')} is missing" if outputs is not None else "no outputs found for this case"
        qc.flag("error", f"no stats: {where} (run predict again on this case)")
        return qc, None
    try:
        stats = outputs.read_stats()
        qc.count, qc.volume_mm3 = int(stats["count"]), float(stats["volume_mm3"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        qc.status = "incomplete"
        qc.flag("error", f"unreadable stats {outputs.path('stats')} ({type(e).__name__}: {e})")
        return qc, None
    qc.mean_probability = stats.get("mean_probability")
    qc.regions = {k: {"name": r.get("name") or k, "count": r.get("count"), "volume_mm3": r.get("volume_mm3")}
                  for k, r in (stats.get("per_region") or {}).items()}
    qc.provenance = stats.get("provenance")
    params = stats.get("parameters") or {}
    if params.get("regions_source"):  # where the region map came from: "file", the registered atlas, "none"
        qc.notes["regions"] = str(params["regions_source"])
    if params.get("regions_error"):
        qc.flag("warning", f"no per-region burden: {params['regions_error']}")
    if qc.count == 0:
        qc.flag("warning", "no PVS found (empty mask)")
    if run and qc.provenance and (diff := provenance_difference(_without_inputs(run.get("provenance")), _without_inputs(qc.provenance))):
        qc.flag("warning", f"result {diff.replace('made differently', 'made differently from the run record')}")
    scan, sha, recorded = _input_scan(qc.provenance, folder)
    if recorded:
        qc.notes["input scan"] = recorded
    if scan is None:
        qc.flag("warning", f"input scan not found ({recorded or 'no path recorded'})" + (": pictures of the mask alone" if pictures else ""))
    elif sha and sha256_of(scan) != sha:
        qc.flag("warning", f"input scan {scan} changed since predict (sha256 differs)")
    if pictures:
        _draw(qc, outputs, scan)
    return qc, scan


def _draw(qc: CaseQC, outputs: CaseOutputs, scan: Path | None) -> None:
    """Add the case's pictures (MIP and slices; the preview PNG when the scan is gone); flag what is missing."""
    from mednet_pvs.io import load_image
    from mednet_pvs.viz.report import case_pictures

    mask_path, probs_path, preview = outputs.path("mask"), outputs.path("probabilities"), outputs.path("preview")
    if not mask_path.is_file():
        qc.flag("error", f"mask file missing: {mask_path}")
    else:
        try:
            image = load_image(scan, max_anisotropy=None) if scan is not None else None
            probs = probs_path if probs_path.is_file() else None
            qc.pictures.update(case_pictures(image, load_image(mask_path, kind="label", max_anisotropy=None), probs=probs))
        except (MednetError, OSError, ValueError) as e:
            qc.flag("warning", f"pictures not drawn: {e}")
    if "slices" not in qc.pictures and preview.is_file():
        qc.pictures["preview (written by predict)"] = preview.read_bytes()


def _flat_outputs(folder: Path, case_id: str) -> CaseOutputs | None:
    try:
        return case_outputs(folder, case_id)
    except InputError:  # an id that is not a safe file name has no outputs
        return None


def _layout(runs: Sequence[Mapping[str, Any]]) -> str:
    """The output layout the runs wrote (``"flat"`` unless a run record says otherwise)."""
    return next((r["outputs"]["layout"] for r in runs if isinstance(r.get("outputs"), dict) and r["outputs"].get("layout")), "flat")


def _bids_outputs(folder: Path, ids: Sequence[str]) -> dict[str, CaseOutputs]:
    """Each case's outputs in a ``bids``-layout folder, found from what is on disk: the stats
    sidecars under ``sub-*/[ses-*/]anat/``, matched to case ids by name (the id is the BIDS prefix,
    or its :func:`~mednet_pvs.inference.outputs.bids_fallback_prefix`), else by the cohort table's
    ``participant_id``/``session_id`` of the case, else by the input scan's file name."""
    suffix = "_" + LAYOUTS["bids"]["stats"]
    found = {p.name[: -len(suffix)]: p for p in folder.glob(f"sub-*/**/anat/*{suffix}")}
    entities: dict[str, str] = {}
    table = Path(BIDS_TABLE)
    for f in sorted((folder / table.parent).glob(f"{table.stem}*{table.suffix}")):
        for row in csv.DictReader(f.read_text(encoding="utf-8").splitlines(), delimiter="\t"):
            ses = row.get("session_id") or "n/a"
            if row.get("case_id") and row.get("participant_id"):
                entities[row["case_id"]] = row["participant_id"] + ("" if ses == "n/a" else f"_{ses}")

    def scan_stem(prefix: str) -> str | None:
        try:
            image = json.loads(found[prefix].read_text())["provenance"]["inputs"]["image"]["path"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return NIFTI.sub("", Path(image).name)

    out = {}
    for cid in ids:
        hits = [p for p in found if p in (cid, bids_fallback_prefix(cid))]
        if not hits and cid in entities:
            hits = [p for p in found if p == entities[cid] or (p.startswith(entities[cid] + "_") and "_ses-" not in p[len(entities[cid]):])]
        if len(hits) > 1 or not hits:
            hits = [p for p in (hits or found) if scan_stem(p) == cid]
        if len(hits) == 1:
            out[cid] = CaseOutputs.bids(folder, hits[0])
    return out


def _case_ids(folder: Path, rows: Sequence[Mapping[str, str]], layout: str) -> list[str]:
    """The summary's cases, then (flat layout) any case folder holding stats that no summary names
    (a run stopped early)."""
    ids = list(dict.fromkeys(r["case_id"] for r in rows if r.get("case_id")))
    known = set(ids)
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in known and layout == "flat"):
        try:
            if case_outputs(folder, d.name).path("stats").is_file():
                ids.append(d.name)
        except InputError:  # not a case id predict would make
            continue
    return ids


def write_report(
    folder: PathType,
    out: PathType = "report.html",
    *,
    sites: PathType | None = None,
    outlier_z: float = OUTLIER_Z,
    pictures: bool = True,
    on_case: Callable[[str, int, int], None] | None = None,
    jobs: int = 1,
) -> Path:
    """Write the QC report of a ``predict`` output folder as one self-contained HTML file.

    Args:
        folder: what ``predict -o`` wrote (``summary*.csv``, ``run*.json``, one folder per case).
        out: the HTML file to write (atomically); not inside ``folder``, which is only read.
        sites: a manifest/site table (``site`` column) or BIDS folder naming each case's site
            (default: found above the inputs, else the case id prefix, else one group).
        outlier_z: flag a case whose PVS count or volume has ``|robust z|`` above this.
        pictures: draw each case's pictures (``False``: numbers and flags only, fast).
        on_case: called as ``on_case(case_id, done, total)`` after each case (progress).
        jobs: cases read and drawn at once, in that many processes (the page is the same).

    Returns:
        ``out``.

    Raises:
        InputError: ``folder`` is not a predict output; ``out`` is a folder, not writable, or
            inside ``folder``; ``sites`` unreadable.
    """
    from mednet_pvs.io import check_output_file, write_text

    src = Path(folder).expanduser()
    if not src.is_dir():
        raise InputError(src, "not found or not a folder (give the folder predict -o wrote)")
    dest = check_output_file(out)
    if dest.absolute().resolve().is_relative_to(src.resolve()):
        raise InputError(dest, f"is inside the predict output folder {src}, which the report never modifies; write it elsewhere (-o)")
    rows = read_summaries(src)
    runs = read_runs(src)
    layout = _layout(runs)
    ids = _case_ids(src, rows, layout)
    site_of, site_note = assign_sites(ids, source=sites) if sites is not None else ({}, "")  # a bad table fails before any work
    run = runs[0] if runs else None
    by_id = {r["case_id"]: r for r in rows if r.get("case_id")}
    outputs = _bids_outputs(src, ids) if layout == "bids" else {cid: _flat_outputs(src, cid) for cid in ids}
    read = [(src, cid, outputs.get(cid), by_id.get(cid), run, pictures) for cid in ids]
    results = _map_cases(read, jobs, None if on_case is None else (lambda i, n: on_case(ids[i], n, len(ids))))
    cases = [qc for qc, _ in results]
    scans = [scan for _, scan in results]
    if sites is None:
        site_of, site_note = assign_sites(ids, images=scans)
    for qc in cases:
        qc.site = site_of.get(qc.case_id, "unknown")
    notes = [site_note, flag_outliers(cases, outlier_z)]
    notes += [f"predict run started {r['started']}, {r.get('seconds', '?')} s" + (f" (shard {r['shard'][0]}/{r['shard'][1]})" if r.get("shard") else "")
              for r in runs if r.get("started")]
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    page = render_report(cases, subtitle=f"{src.resolve()} \u00b7 made {now}", provenance=_provenances(runs, cases), notes=notes)
    return write_text(page, dest)


def _map_cases(args: Sequence[tuple[Any, ...]], jobs: int, done: Callable[[int, int], None] | None) -> list[tuple[CaseQC, Path | None]]:
    """``_read_case(*a)`` for each ``a``, in order; ``jobs > 1``: in a pool of processes.
    ``done(index, n_done)`` after each case (in the order they finish)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    if jobs == 1 or len(args) < 2:
        out = []
        for i, a in enumerate(args):
            out.append(_read_case(*a))
            if done is not None:
                done(i, i + 1)
        return out
    results: dict[int, tuple[CaseQC, Path | None]] = {}
    with ProcessPoolExecutor(min(jobs, len(args))) as pool:
        futures = {pool.submit(_read_case, *a): i for i, a in enumerate(args)}
        for f in as_completed(futures):
            results[futures[f]] = f.result()
            if done is not None:
                done(futures[f], len(results))
    return [results[i] for i in range(len(args))]


def _provenances(runs: Sequence[Mapping[str, Any]], cases: Sequence[CaseQC]) -> list[tuple[str, dict[str, Any]]]:
    """One ``(heading, record)`` per distinct provenance (inputs aside) among the runs and cases,
    with the cases made by each (when there are several)."""
    distinct: list[tuple[dict[str, Any], list[str]]] = []

    def home(record: dict[str, Any]) -> list[str]:
        hit = next((names for rec, names in distinct if provenance_difference(rec, record) is None), None)
        if hit is None:
            hit = []
            distinct.append((record, hit))
        return hit

    for run in runs:
        if run.get("provenance"):
            home(_without_inputs(run["provenance"]))
    for c in cases:
        if c.provenance is not None:
            home(_without_inputs(c.provenance)).append(c.case_id)
    out = []
    for record, names in distinct:
        who = f"{len(names)} case(s)" + (f": {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}" if len(distinct) > 1 else "")
        out.append((f"{(record.get('model') or {}).get('name', 'model')} \u2014 {who}", record))
    return out
