"""A cohort as a list of :class:`Case`: from a manifest (CSV/TSV) or a BIDS-like folder.

Manifest
--------
One row per scan, comma-separated (``.csv``) or tab-separated (``.tsv``/``.txt``)::

    subject,image,label,brainmask,site,split
    sub-01,img/sub-01_T2w.nii.gz,lab/sub-01_pvs.nii.gz,mask/sub-01.nii.gz,siteA,train
    sub-02,img/sub-02_T1w.nii.gz;img/sub-02_T2w.nii.gz,lab/sub-02_pvs.nii.gz,,siteB,

* ``subject`` and ``image`` are required; ``label`` is required unless ``require_label=False``
  (inference cohorts). ``brainmask``, ``site``, ``split`` (``train``/``val``/``test``) and
  ``session`` are optional; empty cells mean "not given".
* Several channels (e.g. T1w + T2w) go in the one ``image`` column, separated by ``;``, in the
  same order for every row. (``image_0``, ``image_1``... columns are *not* read.)
* Relative paths resolve against the manifest's folder; ``~`` is expanded.
* ``subject`` (with ``session`` when given) must be unique.

BIDS-like folder
----------------
::

    <root>/sub-01[/ses-1]/anat/sub-01[_ses-1]_T2w.nii.gz              image (T1w, T2w or FLAIR)
    <root>/derivatives/<pipeline>/sub-01[/ses-1]/anat/*_desc-pvs_mask.nii.gz    label
    <root>/derivatives/<pipeline>/sub-01[/ses-1]/anat/*_desc-brain_mask.nii.gz  brain mask
    <root>/participants.tsv          optional: participant_id, site, split

A folder with a ``manifest.csv`` / ``manifest.tsv`` inside is read as that manifest instead.

Every structural problem (missing columns, duplicate subjects, empty cells, ambiguous files) is
collected and raised as one :class:`~mednet_pvs.errors.InputError` naming the manifest or folder;
the files themselves are checked by :func:`mednet_pvs.data.checks.validate_cases`.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mednet_pvs.errors import InputError
from mednet_pvs.io import PathType, safe_case_id

#: Columns a manifest must have (``label`` only when labels are required).
REQUIRED_COLUMNS = ("subject", "image", "label")
OPTIONAL_COLUMNS = ("brainmask", "site", "split", "session")
SPLIT_NAMES = ("train", "val", "test")
_SPLIT_ALIASES = {"training": "train", "validation": "val", "valid": "val", "testing": "test"}
#: Contrast suffixes recognised in a BIDS folder, in the channel order used when several are asked.
BIDS_CONTRASTS = ("T1w", "T2w", "FLAIR")
_NII = (".nii.gz", ".nii")


#: Manifest columns read as a case's region map (aseg, SynthSeg...), in order of preference.
REGION_COLUMNS = ("regions", "aseg", "synthseg")

@dataclass
class Case:
    """One scan of the cohort: its image channels and, for training, its PVS mask.

    Attributes:
        subject: subject identifier (splits group cases by it).
        images: one path per input channel, all on the same grid.
        label: binary PVS mask (0 background, 1 PVS) on the image grid, or ``None``.
        brainmask: binary brain mask on the image grid, or ``None``.
        site: acquisition site / scanner, or ``None``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (fixed split from the manifest).
        session: session identifier for longitudinal data, or ``None``.
    """

    subject: str
    images: list[Path]
    label: Path | None = None
    brainmask: Path | None = None
    site: str | None = None
    split: str | None = None
    session: str | None = None
    extra: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        """Unique name of the case, safe as a file name: ``subject`` or ``subject_session``
        (:func:`~mednet_pvs.io.safe_case_id`: ``site1/sub-01`` -> ``site1_sub-01``)."""
        return safe_case_id(self.subject if not self.session else f"{self.subject}_{self.session}")

    @property
    def files(self) -> list[tuple[str, Path]]:
        """``(role, path)`` for every file of the case: ``image``/``image[i]``, ``label``, ``brainmask``."""
        many = len(self.images) > 1
        out = [(f"image[{i}]" if many else "image", p) for i, p in enumerate(self.images)]
        out += [(role, p) for role, p in (("label", self.label), ("brainmask", self.brainmask)) if p is not None]
        return out


def load_cases(source: PathType, *, require_label: bool = True, contrasts: Sequence[str] | None = None) -> list[Case]:
    """Read a cohort from a manifest file or a BIDS-like folder.

    Args:
        source: a ``.csv``/``.tsv`` manifest, or a folder (with a ``manifest.csv``/``.tsv`` inside,
            or laid out as ``sub-*/[ses-*/]anat``).
        require_label: every case must name a label (training, validation); ``False`` for
            inference cohorts.
        contrasts: BIDS folders only: contrast suffixes to use as channels, in order (e.g.
            ``["T2w"]`` or ``["T1w", "T2w"]``); default: the single contrast present.

    Returns:
        The cases, in manifest order (folders: sorted by subject and session).

    Raises:
        InputError: naming the manifest/folder and every structural problem found.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(path, "not found (give a manifest .csv/.tsv or a BIDS-like folder)")
    if path.is_dir():
        for name in ("manifest.csv", "manifest.tsv"):
            if (path / name).is_file():
                return read_manifest(path / name, require_label=require_label)
        return scan_bids(path, require_label=require_label, contrasts=contrasts)
    return read_manifest(path, require_label=require_label)


