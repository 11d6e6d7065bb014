"""NIfTI in and out, with the affine kept and every bad input named.

Reading (:func:`load_image`) accepts a path (``.nii``, ``.nii.gz``, and FreeSurfer ``.mgz`` for
label maps), a nibabel image, or an ``(array, affine)`` pair, in any orientation and spacing; a 4D
file whose extra axes have length 1 is squeezed to 3D. The voxel array is kept *as stored* (no
reorientation) so that :func:`save_like` writes outputs back on exactly the input's grid: same
shape, affine, orientation and spatial header fields.

Every problem becomes one :class:`~mednet_pvs.errors.InputError` naming the file: not an image,
truncated gzip, empty file, 2D, 4D with several volumes, no voxels, NaN/inf voxels (counted),
singular affine, extreme anisotropy (spacing given), constant image.

Writes are atomic (:func:`atomic_path`): a temp file in the destination folder, then
``os.replace``, so a crash never leaves half a file under the final name. Inputs are never modified.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal, Union

import nibabel as nib
import numpy as np

from mednet_pvs.errors import InputError

PathType = Union[str, PathLike]
ImageSource = Union[PathType, nib.spatialimages.SpatialImage, "Scan", tuple]

#: Largest ratio between the coarsest and finest voxel size accepted by default. 0.8 mm isotropic
#: HCP data is 1.0; clinical 0.5x0.5x3 mm T2w is 6; thick-slice 0.45x0.45x6.5 is 14 (PVS, a few mm
#: long, vanish between such slices).
MAX_ANISOTROPY = 8.0

_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".img", ".hdr")


@dataclass(frozen=True)
class ImageInfo:
    """What a header tells without reading voxels.

    Attributes:
        path: the file, or ``None`` for in-memory images.
        shape: spatial shape (X, Y, Z) after squeezing trailing singleton axes.
        affine: voxel-to-scanner (RAS+ mm) matrix, 4x4.
        spacing: voxel size in mm along the three array axes.
        orientation: axis codes such as ``("R", "A", "S")`` or ``("L", "P", "S")``.
        dtype: on-disk data type.
    """

    path: str | None
    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    orientation: tuple[str, str, str]
    dtype: np.dtype

    @property
    def anisotropy(self) -> float:
        """Coarsest over finest voxel size (1.0 for isotropic)."""
        return max(self.spacing) / min(self.spacing)


@dataclass
class Scan:
    """A 3D image as stored, with the grid it lives on.

    Attributes:
        data: voxel array (X, Y, Z), float32 for images (as stored, not reoriented).
        affine: 4x4 voxel-to-scanner matrix (mm).
        header: the NIfTI-1 header of the source (used to write outputs on the same grid).
        path: the source file, or ``None``.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes."""
        return _spacing(self.affine)

    @property
    def orientation(self) -> tuple[str, str, str]:
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @property
    def name(self) -> str:
        return self.path or "<in-memory image>"

    def to_nifti(self, data: np.ndarray | None = None, dtype: Any = None) -> nib.Nifti1Image:
        """A NIfTI image of ``data`` (default: this scan's data) on this scan's grid."""
        return _image_like(self.data if data is None else data, self, dtype)


# --------------------------------------------------------------------------------------- reading


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]


def _name(src: Any) -> str:
    if isinstance(src, (str, PathLike)):
        return str(src)
    fn = getattr(src, "get_filename", lambda: None)()
    return fn or "<in-memory image>"


def _open(path: PathType) -> nib.spatialimages.SpatialImage:
    p = Path(path)
    if not p.exists():
        raise InputError(p, "file not found")
    if p.is_dir():
        raise InputError(p, "is a folder, not a NIfTI file")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty (0 bytes)")
    if not str(p).lower().endswith(_SUFFIXES):
        raise InputError(p, f"not a NIfTI file (expected one of {', '.join(_SUFFIXES[:3])})")
    try:
        img = nib.load(str(p))
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(p, f"truncated or corrupt gzip file ({e})") from None
    except Exception as e:  # nibabel raises many types for garbage files
        if str(p).lower().endswith(".gz"):
            _check_gzip(p)
        reason = str(e).replace(f'"{p}"', "it").replace(str(p), "it")
        raise InputError(p, f"not a readable NIfTI file ({type(e).__name__}: {reason})") from None
    return img


def _check_gzip(p: Path) -> None:
    """Raise the precise error for a broken ``.gz`` (called only once nibabel has failed)."""
    try:
        with gzip.open(p) as f:
            while f.read(1 << 24):
                pass
    except gzip.BadGzipFile as e:
        raise InputError(p, f"not a readable NIfTI file: not a valid gzip stream although named .gz ({e})") from None
    except (EOFError, zlib.error, OSError) as e:
        raise InputError(p, f"truncated or corrupt gzip file ({e})") from None


def _check_geometry(name: str, shape: tuple[int, ...], affine: np.ndarray, max_anisotropy: float | None) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3:
        raise InputError(name, f"image is {len(shape)}D (shape {shape}); a 3D volume is needed")
    if len(shape) > 3:
        n = int(np.prod(shape[3:]))
        raise InputError(
            name, f"4D image with {n} volumes (shape {shape}); give one 3D volume (e.g. extract it with fslroi)"
        )
    if min(shape) == 0:
        raise InputError(name, f"image has no voxels (shape {shape})")
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(name, "affine is not a finite 4x4 matrix")
    det = float(np.linalg.det(affine[:3, :3]))
    if abs(det) < 1e-8:
        raise InputError(name, f"singular affine (determinant {det:.3g}): the header does not define a 3D grid")
    spacing = _spacing(affine)
    if max_anisotropy is not None and max(spacing) / min(spacing) > max_anisotropy:
        sp = " x ".join(f"{s:.3g}" for s in spacing)
        raise InputError(
            name,
            f"extreme anisotropy: spacing {sp} mm (ratio {max(spacing) / min(spacing):.1f} > {max_anisotropy:g}); "
            "PVS cannot be resolved between such thick slices (override: --max-anisotropy on the command line, max_anisotropy= in Python)",
        )
    return shape  # type: ignore[return-value]


#: deflate cannot compress better than about 1032:1, so a ``.gz`` file of n bytes holds at most
#: this many times n bytes (with room for the header).
_MAX_GZIP_RATIO = 1100


def _check_voxel_type(name: str, img: nib.spatialimages.SpatialImage) -> None:
    """Refuse voxel types that are not one real value per voxel (RGB, complex), from the header."""
    dtype = np.dtype(img.get_data_dtype())
    if dtype.fields is not None:
        raise InputError(name, f"colour (RGB/RGBA) image with fields {', '.join(dtype.names)}; a grayscale MR volume is needed")
    if dtype.kind == "c":
        raise InputError(name, f"complex-valued image ({dtype}); give the magnitude image")
    if dtype.kind not in "biuf":
        raise InputError(name, f"voxel type {dtype} is not numeric")


def _check_payload(path: Path, img: nib.spatialimages.SpatialImage, shape: tuple[int, int, int]) -> None:
    """Refuse a header that claims more voxel bytes than the file can hold, before reading any.

    A 4 KB file claiming 1000^3 float32 voxels would otherwise allocate 4 GB before failing.
    """
    n_bytes = int(np.prod(shape, dtype=np.float64) * np.dtype(img.get_data_dtype()).itemsize)
    offset = int(getattr(img.dataobj, "offset", 0) or 0)
    size = path.stat().st_size
    gz = path.name.lower().endswith((".gz", ".mgz"))
    if path.name.lower().endswith((".hdr", ".img")):
        data_file = path.with_suffix(".img")
        size, offset = (data_file.stat().st_size if data_file.exists() else 0), 0
    limit = size * _MAX_GZIP_RATIO if gz else size - offset
    if n_bytes > limit:
        claim = " x ".join(map(str, shape))
        raise InputError(
            path, f"header claims {claim} voxels of {img.get_data_dtype()} ({n_bytes / 1e6:.4g} MB) but the file "
            f"holds {size} bytes{' (compressed)' if gz else ''}: truncated, or a corrupt header"
        )


def _check_voxel_size(path: Path, img: nib.spatialimages.SpatialImage) -> None:
    """Refuse a NIfTI with no qform/sform whose pixdim is 0: nibabel would guess a 1 mm grid."""
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return
    hdr = img.header
    if int(hdr["qform_code"]) > 0 or int(hdr["sform_code"]) > 0:
        return
    with nib.openers.ImageOpener(str(path)) as f:  # the header as stored: nibabel's load fixes pixdim
        raw = type(hdr).from_fileobj(f, check=False)
    pixdim = [float(v) for v in raw["pixdim"][1:4]]
    if any(not np.isfinite(v) or v == 0 for v in pixdim):
        raise InputError(path, f"no qform/sform and voxel size (pixdim) {pixdim}: the grid is unknown; "
                               "fix the header (e.g. with fslorient or nibabel)")


def read_header(src: PathType | nib.spatialimages.SpatialImage, *, max_anisotropy: float | None = MAX_ANISOTROPY) -> ImageInfo:
    """Check an image's header (no voxels read) and describe its grid.

    Raises:
        InputError: file missing/empty/unreadable, not 3D, not one real value per voxel (RGB,
            complex), fewer bytes than the header claims, unknown voxel size, singular affine,
            extreme anisotropy.
    """
    name = _name(src)
    img = _open(src) if isinstance(src, (str, PathLike)) else src
    shape = _check_header(name, src, img, max_anisotropy)
    return ImageInfo(
        path=None if not isinstance(src, (str, PathLike)) else str(src),
        shape=shape,
        affine=np.asarray(img.affine, dtype=float),
        spacing=_spacing(img.affine),
        orientation=tuple(nib.aff2axcodes(img.affine)),  # type: ignore[arg-type]
        dtype=np.dtype(img.get_data_dtype()),
    )


def _check_header(name: str, src: Any, img: nib.spatialimages.SpatialImage, max_anisotropy: float | None) -> tuple[int, int, int]:
    """Every check that needs only the header; returns the 3D shape."""
    _check_voxel_type(name, img)
    shape = _check_geometry(name, img.shape, img.affine, max_anisotropy)
    if isinstance(src, (str, PathLike)):
        _check_payload(Path(src), img, shape)
        _check_voxel_size(Path(src), img)
    return shape


def _nifti_header(img: nib.spatialimages.SpatialImage, shape: tuple[int, int, int]) -> nib.Nifti1Header:
    if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        hdr = nib.Nifti1Header.from_header(img.header)
    else:  # MGH, Analyze: keep the grid, start a fresh NIfTI header
        hdr = nib.Nifti1Header()
        hdr.set_data_dtype(img.get_data_dtype())
    hdr.set_data_shape(shape)
    hdr.set_sform(img.affine, code=int(hdr["sform_code"]) or 1)
    hdr.set_qform(img.affine, code=int(hdr["qform_code"]) or 1)
    return hdr


def load_image(
    src: ImageSource,
    *,
    kind: Literal["image", "label"] = "image",
    max_anisotropy: float | None = MAX_ANISOTROPY,
) -> Scan:
    """Read and check a 3D image.

    Args:
        src: a path, a nibabel image, a :class:`Scan`, or an ``(array, affine)`` pair.
        kind: ``"image"`` (float32; a constant image is an error) or ``"label"`` (values kept in
            their stored integer type when integral; an all-zero label is allowed).
        max_anisotropy: largest coarsest/finest voxel size ratio accepted; ``None`` to skip.

    Returns:
        A :class:`Scan` with data (X, Y, Z) as stored and the source's affine and header.

    Raises:
        InputError: naming the file and the problem.
    """
    if isinstance(src, Scan):
        return src
    if isinstance(src, tuple):
        if len(src) != 2:
            raise InputError(None, "an in-memory image is given as (array, affine)")
        arr, aff = np.asarray(src[0]), np.asarray(src[1], dtype=float)
        src = nib.Nifti1Image(arr, aff)
    name = _name(src)
    img = _open(src) if isinstance(src, (str, PathLike)) else src
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise InputError(name, f"not an image ({type(img).__name__})")
    shape = _check_header(name, src, img, max_anisotropy)
    try:
        raw = np.asanyarray(img.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(name, f"truncated or corrupt gzip file ({e})") from None
    except (OSError, ValueError) as e:
        raise InputError(name, f"voxel data cannot be read, the file looks truncated or corrupt ({e})") from None
    raw = raw.reshape(shape)
    if any(st < 0 for st in raw.strides):  # a flipped in-memory view (e.g. nibabel's as_reoriented): torch refuses it
        raw = raw.copy(order="K")
    if kind == "label" and np.issubdtype(raw.dtype, np.integer):
        data = raw
    else:
        data = raw.astype(np.float32, copy=False)
        bad = ~np.isfinite(data)
        if bad.any():
            n_nan = int(np.isnan(data).sum())
            n_inf = int(bad.sum()) - n_nan
            raise InputError(
                name, f"{n_nan} NaN and {n_inf} infinite voxels (of {data.size}); fix or mask them before use"
            )
        if kind == "label" and np.array_equal(data, np.round(data)):
            data = data.astype(np.int16 if data.max() > 255 or data.min() < 0 else np.uint8)
    if kind == "image" and data.min() == data.max():
        raise InputError(name, f"image is empty: every voxel equals {float(data.flat[0]):g}")
    return Scan(data=data, affine=np.asarray(img.affine, dtype=float), header=_nifti_header(img, shape), path=None if name.startswith("<") else name)


# --------------------------------------------------------------------------------------- writing

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_case_id(text: str) -> str:
    """The file-name form of a case id, the one rule for every output name.

    Path separators and characters other than letters, digits, ``.``, ``_``, ``+`` and ``-``
    become ``_`` (``site1/sub-01`` -> ``site1_sub-01``). An id that would name a place outside
    the output folder or a hidden file is refused: absolute paths (``/tmp/x``, ``C:\\x``), ``..``
    or ``.`` components, a leading ``.``, empty, or longer than 200 characters.

    Raises:
        InputError: (with no file: callers add theirs) saying why the id is refused.
    """
    raw = str(text)
    stripped = raw.strip()
    parts = re.split(r"[/\\]+", stripped)
    if not stripped:
        reason = "is empty"
    elif stripped.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[/\\]", stripped):
        reason = "is an absolute path: outputs would be written outside the output folder"
    elif any(p in (".", "..") for p in parts):
        reason = "has a '.' or '..' component: outputs would be written outside the output folder"
    elif stripped.startswith("."):
        reason = "starts with '.' (a hidden file name)"
    elif len(stripped) > 200:
        reason = f"is {len(stripped)} characters long (at most 200)"
    else:
        return _UNSAFE_ID.sub("_", "_".join(p for p in parts if p)).strip("_") or "_"
    raise InputError(None, f"case id {raw!r} {reason}; use letters, digits, '.', '_', '+' and '-'")


def check_output_dir(path: PathType) -> Path:
    """Make sure ``path`` can take outputs *before* any work is done, without creating it (the
    writers create it; a run refused later leaves nothing behind): it is a folder or can become
    one, and the folder it is or would be made in takes a test write.

    Returns:
        The folder.

    Raises:
        InputError: it is a file, or it cannot be created or written (one line, the reason).
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(p, "output folder is an existing file; give a folder")
    base = p.absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise InputError(p, f"output folder cannot be created: {base} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mednet-pvs-write-check.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        where = "output folder is not writable" if base == p.absolute() else f"output folder cannot be created: {base} is not writable"
        raise InputError(p, f"{where} ({e.strerror or e})") from None
    return p


def check_output_file(path: PathType) -> Path:
    """Make sure a file can be written at ``path`` (its folder created and writable) before any work.

    Raises:
        InputError: ``path`` is a folder, or its folder cannot be created or written.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(p, "is a folder; give a file name for this output")
    check_output_dir(p.parent if str(p.parent) else Path("."))
    return p



@contextlib.contextmanager
def atomic_path(path: PathType) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffixes); on success move it onto ``path``.

    The destination folder is created. On an exception the temp file is removed and ``path`` is
    left as it was.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes) if dest.name.endswith(_SUFFIXES) else dest.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600; give it the permissions a plain open() would (0666 - umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(text: str, path: PathType) -> Path:
    """Write text atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(obj: Any, path: PathType) -> Path:
    """Write JSON atomically (numpy scalars/arrays converted); returns the path."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, PathLike):
            return str(o)
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return write_text(json.dumps(obj, indent=2, default=default) + "\n", path)


def _image_like(data: np.ndarray, like: Scan, dtype: Any = None) -> nib.Nifti1Image:
    data = np.asarray(data)
    if data.shape != like.shape:
        raise ValueError(f"data shape {data.shape} does not match the reference grid {like.shape} ({like.name})")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    elif data.dtype == bool:
        data = data.astype(np.uint8)
    hdr = like.header.copy()
    hdr.set_data_dtype(data.dtype)
    hdr.set_slope_inter(None, None)  # never inherit the input's intensity scaling
    img = nib.Nifti1Image(data, like.affine, header=hdr)
    img.set_sform(like.affine, code=int(like.header["sform_code"]) or 1)
    img.set_qform(like.affine, code=int(like.header["qform_code"]) or 1)
    return img


def save_nifti(img: nib.Nifti1Image, path: PathType) -> Path:
    """Save a nibabel image atomically; returns the path."""
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def save_like(data: np.ndarray, like: Scan | ImageSource, path: PathType, *, dtype: Any = None) -> Path:
    """Write ``data`` (X, Y, Z) as NIfTI on the grid of ``like`` (same shape, affine, orientation).

    Args:
        data: array on the reference grid; ``bool`` becomes ``uint8``.
        like: the reference (a :class:`Scan`, or anything :func:`load_image` takes).
        path: destination (``.nii`` or ``.nii.gz``), written atomically.
        dtype: output data type (default: that of ``data``).
    """
    ref = like if isinstance(like, Scan) else load_image(like, kind="label")
    return save_nifti(_image_like(data, ref, dtype), path)
