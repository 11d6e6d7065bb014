"""The layers of ``../shared/ARCHITECTURE.md``, as a table: every import of every module of the
package (at the top or inside a function; ``if TYPE_CHECKING:`` blocks aside) may reach only its
own layer or the ones below it, and no module reaches itself again through its imports.

A new module must be placed in :data:`LAYERS` (the test fails until it is), so the table stays the
one description of the package's shape.
"""
from __future__ import annotations

import ast
from pathlib import Path

import mednet_pvs

ROOT = Path(mednet_pvs.__file__).parent

#: Bottom to top. Each entry: the layer's name and the top-level modules/packages of mednet_pvs in it.
LAYERS: list[tuple[str, set[str]]] = [
    ("io/config", {"errors", "version", "config", "registries", "io", "safe_load"}),
    ("nets", {"nets"}),
    ("data", {"synth", "data"}),
    ("analysis", {"analysis", "classical", "viz"}),
    ("inference", {"inference"}),
    ("zoo", {"zoo"}),
    ("training", {"training", "configs"}),
    ("app", {"demo", "cli", "__init__"}),
]
RANK = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The mednet_pvs modules ``path`` imports (``from pkg import sub`` counts as ``pkg.sub`` when
    that is a module, else as ``pkg``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mednet_pvs")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mednet_pvs":
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(paths)
    return {m: imports_of(p, known) - {m} for m, p in paths.items()}


def test_every_module_has_a_layer():
    unplaced = sorted({top_of(m) for m in import_graph()} - set(RANK))
    assert not unplaced, f"place these in LAYERS: {unplaced}"


def test_imports_never_run_up_the_layers():
    upward = []
    for module, targets in import_graph().items():
        for target in targets:
            if RANK[top_of(target)] > RANK[top_of(module)]:
                upward.append(f"{module} ({LAYERS[RANK[top_of(module)]][0]}) imports {target} "
                              f"({LAYERS[RANK[top_of(target)]][0]})")
    assert not upward, "\n".join(sorted(upward))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The graph sees function-level imports and ignores TYPE_CHECKING; the cycle finder finds circles."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mednet_pvs.zoo import x\n"
                   "def f():\n    from mednet_pvs.training.export import y\n")
    assert imports_of(src, {"mednet_pvs.training.export"}) == {"mednet_pvs.training.export"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
