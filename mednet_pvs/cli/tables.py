"""Rows of a listing printed for people (a table, or one block per row when narrow) or for
programs (``--json``, ``--csv``): one home for the commands that list things (``models``, ``info``)."""
from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

from mednet_pvs.errors import ConfigError


def output_format(as_json: bool, as_csv: bool) -> str:
    """``"json"``, ``"csv"`` or ``"table"`` from the two flags (both: a ConfigError)."""
    if as_json and as_csv:
        raise ConfigError("give --json or --csv, not both")
    return "json" if as_json else "csv" if as_csv else "table"


def print_rows(rows: Sequence[dict[str, Any]], fmt: str) -> None:
    """Rows as JSON (a list of objects) or CSV (a header, then one line each) on stdout."""
    if fmt == "json":
        sys.stdout.write(json.dumps(list(rows), indent=2) + "\n")
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
