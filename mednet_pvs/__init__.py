"""mednet-pvs: segment enlarged perivascular spaces (PVS) in brain MRI.

Public API (more arrives with the networks, inference and zoo modules)::

    from mednet_pvs import load_image, save_like, make_phantom, PhantomConfig
"""
from __future__ import annotations

__version__ = "0.1.0.dev0"

from mednet_pvs.errors import ConfigError, InputError, MednetError
from mednet_pvs.io import Scan, load_image, save_like
from mednet_pvs.synth import PhantomConfig, make_phantom

__all__ = [
    "__version__",
    "ConfigError",
    "InputError",
    "MednetError",
    "PhantomConfig",
    "Scan",
    "make_phantom",
    "load_image",
    "save_like",
]
