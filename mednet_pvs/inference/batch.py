"""Predict many scans: inputs, shards, resume, per-case outputs and one summary.

    cases = collect_inputs("scans/")                    # a file, a folder, a manifest or BIDS folder
    report = predict_batch(cases, "out/", load_pretrained("model_folder/"))   # mednet_pvs.zoo

Each case gets a folder ``out/<case>/`` with the files of
:class:`~mednet_pvs.inference.outputs.CaseOutputs`: ``<case>_mask.nii.gz`` (uint8, the model's
mask), optional ``<case>_prob.nii.gz`` and ``<case>_preview.png``, ``<case>_stats.json`` and
``<case>_clusters.csv`` (written atomically, the CSV last: a case whose CSV exists is done and is
skipped on the next run). One case's failure is recorded and the others
go on. ``shard=(k, n)`` keeps every n-th case starting at the k-th (1-based) of the sorted list,
so n processes (a SLURM array) share one input list without overlap or clashes; each writes its
own ``summary[_shard-k-of-n].csv``.

DICOM: ``collect_inputs("dicom/", converted="out/converted")`` converts every series under the
folder with dcm2niix (:mod:`mednet_pvs.data.dicom`) into ``out/converted/<case>.nii.gz`` with
dcm2niix's JSON sidecar ``<case>.json``; series that are not 3D anatomical scans (localizers,
single slices, derived images, 4D, series dcm2niix could not stack) become cases with a ``skip``
reason, listed in the summary as ``skipped`` with that reason and not predicted.

``layout="bids"`` writes a BIDS derivative dataset instead of one folder per case
(:meth:`~mednet_pvs.inference.outputs.CaseOutputs.bids`, :func:`outputs_for`): outputs named after
the input's BIDS entities under ``sub-*/[ses-*/]anat/``, ``dataset_description.json`` and the
cohort table ``pvs_burden.tsv``; ``summary.csv`` and ``run.json`` are written as in the flat layout.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mednet_pvs.data.cases import REGION_COLUMNS
from mednet_pvs.errors import ConfigError, InputError, MednetError
from mednet_pvs.inference.outputs import (
    LAYOUTS,
    CaseOutputs,
    bids_fallback_prefix,
    bids_prefix,
    class_slug,
    write_bids_dataset,
)
from mednet_pvs.io import MAX_ANISOTROPY, PathType, load_image, safe_case_id

NIFTI = re.compile(r"\.(nii|nii\.gz|mgz)$", re.IGNORECASE)


@dataclass(frozen=True)
class CaseInput:
    """One scan to segment: an id (used for output names), the image, optional masks.

    ``subject``/``session`` are a manifest's or BIDS folder's labels (BIDS layout names);
    ``skip`` is why an input is not segmented (a DICOM series that is not a 3D anatomical scan):
    such a case is listed in the summary as skipped with that reason.
    """

    case_id: str
    image: Path
    brainmask: Path | None = None
    regions: Path | None = None
    subject: str | None = None
    session: str | None = None
    skip: str | None = None
    #: further input channels of a multi-channel model (``image`` is the first), in the model's order
    channels: tuple[Path, ...] = ()

    @property
    def images(self) -> tuple[Path, ...]:
        """Every input channel: ``image`` then ``channels``."""
        return (self.image, *self.channels)


@dataclass
class BatchReport:
    """What a batch run did: cases done now, skipped (done before), failed (id -> error)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: inputs not segmented (id -> why: e.g. a DICOM localizer); not failures.
    excluded: dict[str, str] = field(default_factory=dict)
    summary: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def _stem(path: Path) -> str:
    """The case id of a scan file: its name without the NIfTI suffix, as a safe file name."""
    try:
        return safe_case_id(NIFTI.sub("", path.name))
    except InputError as e:
        raise InputError(path, e.problem) from None


