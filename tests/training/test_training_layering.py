"""Layering: nothing below ``training`` imports it (inference, analysis, data, nets, io, synth...)."""
from __future__ import annotations

import ast
from pathlib import Path

import mednet_pvs

ROOT = Path(mednet_pvs.__file__).parent
ABOVE_TRAINING = {"training", "cli", "zoo", "configs", "__init__.py"}


def test_lower_layers_never_import_training():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.relative_to(ROOT).parts[0] in ABOVE_TRAINING:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in names if n.startswith("mednet_pvs.training")]
    assert not offenders, offenders
