"""Small shared writers for the analysis layer: strict JSON (no NaN) and atomic CSV."""
from __future__ import annotations

import math
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mednet_pvs.io import write_json, write_text


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` with numpy scalars/arrays as Python values and NaN/inf as ``None``.

    ``json.dumps`` would otherwise write ``NaN``, which strict JSON readers reject.
    """
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, PathLike):
        return str(obj)
    return obj


def write_strict_json(obj: Any, path: str | PathLike) -> Path:
    """Write ``obj`` as strict JSON (NaN -> null), atomically."""
    return write_json(json_ready(obj), path)


def write_csv(table: pd.DataFrame, path: str | PathLike, *, float_format: str = "%.6g") -> Path:
    """Write a table as CSV (no index; NaN as an empty cell), atomically."""
    return write_text(table.to_csv(index=False, float_format=float_format), path)
