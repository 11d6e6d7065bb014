"""The notebooks (``notebooks/*.ipynb``) are committed clean and run top to bottom on tiny settings.

Each notebook is executed with nbclient in a fresh kernel of *this* Python, in ``tmp_path``, after a
cell injected right below its ``parameters`` cell (papermill's ``injected-parameters`` convention)
that shrinks the work: procedural 64^3 phantoms, a handful of cases, a few fine-tuning steps, no
test-time mirroring, outputs under ``tmp_path``. Any cell that raises fails the test with that
cell and its traceback (nbclient's ``CellExecutionError``); errors shown inside widgets (the slice
viewer's callback) fail it too.

The notebooks run with the bundled ``mednet-pvs-synth-t2w`` model. ``MEDNET_NB_MODEL`` overrides it
(a zoo name or a bundle folder), e.g. to try a new model or to run them before it is bundled.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_quickstart.ipynb", "02_finetune_local_cohort.ipynb", "03_explore_predictions.ipynb")
#: The model the notebooks run with in the tests.
MODEL = os.environ.get("MEDNET_NB_MODEL") or "mednet-pvs-synth-t2w"
#: A small, fast phantom (about 0.1 s to make, seconds to segment on a CPU).
TINY_PHANTOM = {"anatomy": "procedural", "shape": (64, 64, 64), "contrast": "T2w", "burden": 2}
#: Per notebook, the parameters the tests inject (the notebook's defaults are for real use).
TINY: dict[str, dict[str, Any]] = {
    "01_quickstart.ipynb": {"MODEL": MODEL, "PHANTOM": TINY_PHANTOM, "TTA": False, "OUT": "out01", "HEAD_ANATOMY": "procedural"},
    "02_finetune_local_cohort.ipynb": {
        "MODEL": MODEL, "N_CASES": 4, "PHANTOM": {**TINY_PHANTOM, "contrast": "T1w"}, "SPLIT_FRACTIONS": (0.5, 0.25, 0.25),
        "EPOCHS": 1, "STEPS_PER_EPOCH": 2, "PATCH_SIZE": 32, "SAMPLES_PER_VOLUME": 2, "AUGMENTATION": "none",
        "NUM_WORKERS": 0, "TTA": False, "OUT": "out02",
    },
    "03_explore_predictions.ipynb": {
        "MODEL": MODEL, "BASELINE": "frangi-t2w", "N_CASES": 3, "PHANTOM": TINY_PHANTOM, "BURDENS": [1, 3], "TTA": False,
        "OUT": "out03",
    },
}
#: Seconds one cell may run before the test fails.
CELL_TIMEOUT = 600


def read(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / name, as_version=nbformat.NO_CONVERT)


def parameters_cells(nb: Any) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]


def injected_cell(params: dict[str, Any]) -> Any:
    lines = ["# Parameters injected by tests/notebooks/test_notebooks.py (tiny settings)"]
    lines += [f"{k} = {v!r}" for k, v in params.items()]
    # the kernel must be this environment's Python (not another 'python3' kernelspec on the machine)
    lines += ["import sys as _sys", f"assert _sys.prefix == {sys.prefix!r}, _sys.executable"]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    return cell


def widget_errors(nb: Any) -> list[str]:
    """Error outputs stored anywhere in the executed notebook (cells, and Output widgets' state)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("output_type") == "error":
                found.append(f"{node.get('ename')}: {node.get('evalue')}")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(nb.get("metadata", {}).get("widgets", {}))
    for cell in nb.cells:
        walk(cell.get("outputs", []))
    return found


def execute(name: str, workdir: Path) -> tuple[Any, float]:
    """Run notebook ``name`` with its tiny parameters in ``workdir``; returns it executed, and the seconds."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    nb = read(name)
    (at,) = parameters_cells(nb)
    nb.cells.insert(at + 1, injected_cell(TINY[name]))
    # kernel_dirs=[]: ignore kernelspecs installed on the machine; "python3" is then ipykernel's
    # native spec, which launches sys.executable (this venv).
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    env = dict(os.environ, MPLBACKEND="Agg", HF_HUB_OFFLINE="1", WANDB_MODE="disabled", PYDEVD_DISABLE_FILE_VALIDATION="1")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env["OMP_NUM_THREADS"] = "1"  # one core per pytest worker (see tests/conftest.py)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=False,
                            extra_arguments=["--InteractiveShell.colors=nocolor"],  # plain tracebacks in the test log
                            resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    client.execute(env=env)
    return nb, time.perf_counter() - t0


# ----------------------------------------------------------------------------------- fast checks


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_valid_clean_and_has_one_parameters_cell(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert len(parameters_cells(nb)) == 1, "exactly one cell tagged 'parameters' (papermill convention)"
    params = nb.cells[parameters_cells(nb)[0]]
    assert params.cell_type == "code"
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with a short introduction"
    for key in TINY[name]:
        assert f"\n{key} = " in f"\n{params.source}", f"the parameters cell sets {key} (the tests inject it)"
    assert "MODEL = \"mednet-pvs-synth-t2w\"" in params.source
    assert not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {i} has stored outputs: clear them"
    assert "widgets" not in nb.metadata, "no stored widget state"


def test_every_notebook_is_described_in_the_readme():
    assert all((NOTEBOOKS / name).is_file() for name in NAMES)
    readme = (NOTEBOOKS / "README.md").read_text()
    assert all(name in readme for name in NAMES)


# ------------------------------------------------------------------------------------ execution


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_tiny_settings(name, tmp_path, figures):
    nb, seconds = execute(name, tmp_path)
    figures(f"{name}: executed in {seconds:.0f} s (model {MODEL})")
    assert not widget_errors(nb), widget_errors(nb)
    out = tmp_path / TINY[name]["OUT"]
    assert out.is_dir() and any(out.iterdir()), "the notebook writes into its OUT folder"
    assert not (NOTEBOOKS / TINY[name]["OUT"]).exists()
    if name.startswith("01"):
        assert (out / "case" / "case_preview.png").stat().st_size > 0
        assert (out / "case" / "case_clusters.csv").exists()
    elif name.startswith("02"):
        assert (out / "finetuned" / "config.json").exists() and (out / "my_finetuned_model" / "model.safetensors").exists()
    else:
        assert (out / "comparison.csv").exists()
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        assert any(s.get("model_name") == "IntSliderModel" for s in state.values()), "the slice viewer was built"
