"""The nets layer knows nothing of training frameworks, image files or the Hub, and reads no file
(which layer imports which: ``tests/test_layering.py``)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mednet_pvs.nets

NETS = Path(mednet_pvs.nets.__file__).parent
FORBIDDEN = ("lightning", "pytorch_lightning", "torchio", "nibabel", "huggingface_hub")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_forbidden_imports_in_source():
    for path in NETS.glob("*.py"):
        bad = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN}
        assert not bad, f"{path.name} imports {bad}"


def test_importing_nets_adds_no_heavy_modules():
    code = (
        "import sys, mednet_pvs\n"
        "before = set(sys.modules)\n"
        "import mednet_pvs.nets\n"
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))\n"
    )
    added = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in (*FORBIDDEN, "dynamic_network_architectures"):
        assert f"'{name}'" not in added, added


def test_no_file_in_nets_reads_files():
    readers = ("torch.load", "open(", "read_text", "read_bytes", "load_file", "pickle")
    for path in NETS.glob("*.py"):
        text = path.read_text()
        assert not [r for r in readers if r in text], path.name