# -------------------------------------------------------------------------------------- manifest


def _delimiter(path: Path, header_line: str) -> str:
    if path.suffix.lower() in (".tsv", ".txt"):
        return "\t"
    if "\t" in header_line and "," not in header_line:
        return "\t"
    return ","


def _split_name(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip().lower()
    return _SPLIT_ALIASES.get(v, v)


def _id_errors(*parts: str) -> list[InputError]:
    """Why a manifest's subject/session cannot name output files (empty list: it can)."""
    errors = []
    for part in (p for p in parts if p):
        try:
            safe_case_id(part)
        except InputError as e:
            errors.append(e)
    return errors


def _resolve(base: Path, value: str) -> Path:
    p = Path(value.strip()).expanduser()
    return p if p.is_absolute() else base / p


def read_manifest(path: PathType, *, require_label: bool = True) -> list[Case]:
    """Read a manifest (see the module docstring for the format)."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        raise InputError(path, "is not a manifest (.csv, .tsv or .txt) nor a NIfTI scan (.nii, .nii.gz, .mgz); "
                               "convert other formats (NRRD, DICOM...) to NIfTI first")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"manifest cannot be read ({e})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(path, "manifest is empty (expected a header row: subject,image,label,...)")
    reader = csv.DictReader(lines, delimiter=_delimiter(path, lines[0]))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = columns
    required = REQUIRED_COLUMNS if require_label else REQUIRED_COLUMNS[:2]
    missing = [c for c in required if c not in columns]
    if missing:
        hint = ""
        if "image" in missing and any(re.fullmatch(r"image_\d+", c) for c in columns):
            hint = "; several channels go in one 'image' column separated by ';'"
        raise InputError(
            path, f"manifest misses required column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'}){hint}"
        )
    rows = list(reader)
    if not rows:
        raise InputError(path, "manifest has a header but no rows (no cases)")
    base = path.parent
    problems: list[str] = []
    cases: list[Case] = []
    first_row: dict[str, int] = {}
    n_channels: int | None = None
    known = set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        get = lambda c: (row.get(c) or "").strip()  # noqa: E731
        subject = get("subject")
        if not subject:
            problems.append(f"row {i}: empty subject")
            continue
        unsafe = [e.problem for e in _id_errors(subject, get("session"))]
        if unsafe:
            problems.append(f"row {i}: {unsafe[0]}")
            continue
        images = [p for p in (s.strip() for s in get("image").split(";")) if p]
        if not images:
            problems.append(f"row {i} ({subject}): empty image")
            continue
        n_channels = len(images) if n_channels is None else n_channels
        if len(images) != n_channels:
            problems.append(f"row {i} ({subject}): {len(images)} image channel(s), earlier rows have {n_channels}")
        if require_label and not get("label"):
            problems.append(f"row {i} ({subject}): empty label")
        split = _split_name(get("split"))
        if split is not None and split not in SPLIT_NAMES:
            problems.append(f"row {i} ({subject}): split '{get('split')}' is not one of {', '.join(SPLIT_NAMES)}")
        case = Case(
            subject=subject,
            images=[_resolve(base, p) for p in images],
            label=_resolve(base, get("label")) if get("label") else None,
            brainmask=_resolve(base, get("brainmask")) if get("brainmask") else None,
            site=get("site") or None,
            split=split,
            session=get("session") or None,
            extra={k: (v or "").strip() for k, v in row.items() if k not in known and k is not None},
        )
        if case.key in first_row:
            problems.append(f"row {i}: duplicate subject '{case.key}' (first on row {first_row[case.key]})")
            continue
        first_row[case.key] = i
        cases.append(case)
    if problems:
        raise InputError(path, f"{len(problems)} problem(s) in the manifest: " + "; ".join(problems))
    return cases


def write_manifest(cases: Sequence[Case], path: PathType) -> Path:
    """Write cases as a manifest (paths relative to its folder when below it); returns the path."""
    from mednet_pvs.io import write_text

    path = Path(path)
    base = path.parent.resolve()

    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        try:
            return str(Path(p).resolve().relative_to(base))
        except ValueError:
            return str(Path(p).resolve())

    delim = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    cols = ["subject", "session", "image", "label", "brainmask", "site", "split"]
    lines = [delim.join(cols)]
    for c in cases:
        vals = [c.subject, c.session or "", ";".join(rel(p) for p in c.images), rel(c.label), rel(c.brainmask), c.site or "", c.split or ""]
        lines.append(delim.join(vals))
    return write_text("\n".join(lines) + "\n", path)


# ------------------------------------------------------------------------------------------ BIDS

def _strip_nii(name: str) -> str:
    for s in _NII:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def _participants(root: Path) -> dict[str, dict[str, str]]:
    f = root / "participants.tsv"
    if not f.is_file():
        return {}
    rows = list(csv.DictReader(f.read_text(encoding="utf-8-sig").splitlines(), delimiter="\t"))
    out = {}
    for r in rows:
        pid = (r.get("participant_id") or "").strip()
        if pid:
            out[pid if pid.startswith("sub-") else f"sub-{pid}"] = {k: (v or "").strip() for k, v in r.items() if k}
    return out


def _anat_dirs(root: Path) -> list[tuple[str, str | None, Path]]:
    out = []
    for sub in sorted(root.glob("sub-*")):
        if not sub.is_dir():
            continue
        if (sub / "anat").is_dir():
            out.append((sub.name, None, sub / "anat"))
        for ses in sorted(sub.glob("ses-*")):
            if (ses / "anat").is_dir():
                out.append((sub.name, ses.name, ses / "anat"))
    return out


def _nifti(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for ext in _NII for p in folder.glob(f"*{suffix}{ext}"))


def scan_bids(
    root: PathType, *, require_label: bool = True, contrasts: Sequence[str] | None = None
) -> list[Case]:
    """Find cases in a BIDS-like folder (see the module docstring for the layout)."""
    root = Path(root)
    anat = _anat_dirs(root)
    if not anat:
        raise InputError(root, "no manifest.csv/.tsv and no sub-*/anat or sub-*/ses-*/anat folders: not a cohort folder")
    if contrasts is None:
        found = [c for c in BIDS_CONTRASTS if any(_nifti(d, f"_{c}") for _, _, d in anat)]
        if not found:
            raise InputError(root, f"no *_{'/'.join(BIDS_CONTRASTS)}.nii[.gz] images under sub-*/anat")
        if len(found) > 1:
            raise InputError(
                root, f"several contrasts found ({', '.join(found)}): choose the channels (contrasts=[...], --contrast)"
            )
        contrasts = found
    contrasts = list(contrasts)
    pipelines = sorted(d for d in (root / "derivatives").glob("*") if d.is_dir()) if (root / "derivatives").is_dir() else []
    participants = _participants(root)
    problems: list[str] = []
    cases: list[Case] = []
    for subject, session, folder in anat:
        where = f"{subject}" + (f"/{session}" if session else "")
        images: list[Path] = []
        for c in contrasts:
            hits = _nifti(folder, f"_{c}")
            if len(hits) > 1:
                problems.append(f"{where}: several {c} images ({', '.join(p.name for p in hits)}); keep one or use a manifest")
            elif not hits:
                problems.append(f"{where}: no *_{c}.nii[.gz] image")
            else:
                images.append(hits[0])
        if len(images) != len(contrasts):
            continue
        rel = folder.relative_to(root)
        derived = {
            role: [p for d in pipelines for p in _nifti(d / rel, f"_desc-{desc}_mask")]
            for role, desc in (("label", "pvs"), ("brainmask", "brain"))
        }
        for role, hits in derived.items():
            if len(hits) > 1:
                problems.append(f"{where}: several {role} files ({', '.join(str(p.relative_to(root)) for p in hits)})")
        if require_label and not derived["label"]:
            problems.append(f"{where}: no derivatives/*/{rel}/*_desc-pvs_mask.nii[.gz]")
        info = participants.get(subject, {})
        cases.append(
            Case(
                subject=subject,
                images=images,
                label=derived["label"][0] if len(derived["label"]) == 1 else None,
                brainmask=derived["brainmask"][0] if len(derived["brainmask"]) == 1 else None,
                site=info.get("site") or None,
                split=_split_name(info.get("split")),
                session=session,
            )
        )
    if problems:
        raise InputError(root, f"{len(problems)} problem(s) in the cohort folder: " + "; ".join(problems))
    return cases