def collect_inputs(source: PathType, *, regions: PathType | None = None, brainmask: PathType | None = None,
                   converted: PathType | None = None) -> list[CaseInput]:
    """Turn a file, a folder of NIfTI files, a DICOM folder, a manifest or a BIDS-like folder into cases.

    Args:
        source: a NIfTI file; a folder of ``*.nii[.gz]`` files; a DICOM series folder or a folder
            of them (any depth; converted into ``converted``); a ``.csv``/``.tsv`` manifest or a
            folder holding one / laid out as ``sub-*/anat`` (labels not needed).
        regions: region map(s) for per-region burden: a file (single input) or a folder whose
            files start with the case id (e.g. ``sub-01_aseg.nii.gz``).
        brainmask: a brain mask file (single input only; manifests have a ``brainmask`` column).
        converted: DICOM input only: the folder for the converted scans and their sidecars
            (``<case>.nii.gz`` + ``<case>.json``; the CLI uses ``<out>/converted``).

    Returns:
        Cases sorted by id (DICOM series that are not 3D anatomical scans with their ``skip`` reason).
    """
    from mednet_pvs.data.cases import load_cases
    from mednet_pvs.data.dicom import is_dicom_file

    src = Path(source).expanduser()
    if not src.exists():
        raise InputError(src, "not found (give a NIfTI file, a folder of them, a DICOM folder, or a manifest)")
    if src.is_file() and is_dicom_file(src):
        raise InputError(src, "is one DICOM file: give the folder of its series (or a folder of series)")
    if src.is_file() and NIFTI.search(src.name):
        cases = [CaseInput(_stem(src), src, Path(brainmask) if brainmask else None)]
    elif src.is_dir() and not ((src / "manifest.csv").exists() or (src / "manifest.tsv").exists() or any(p.is_dir() for p in src.glob("sub-*"))):
        files = sorted(p for p in src.iterdir() if p.is_file() and NIFTI.search(p.name))
        if files and all(NNUNET_CHANNEL.search(p.name) for p in files):
            cases = _nnunet_named_inputs(src, files)
        elif files:
            cases = [CaseInput(_stem(p), p) for p in files]
        else:
            cases = _dicom_inputs(src, converted)
    else:
        cases = []
        for c in load_cases(src, require_label=False):
            region_col = next((c.extra[k] for k in REGION_COLUMNS if c.extra.get(k)), None)  # as evaluate reads them
            region_path = None if region_col is None else Path(region_col).expanduser()
            if region_path is not None and not region_path.is_absolute():
                region_path = (src.parent if src.is_file() else src) / region_path
            cases.append(CaseInput(c.key, Path(c.images[0]), c.brainmask, region_path, subject=c.subject, session=c.session,
                                   channels=tuple(Path(i) for i in c.images[1:])))
    scans = [c for c in cases if c.skip is None]
    if brainmask and len(scans) > 1:
        raise InputError(brainmask, "a single brain mask file was given for several inputs; use a manifest's brainmask column")
    if brainmask and scans:
        cases = [replace(c, brainmask=Path(brainmask)) if c is scans[0] else c for c in cases]
    ids = [c.case_id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(src, f"several inputs share the case id(s) {', '.join(dupes)}: outputs would clash")
    if regions is not None:
        cases = _attach_regions(cases, Path(regions))
    return sorted(cases, key=lambda c: c.case_id)


#: nnU-Net's input naming: ``<case>_<channel as 4 digits>.nii.gz``.
NNUNET_CHANNEL = re.compile(r"_(\d{4})\.(nii|nii\.gz)$", re.IGNORECASE)


def _nnunet_named_inputs(src: Path, files: list[Path]) -> list[CaseInput]:
    """A folder named as nnU-Net names inputs (``case_0000.nii.gz``, ``case_0001.nii.gz``): one case
    per ``case``, its channels in channel-number order; a case missing a channel is an InputError."""
    groups: dict[str, dict[int, Path]] = {}
    for p in files:
        m = NNUNET_CHANNEL.search(p.name)
        assert m is not None
        groups.setdefault(p.name[: m.start()], {})[int(m.group(1))] = p
    n = max(len(g) for g in groups.values())
    cases = []
    for stem, chans in sorted(groups.items()):
        if sorted(chans) != list(range(n)):
            raise InputError(src / f"{stem}_{len(chans):04d}.nii.gz",
                             f"case {stem!r} has channels {sorted(chans)} where others have 0..{n - 1} (nnU-Net naming)")
        cases.append(CaseInput(_stem(src / f"{stem}.nii.gz"), chans[0], channels=tuple(chans[i] for i in range(1, n))))
    return cases


def channel_case(channels: dict[str, PathType], names: Sequence[str], *, brainmask: PathType | None = None) -> CaseInput:
    """One case from ``--channel NAME=path`` pairs, ordered as the model's channel ``names``.

    Every name the model has must be given, and no other (one line naming what is missing/extra).
    """
    missing = [n for n in names if n not in channels]
    extra = [n for n in channels if n not in names]
    if missing or extra:
        raise InputError(None, f"--channel: the model's channels are {', '.join(names)}"
                               + (f"; missing {', '.join(missing)}" if missing else "")
                               + (f"; unknown {', '.join(extra)}" if extra else ""))
    paths = [Path(channels[n]).expanduser() for n in names]
    for p in paths:
        if not p.is_file():
            raise InputError(p, "not found")
    return CaseInput(_stem(paths[0]), paths[0], Path(brainmask) if brainmask else None, channels=tuple(paths[1:]))


def _attach_regions(cases: list[CaseInput], regions: Path) -> list[CaseInput]:
    if regions.is_file():
        if sum(c.skip is None for c in cases) != 1:
            raise InputError(regions, "one region map was given for several inputs; give a folder of <case id>*.nii.gz")
        return [c if c.skip else replace(c, regions=regions) for c in cases]
    if not regions.is_dir():
        raise InputError(regions, "region map not found")
    files = sorted(p for p in regions.iterdir() if NIFTI.search(p.name))
    out = []
    for c in cases:
        match = [p for p in files if p.name.startswith(c.case_id)]
        out.append(replace(c, regions=match[0] if match else None))
    return out


def _dicom_inputs(src: Path, converted: PathType | None) -> list[CaseInput]:
    """The cases of a DICOM folder: its series converted into ``converted`` (:func:`~mednet_pvs.data.dicom.convert_dicom`)."""
    from mednet_pvs.data.dicom import convert_dicom, find_dicom_folders

    if not find_dicom_folders(src):
        raise InputError(src, "folder holds no .nii/.nii.gz files and no DICOM files")
    if converted is None:
        raise InputError(src, "holds DICOM series: give converted=<folder> for the converted scans (the CLI uses <out>/converted)")
    return [CaseInput(s.case_id, s.nifti if s.nifti is not None else s.folder, skip=s.skip)
            for s in convert_dicom(src, converted)]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` (1 <= K <= N) -> ``(K, N)``; ``None`` stays ``None``."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard must be K/N with 1 <= K <= N (e.g. 1/4), not {text!r}")
    return int(m.group(1)), int(m.group(2))


def select_shard(cases: Sequence[CaseInput], shard: tuple[int, int] | None) -> list[CaseInput]:
    """Every n-th case of the id-sorted list, starting at the k-th (1-based)."""
    ordered = sorted(cases, key=lambda c: c.case_id)
    if shard is None:
        return ordered
    k, n = shard
    return ordered[k - 1 :: n]


def case_outputs(outdir: PathType, case_id: str) -> CaseOutputs:
    """A batch case's outputs: the folder ``<outdir>/<case_id>/`` (``case_outputs(out, cid)["mask"]``)."""
    return CaseOutputs(Path(outdir) / case_id, case_id)


def outputs_for(cases: Sequence[CaseInput], outdir: PathType, layout: str = "flat") -> dict[str, CaseOutputs]:
    """Each case's :class:`~mednet_pvs.inference.outputs.CaseOutputs` in ``layout``, by case id
    (cases with a ``skip`` reason have none).

    ``flat``: :func:`case_outputs`. ``bids``: named by
    :func:`~mednet_pvs.inference.outputs.bids_prefix` (the input file's BIDS entities, else the
    manifest's subject/session); inputs without them are named ``sub-<case id without
    non-alphanumerics>``, with one warning naming them.

    Raises:
        ConfigError: an unknown layout.
        InputError: two inputs would get the same BIDS names (nothing is written).
    """
    import warnings

    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    scans = [c for c in cases if c.skip is None]
    if layout == "flat":
        return {c.case_id: case_outputs(outdir, c.case_id) for c in scans}
    prefixes: dict[str, str] = {}
    unnamed: list[str] = []
    for c in scans:
        prefix = bids_prefix(c.image, subject=c.subject, session=c.session)
        if prefix is None:
            prefix = bids_fallback_prefix(c.case_id)
            unnamed.append(f"{c.case_id} -> {prefix}")
        prefixes[c.case_id] = prefix
    seen: dict[str, str] = {}
    for cid, prefix in sorted(prefixes.items()):
        if prefix in seen:
            raise InputError(outdir, f"inputs {seen[prefix]} and {cid} would both be written as {prefix} in the BIDS layout; "
                                     "give them distinct BIDS entities (ses-, acq-, run-) or use the flat layout")
        seen[prefix] = cid
    if unnamed:
        warnings.warn(f"{len(unnamed)} input(s) without BIDS entities (sub-<label>[_ses-<label>]_<suffix>.nii.gz) named from their case id: "
                      + ", ".join(unnamed[:5]) + (" ..." if len(unnamed) > 5 else ""), stacklevel=2)
    return {cid: CaseOutputs.bids(outdir, prefix) for cid, prefix in prefixes.items()}


def input_provenance(case: CaseInput) -> dict[str, dict[str, str]]:
    """``{role: {"path", "sha256"}}`` of a case's input files (image, brain mask, region map)."""
    from mednet_pvs.inference.bundle import sha256_of

    files = {"image": case.image, "brainmask": case.brainmask, "regions": case.regions,
             **{f"channel_{i}": p for i, p in enumerate(case.channels, 1)}}
    return {role: {"path": str(p), "sha256": sha256_of(p)} for role, p in files.items() if p is not None}


def run_provenance(model: Any, *, tta: bool | None = None, step: float | None = None, source: str | None = None) -> dict[str, Any]:
    """What decides a batch's results: the model's :meth:`provenance` (identity and settings) and
    the package version; ``source`` (what the user named: a registry name, folder or ``hf://``
    spec) is recorded as ``model.source``. A model without ``provenance`` is recorded by its name."""
    from mednet_pvs.version import __version__

    describe = getattr(model, "provenance", None)
    record = describe(tta=tta, step=step) if describe is not None else {"model": {"name": getattr(model, "name", type(model).__name__)}}
    if source is not None:
        record["model"]["source"] = str(source)
    return {**record, "version": __version__}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        return {k: v for key, sub in d.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: d}


def provenance_difference(before: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """What differs between the provenance stored with a result and this run's (``None``: nothing).

    Paths are not compared (a moved file is the same input, a moved model folder the same
    model): the inputs' sha256 and the model's weights digest are.
    """
    if not before:
        return "it has no provenance record (written by another version or tool)"
    old, new = _flat(before), _flat(now)
    keys = [k for k in sorted(set(old) | set(new)) if not (k.endswith(".path") or k == "model.source") and old.get(k) != new.get(k)]
    if not keys:
        return None

    def show(v: Any) -> str:
        return "none" if v is None else (f"{v[:12]}..." if isinstance(v, str) and len(v) == 64 else str(v))

    parts = [f"{k} {show(old.get(k))} -> {show(new.get(k))}" for k in keys[:4]]
    return "made differently: " + "; ".join(parts) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def predict_batch(
    cases: Sequence[CaseInput],
    outdir: PathType,
    model: Any,
    *,
    tta: bool | None = None,
    step: float | None = None,
    save_probs: bool = False,
    preview: bool = False,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    on_case: Callable[[str, str, str], None] | None = None,
    max_anisotropy: float | None = MAX_ANISOTROPY,
    model_source: str | None = None,
    overlap_io: bool = True,
    on_tile: Callable[[str, int, int], None] | None = None,
    layout: str = "flat",
    regions: str = "atlas",
) -> BatchReport:
    """Segment every case, write its outputs, and a summary CSV of all cases of this shard.

    Args:
        cases: from :func:`collect_inputs`.
        outdir: output folder (created).
        model: anything with ``predict(image, brainmask=, tta=, step=) -> Prediction``.
        tta, step: passed to ``predict``.
        save_probs: also write the probability map.
        preview: also write a PNG overview (orthogonal slices, mask overlaid).
        overwrite: redo cases already done.
        shard: ``(k, n)``: only this process's share of the cases.
        on_case: called as ``on_case(case_id, status, message)`` with status ``done``,
            ``skipped`` (already done, or an input not segmented: its reason) or ``failed``
            (progress display).
        max_anisotropy: largest coarsest/finest voxel size ratio accepted (``None``: any).
        model_source: how the model was named (recorded in each case's provenance, not compared).
        overlap_io: read the next case and write the previous one while the model works on this
            one (two threads); ``False``: one step at a time. The outputs are the same.
        on_tile: called as ``on_tile(case_id, done_tiles, total_tiles)`` while a case is
            predicted (progress inside a case).
        layout: ``"flat"`` (a folder per case) or ``"bids"`` (a BIDS derivative dataset:
            :func:`outputs_for`, :func:`~mednet_pvs.inference.outputs.write_bids_dataset`).
        regions: ``"atlas"``: per-region burden from the case's own region map, else from the
            MNI152 atlas registered to the scan (:mod:`mednet_pvs.analysis.atlas`; a failed
            registration is a warning and ``regions_error`` in the stats, the case's other results
            stay); ``"none"``: no per-region burden.

    Returns:
        :class:`BatchReport`.
    """
    import datetime
    import time

    from mednet_pvs.analysis.atlas import case_regions, check_region_mode
    from mednet_pvs.analysis.burden import pvs_burden, summary_row, write_summary
    from mednet_pvs.io import check_output_dir, write_json

    check_region_mode(regions)

    out = check_output_dir(outdir)
    report = BatchReport()
    t0 = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run = run_provenance(model, tta=tta, step=step, source=model_source)
    run.setdefault("settings", {})["regions"] = regions  # atlas or none: changes the per-region results
    outputs = outputs_for(cases, out, layout)  # all cases: names clash-checked across shards
    mine = select_shard(cases, shard)
    todo, skip = _plan([c for c in mine if c.skip is None], outputs, run, overwrite=overwrite, save_probs=save_probs, preview=preview)
    rows: dict[str, dict[str, Any]] = {cid: {**summary_row(stats, cid), **class_columns(stats.get("classes"))}
                                       for cid, stats in skip.items()}
    for cid in skip:
        report.skipped.append(cid)
        if on_case:
            on_case(cid, "skipped", "already done with this model and settings")
    for case in (c for c in mine if c.skip is not None):
        report.excluded[case.case_id] = case.skip
        rows[case.case_id] = {"case_id": case.case_id, "status": "skipped", "reason": case.skip}
        if on_case:
            on_case(case.case_id, "skipped", f"not segmented: {case.skip}")

    def read(case: CaseInput) -> Any:
        want = len(getattr(model, "channel_names", ("image",)))
        if len(case.images) != want:
            raise InputError(case.image, f"case {case.case_id} has {len(case.images)} input channel(s); the model takes "
                                         f"{want} ({', '.join(getattr(model, 'channel_names', ('image',)))})")
        if case.channels:  # a multi-channel model: one scan per channel (the model checks their grids)
            return [load_image(p, max_anisotropy=max_anisotropy) for p in case.images]
        return load_image(case.image, max_anisotropy=max_anisotropy)

    def write(case: CaseInput, pred: Any) -> Any:
        region_map, region_record = case_regions(case.regions, pred.scan, mode=regions, brainmask=case.brainmask)
        if "regions_error" in region_record:
            import warnings

            warnings.warn(f"{case.case_id}: no per-region burden: {region_record['regions_error']}", stacklevel=1)
        burden = pvs_burden(pred.mask, pred.scan.affine, probs=pred.probabilities, regions=region_map)
        burden.parameters.update(region_record)
        class_burdens = _class_burdens(pred, region_map)
        outputs[case.case_id].write(
            pred.scan, pred.mask, probabilities=pred.probabilities, save_probabilities=save_probs, burden=burden,
            preview=preview, title=f"{case.case_id}: {burden.count} PVS", provenance={**run, "inputs": input_provenance(case)},
            sources=[Path(p).absolute().as_uri() for p in case.images],
            label_map=getattr(pred, "label_map", None), classes=getattr(pred, "classes", None),
            class_burdens=class_burdens, brainmask=getattr(pred, "brainmask", None))
        columns = class_columns({name: {"clusters": b.count, "volume_mm3": b.volume_mm3}
                                 for name, b in (class_burdens or {}).items()})
        return burden, columns

    def finish(case: CaseInput, result: Future) -> None:
        try:
            burden, columns = result.result()
        except MednetError as e:
            report.failed[case.case_id] = str(e)
        except Exception as e:  # one bad case must not stop a batch of hundreds
            report.failed[case.case_id] = f"{case.image}: {type(e).__name__}: {e}"
        else:
            rows[case.case_id] = {**burden.summary_row(case.case_id), **columns}
            report.done.append(case.case_id)
            if on_case:
                on_case(case.case_id, "done", f"{burden.count} PVS, {burden.volume_mm3:.1f} mm^3")
            return
        rows[case.case_id] = {"case_id": case.case_id, "status": "failed", "error": report.failed[case.case_id]}
        if on_case:
            on_case(case.case_id, "failed", report.failed[case.case_id])

    # Reading the next case and writing the previous one (burden, NIfTI, CSV) run in two threads
    # while the model works on this one, as nnU-Net's -npp/-nps (gzip, NumPy, SciPy and torch
    # release the GIL); overlap_io=False does one thing at a time.
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        next_read = reader.submit(read, todo[0]) if todo and overlap_io else None
        pending: tuple[CaseInput, Future] | None = None
        for i, case in enumerate(todo):
            if overlap_io:
                this_read, next_read = next_read, reader.submit(read, todo[i + 1]) if i + 1 < len(todo) else None
            else:
                this_read = _now(read, case)
            try:
                tiles = None if on_tile is None else (lambda done, total, cid=case.case_id: on_tile(cid, done, total))
                pred = model.predict(this_read.result(), brainmask=case.brainmask, tta=tta, step=step, progress=tiles)  # type: ignore[union-attr]
            except Exception as e:  # noqa: BLE001 -- recorded by finish() as the case's failure
                written = _now(_raise, e)
            else:
                written = writer.submit(write, case, pred) if overlap_io else _now(write, case, pred)
            del this_read
            if pending is not None:
                finish(*pending)
            pending = (case, written)
        if pending is not None:
            finish(*pending)
    tag = "" if shard is None else f"_shard-{shard[0]}-of-{shard[1]}"
    if rows:
        ordered = [{"case_id": cid, "status": "ok", **r} if "status" not in r else r for cid, r in sorted(rows.items())]
        report.summary = write_summary(ordered, out / f"summary{tag}.csv")
        if layout == "bids":
            write_bids_dataset(out, run, _bids_rows(ordered, outputs), table=f"phenotype/pvs_burden{tag}.tsv")
    report.seconds["total"] = time.perf_counter() - t0
    write_json({"provenance": run, "started": started, "seconds": round(report.seconds["total"], 3), "shard": list(shard) if shard else None,
                "outputs": {"probabilities": save_probs, "preview": preview, "layout": layout}, "done": report.done,
                "skipped": report.skipped, "failed": report.failed, "excluded": report.excluded}, out / f"run{tag}.json")
    return report


def _class_burdens(pred: Any, region_map: Any) -> dict[str, Any] | None:
    """Each foreground class's burden (clusters, per-region numbers) for models with several classes."""
    from mednet_pvs.analysis.burden import pvs_burden

    label_map = getattr(pred, "label_map", None)
    if label_map is None:
        return None
    return {name: pvs_burden(label_map == value, pred.scan.affine, regions=region_map)
            for value, name in (pred.classes or {}).items() if int(value) != 0}


def class_columns(classes: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """A multi-class case's summary columns: ``class_<class>_count`` (clusters) and
    ``class_<class>_volume_mm3`` per foreground class (``stats["classes"]`` entries; none: ``{}``)."""
    out: dict[str, Any] = {}
    for name, c in (classes or {}).items():
        if "clusters" in c:
            out[f"class_{class_slug(name)}_count"] = c["clusters"]
            out[f"class_{class_slug(name)}_volume_mm3"] = c["volume_mm3"]
    return out


def _raise(error: Exception) -> Any:
    raise error


def _now(fn: Callable[..., Any], *args: Any) -> Future:
    """``fn(*args)`` run here and now, as a finished :class:`Future` (its result or its error)."""
    f: Future = Future()
    try:
        f.set_result(fn(*args))
    except Exception as e:  # noqa: BLE001 -- handed on inside the future
        f.set_exception(e)
    return f


def _bids_rows(rows: Sequence[dict[str, Any]], outputs: dict[str, CaseOutputs]) -> list[dict[str, Any]]:
    """The cohort table's rows: the summary's rows of cases with BIDS names, ``participant_id``
    (and ``session_id`` when any case has a session) first."""
    out = []
    for row in rows:
        if row["case_id"] not in outputs:  # an input not segmented: in summary.csv only
            continue
        entities = dict(part.split("-", 1) for part in outputs[row["case_id"]].case_id.split("_"))
        out.append({"participant_id": f"sub-{entities['sub']}", "session_id": f"ses-{entities['ses']}" if "ses" in entities else None, **row})
    if not any(r["session_id"] for r in out):
        for r in out:
            del r["session_id"]
    return out


def _plan(cases: Sequence[CaseInput], outs: dict[str, CaseOutputs], run: dict[str, Any], *, overwrite: bool, save_probs: bool,
          preview: bool) -> tuple[list[CaseInput], dict[str, dict[str, Any]]]:
    """Split cases into those to compute and those already done by this model with these settings
    (``{case id: stats}``). A result made differently refuses the whole run before any work."""
    wanted = [k for k, on in (("probabilities", save_probs), ("preview", preview)) if on]
    todo: list[CaseInput] = []
    skip: dict[str, dict[str, Any]] = {}
    clashes: list[tuple[Path, str]] = []
    for case in cases:
        outputs = outs[case.case_id]
        if overwrite or not outputs.done():
            todo.append(case)
            continue
        try:
            stats = outputs.read_stats()
        except ValueError:  # unreadable stats: not a result, compute again
            todo.append(case)
            continue
        diff = provenance_difference(stats.get("provenance"), {**run, "inputs": input_provenance(case)})
        if diff:
            clashes.append((outputs.path("stats"), diff))
        elif outputs.done(*wanted):
            skip[case.case_id] = stats
        else:  # same result, but an output asked for now was not written then
            todo.append(case)
    if clashes:
        path, diff = clashes[0]
        more = f" ({len(clashes)} cases differ)" if len(clashes) > 1 else ""
        raise InputError(path, f"an earlier result {diff}{more}; use --overwrite (overwrite=True) to replace, or another output folder")
    return todo, skip
