"""The one safe reader of weights and pickles: nothing in a file can run code.

- Torch files (checkpoints, state dicts): ``torch.load(weights_only=True)`` on CPU; numpy scalars and
  arrays, which nnU-Net's checkpoints hold in their logs, are the only non-torch types admitted
  (:func:`torch_load`).
- ``.safetensors`` files and torch files holding network weights: :func:`read_state_dict`.
- Pickles (nnU-Net v1's ``.model.pkl`` plans): :class:`RestrictedUnpickler`, which builds only numpy
  arrays, dtypes and scalars, ``OrderedDict`` and builtin containers and refuses any other class
  before anything runs (:func:`read_pickle`).

Every problem with a file raises :class:`~mednet_pvs.errors.InputError` naming it. This is the only
module of the package that calls ``torch.load`` or unpickles. Importing it does not import torch.
"""
from __future__ import annotations

import pickle
import re
import warnings
from collections import OrderedDict
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Mapping

import numpy as np

from mednet_pvs.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

PathLikeStr = str | PathLike
StateDict = dict[str, "torch.Tensor"]

#: Keys under which training frameworks keep the network's weights inside a checkpoint dict:
#: nnU-Net v1 and Lightning ``state_dict``, nnU-Net v2 ``network_weights``.
CONTAINER_KEYS = ("state_dict", "network_weights")
#: Prefixes that wrappers add to every key: DataParallel/DDP ``module.``, torch.compile ``_orig_mod.``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_np_multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2 / numpy 1
#: numpy reconstructors admitted by ``torch.load(weights_only=True)`` (nnU-Net logs hold numpy scalars).
_NUMPY_SAFE: list[Any] = [_np_multiarray.scalar, _np_multiarray._reconstruct, np.ndarray, np.dtype,
                          *{type(np.dtype(t)) for t in "?bBhHiIlLqQefdgFDG"}]
if hasattr(np, "_core"):  # files written under numpy 1 (nnU-Net v1 checkpoints) name numpy.core.multiarray
    _NUMPY_SAFE += [(_np_multiarray.scalar, "numpy.core.multiarray.scalar"),
                    (_np_multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]
#: (module, name) -> the object a plans pickle may refer to; nothing else is ever looked up.
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _np_multiarray._reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _np_multiarray.scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    **{("builtins", t.__name__): t for t in (dict, list, tuple, set, frozenset, int, float, complex, str, bytes, bytearray, bool)},
}


def _existing(path: PathLikeStr) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    return path


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ------------------------------------------------------------------------------------ torch files


def _why_unreadable(e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line: a refused class or function (the
    file could run code), else what the reader choked on (not a torch file, or a damaged one)."""
    text = str(e)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return (f"it refers to {refused.group(1)}, not only to tensors and plain data; refused without running "
                "anything, since loading it could run code")
    if "Weights only load failed" in text:  # torch's advice to drop weights_only is not repeated here
        operand = re.search(r"Unsupported operand \d+", text)
        return f"not a PyTorch file, or a damaged one ({operand.group(0) if operand else 'unsupported pickle content'})"
    return f"not a PyTorch file, or a damaged one ({type(e).__name__}: {_first_line(e)})"


def torch_load(path: PathLikeStr) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, admitting numpy scalars/arrays; InputError on
    failure, saying whether the file refers to code (a class or function other than those) or is not
    a readable torch file at all."""
    import torch

    path = _existing(path)
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a plain pickle: refused below
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure is a problem with this file
        raise InputError(path, f"cannot be read as a PyTorch checkpoint with weights_only=True: {_why_unreadable(e)}") from e


def unwrap_state_dict(obj: Mapping[str, Any]) -> StateDict:
    """The tensors of a raw state dict or of a checkpoint container (``{"state_dict": ...}``).

    Wrapper prefixes (``module.``, ``_orig_mod.``) shared by every key are removed. Touches no file.
    """
    import torch

    if not isinstance(obj, Mapping):
        raise ConfigError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad or not obj:
        raise ConfigError(
            "not a state dict: " + (f"entries {bad[:5]} are not tensors" if bad else "it is empty")
            + f"; a checkpoint container must hold one under one of {list(CONTAINER_KEYS)}"
        )
    sd = dict(obj)
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: PathLikeStr) -> StateDict:
    """The network weights in a ``.safetensors`` file or a torch checkpoint (raw state dict, or a
    dict holding one under ``state_dict`` / ``network_weights``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        _existing(path)
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(path)
        except Exception as e:  # noqa: BLE001
            raise InputError(path, f"cannot be read as safetensors ({e})") from e
    else:
        obj = torch_load(path)
    try:
        return unwrap_state_dict(obj)
    except ConfigError as e:
        raise InputError(path, str(e)) from e


# ---------------------------------------------------------------------------------------- pickles


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that admits only numpy arrays/dtypes/scalars, ``OrderedDict`` and builtin
    containers and scalars; any other class or function is refused, before it is called, with an
    :class:`InputError` naming the file and the class."""

    def __init__(self, file: BinaryIO, path: PathLikeStr) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise InputError(
                self.path,
                f"refers to {module}.{name}, which an nnU-Net v1 plans file never holds: refused without running "
                "anything (only numpy arrays, dtypes and scalars, OrderedDict and builtin containers are read)",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise InputError(self.path, "holds persistent pickle references: refused (not an nnU-Net v1 plans file)")


def read_pickle(path: PathLikeStr) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler`; any problem is an :class:`InputError` naming it."""
    path = _existing(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, path).load()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is a problem with this file
        raise InputError(path, f"not a readable pickle ({type(e).__name__}: {e})") from None
