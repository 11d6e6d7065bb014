"""Which devices this machine has, and the one check of a device a user asks for.

    resolve_device("cuda")      # torch.device("cuda") where CUDA works, else one line:
    # ConfigError: device 'cuda' is not available on this machine (available: cpu)
"""
from __future__ import annotations

import torch

from mednet_pvs.errors import ConfigError


def available_devices() -> list[str]:
    """Device names usable here: ``cpu``, then ``cuda:0`` ... and ``mps`` where present."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on: ``None`` means CUDA when available, else the CPU.

    Raises:
        ConfigError: a device name torch does not know, or one this machine does not have
            (``cuda``, ``cuda:1``, ``mps`` without one), naming those it has.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {str(device)!r} is not a device name ({e}); available: {', '.join(available_devices())}") from None
    have = available_devices()
    ok = (dev.type == "cpu" or (dev.type == "cuda" and (dev.index or 0) < torch.cuda.device_count() and torch.cuda.is_available())
          or (dev.type == "mps" and "mps" in have))
    if not ok:
        raise ConfigError(f"device {str(device)!r} is not available on this machine (available: {', '.join(have)})")
    return dev
