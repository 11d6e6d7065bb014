"""DICOM in: find the series under a folder, convert them with dcm2niix, keep the 3D anatomical ones.

    series = convert_dicom("dicom/", "out/converted")   # one DicomSeries per converted image
    for s in series:
        s.case_id, s.nifti, s.sidecar    # out/converted/<case_id>.nii.gz and .json (None if skipped)
        s.skip                           # why it is not a 3D anatomical scan, or None

Conversion is dcm2niix's (the field's standard converter; the ``dcm2niix`` wheel of the ``dicom``
extra, else one on the ``PATH``), run once per folder that holds DICOM files, into a temp folder.
Each image it writes is classified from its BIDS JSON sidecar and its NIfTI header: localizers
and scouts, derived/secondary images (reformats, maps), non-MR modalities, 4D series (diffusion,
functional, multi-echo), single slices and series of fewer than :data:`MIN_SLICES` slices are
skipped with a reason; dcm2niix's own split of a series it cannot stack as one volume (mixed
orientations, varying slice spacing) is refused with a reason too. The kept scans, NIfTI and
sidecar, are copied atomically into the destination folder; nothing is written next to the DICOM.

Case ids are :func:`~mednet_pvs.io.safe_case_id` of the DICOM folder's path (from the source
folder's own name down) and dcm2niix's ``<SeriesNumber>_<SeriesDescription>`` name, e.g.
``dicom_3_t2_space`` for series 3 "t2_space" in the folder ``dicom/``.

:func:`write_dicom_series` writes a volume as a minimal MR Image Storage series (one file per
slice): for tests, demos and checking a pipeline end to end; it is not a PACS export.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mednet_pvs.errors import InputError
from mednet_pvs.io import PathType, atomic_path, safe_case_id

#: How to install the converter, named in every "not installed" message.
DICOM_EXTRA = "pip install 'mednet-pvs[dicom]'"
#: Fewest slices along every axis of a kept scan (localizers and 2D stacks have fewer).
MIN_SLICES = 10
#: SeriesDescription words of localizers and scouts (vendors' names for them).
_LOCALIZER = re.compile(r"locali[sz]er|scout|survey|aahead|3[-_ ]?plane|\bloc\b|tri[-_ ]?pilot", re.IGNORECASE)
#: File name suffixes dcm2niix adds when it cannot stack a series as one volume.
_SPLIT = re.compile(r"_i\d{5}[a-z]*$")
_NII_GZ = ".nii.gz"
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass(frozen=True)
class DicomSeries:
    """One image dcm2niix made from a DICOM folder.

    Attributes:
        case_id: output name of the scan (safe as a file name).
        folder: the DICOM folder it came from.
        description: ``"<SeriesNumber> <SeriesDescription>"`` as the sidecar gives them.
        nifti: the converted scan (``<dest>/<case_id>.nii.gz``), ``None`` when skipped.
        sidecar: dcm2niix's BIDS JSON sidecar beside it, ``None`` when skipped.
        skip: why it is not used as a 3D anatomical scan, ``None`` when it is.
    """

    case_id: str
    folder: Path
    description: str
    nifti: Path | None = None
    sidecar: Path | None = None
    skip: str | None = None


# ------------------------------------------------------------------------------------- finding


def is_dicom_file(path: PathType) -> bool:
    """Whether ``path`` is a DICOM file (Part 10: ``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def find_dicom_folders(root: PathType) -> list[Path]:
    """Folders at or under ``root`` holding at least one DICOM file, sorted; hidden ones skipped."""
    root = Path(root)
    if root.is_file():
        return [root.parent] if is_dicom_file(root) else []
    found = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(is_dicom_file(Path(here) / f) for f in sorted(files) if not f.startswith(".")):
            found.append(Path(here))
    return sorted(found)


def dcm2niix_binary(path: PathType | None = None) -> str:
    """The dcm2niix program: the ``dcm2niix`` wheel's, else one on the ``PATH``.

    Raises:
        InputError: (naming ``path``, the DICOM input) neither is installed; says how to install it.
    """
    try:
        import dcm2niix

        if Path(dcm2niix.bin).is_file():
            return str(dcm2niix.bin)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found:
        return found
    raise InputError(path, f"holds DICOM files, but dcm2niix (the converter) is not installed: {DICOM_EXTRA}")


# ---------------------------------------------------------------------------------- classifying


def skip_reason(meta: dict[str, Any], shape: Sequence[int], *, min_slices: int = MIN_SLICES) -> str | None:
    """Why a converted image is not a 3D anatomical scan (``None``: it is one).

    Args:
        meta: dcm2niix's BIDS sidecar (``ImageType``, ``SeriesDescription``, ``Modality``...).
        shape: the NIfTI's data shape, (X, Y, Z[, T...]).
        min_slices: fewest voxels along each of the three spatial axes.
    """
    image_type = [str(t).upper() for t in meta.get("ImageType") or []]
    shown = "\\".join(image_type)
    description = str(meta.get("SeriesDescription") or meta.get("ProtocolName") or "")
    if "LOCALIZER" in image_type or _LOCALIZER.search(description):
        return f"a localizer/scout (ImageType {shown or '?'}, SeriesDescription {description!r})"
    modality = meta.get("Modality")
    if modality not in (None, "MR"):
        return f"modality {modality}, not MR"
    if image_type[:1] == ["DERIVED"] or "SECONDARY" in image_type:
        return f"a derived/secondary image (ImageType {shown}), not an acquired scan"
    if {"P", "PHASE", "REAL", "IMAGINARY"} & set(image_type[2:]):
        return f"a phase/complex image (ImageType {shown}), not a magnitude scan"
    volumes = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    if volumes > 1:
        return f"4D ({volumes} volumes: diffusion, functional or multi-echo), not one 3D scan"
    spatial = (list(shape[:3]) + [1, 1, 1])[:3]
    if min(spatial) == 1:
        return f"2D (a single slice, {spatial[0]}x{spatial[1]}x{spatial[2]} voxels), not a 3D scan"
    if min(spatial) < min_slices:
        return f"only {min(spatial)} slices along one axis ({spatial[0]}x{spatial[1]}x{spatial[2]}; fewer than {min_slices}), not a 3D scan"
    return None


def _split_reason(stems: Sequence[str], log: str) -> dict[str, str]:
    """Images dcm2niix split off one series it could not stack as a single volume: ``{stem: reason}``.

    dcm2niix names each part ``<series>_i<instance>[a, b...]`` and says why in its log (e.g.
    "Slices not stacked: orientation varies").
    """
    parts: dict[str, list[str]] = {}
    for s in stems:
        base = _SPLIT.sub("", s)
        if base != s:
            parts.setdefault(base, []).append(s)
    why = next((ln.strip() for ln in log.splitlines() if re.search(r"not stacked|orientation varies", ln, re.IGNORECASE)), "")
    return {
        m: f"one DICOM series that dcm2niix could not stack as one volume and split into {len(members)} images"
        + (f" ({why[:160]})" if why else " (mixed orientations or slice positions)")
        for base, members in parts.items() for m in members
    }


# ----------------------------------------------------------------------------------- converting


def _run_dcm2niix(binary: str, folder: Path, into: Path) -> str:
    cmd = [binary, "-b", "y", "-ba", "y", "-z", "y", "-f", "%s_%d", "-d", "0", "-i", "n", "-o", str(into), str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    return (done.stdout or "") + (done.stderr or "")


def _label(folder: Path, source: Path) -> str:
    base = source if source.is_dir() else source.parent
    rel = folder.relative_to(base)
    return "_".join((base.resolve().name or "dicom", *rel.parts))


def convert_dicom(source: PathType, dest: PathType, *, min_slices: int = MIN_SLICES) -> list[DicomSeries]:
    """Convert every DICOM series at or under ``source``; copy the 3D anatomical scans into ``dest``.

    Args:
        source: a DICOM series folder, or a folder of them (any depth).
        dest: folder for the kept scans: ``<case_id>.nii.gz`` and dcm2niix's ``<case_id>.json``
            (created; files written atomically; files of other ids left alone).
        min_slices: fewest slices along each axis of a kept scan.

    Returns:
        One :class:`DicomSeries` per image dcm2niix made (kept and skipped), sorted by case id;
        a DICOM folder dcm2niix made nothing of is one skipped entry with its log's last line.

    Raises:
        InputError: ``source`` holds no DICOM files, or dcm2niix is not installed.
    """
    import nibabel as nib

    src = Path(source).expanduser()
    folders = find_dicom_folders(src)
    if not folders:
        raise InputError(src, "no DICOM files found (looked for files with the DICM marker, in every subfolder)")
    binary = dcm2niix_binary(src)
    out: list[DicomSeries] = []
    for folder in folders:
        label = _label(folder, src)
        with tempfile.TemporaryDirectory(prefix="mednet-pvs-dcm2niix-") as tmp:
            log = _run_dcm2niix(binary, folder, Path(tmp))
            made = sorted(Path(tmp).glob(f"*{_NII_GZ}"))
            if not made:
                last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "no output")
                out.append(DicomSeries(safe_case_id(label), folder, "?", skip=f"dcm2niix made no image from this folder ({last})"))
                continue
            stems = [p.name[: -len(_NII_GZ)] for p in made]
            split = _split_reason(stems, log)
            for stem, nii in zip(stems, made):
                sidecar = nii.with_name(stem + ".json")
                meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
                description = f"{meta.get('SeriesNumber', '?')} {meta.get('SeriesDescription', '')}".strip()
                case_id = safe_case_id(f"{label}_{stem}")
                reason = split.get(stem) or skip_reason(meta, nib.load(str(nii)).shape, min_slices=min_slices)
                if reason:
                    out.append(DicomSeries(case_id, folder, description, skip=reason))
                    continue
                kept = Path(dest) / f"{case_id}{_NII_GZ}", Path(dest) / f"{case_id}.json"
                for src_file, dst_file in zip((nii, sidecar), kept):
                    if src_file.is_file():
                        with atomic_path(dst_file) as part:
                            shutil.copyfile(src_file, part)
                out.append(DicomSeries(case_id, folder, description, kept[0], kept[1] if sidecar.is_file() else None))
    return sorted(out, key=lambda s: s.case_id)


# -------------------------------------------------------------------------------------- writing


def write_dicom_series(
    data: np.ndarray,
    affine: np.ndarray,
    folder: PathType,
    *,
    series_number: int = 1,
    description: str = "T2w",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    slope: float = 1.0,
    intercept: float = 0.0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "PHANTOM",
    prefix: str = "",
) -> list[Path]:
    """Write a volume as an MR Image Storage series, one file per slice along its third axis.

    Args:
        data: (X, Y, Z) intensities; stored as ``round((data - intercept) / slope)`` in uint16
            (must fit 0..65535) with that RescaleSlope / RescaleIntercept.
        affine: 4x4 voxel-to-RAS-mm matrix of ``data`` (any rotation, spacings in mm); DICOM's
            patient coordinates (LPS) are derived from it, so the series shows the same place.
        folder: where the files go (``<prefix>IM<slice>.dcm``; created).
        series_number, description, image_type: SeriesNumber, SeriesDescription, ImageType.
        slope, intercept: RescaleSlope and RescaleIntercept.
        study_uid: StudyInstanceUID (to put several series in one study); default: a new one.
        series_uid: SeriesInstanceUID; default: a new one (give one to write a series in parts).
        patient_id: PatientID and PatientName.
        prefix: file name prefix (to write several series into one folder).

    Returns:
        The files written, slice by slice.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    data = np.asarray(data, dtype=float)
    if data.ndim != 3:
        raise ValueError(f"data must be (X, Y, Z), not {data.shape}")
    stored = np.round((data - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError(f"(data - intercept) / slope spans {stored.min():g}..{stored.max():g}; uint16 holds 0..65535")
    lps = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(affine, dtype=float)[:3]  # RAS -> LPS rows
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    row_dir, col_dir = lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]  # columns go along X, rows along Y
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = series_uid or generate_uid(), generate_uid()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = _MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName = ds.PatientID = patient_id
        ds.StudyDate = ds.SeriesDate = "20240101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.Modality, ds.Manufacturer, ds.MagneticFieldStrength, ds.PatientPosition = "MR", "", 3, "HFS"
        ds.ImageType = list(image_type)
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = series_number, k + 1, 1
        ds.SeriesDescription = ds.ProtocolName = description
        ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "SE", "NONE", "3D"
        ds.EchoTime, ds.RepetitionTime = 100, 3000
        ds.ImagePositionPatient = [float(v) for v in lps @ np.array([0.0, 0.0, k, 1.0])]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row spacing (along Y), column spacing (along X)
        ds.SliceThickness = ds.SpacingBetweenSlices = float(spacing[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T.astype("<u2")).tobytes()
        path = folder / f"{prefix}IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files
