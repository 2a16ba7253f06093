"""The architecture the folders promise: models < chain < agent < sim, and nothing upwards.

Every import counts, also the ones inside functions and under TYPE_CHECKING: a lazy import
upwards is still a dependency the lower layer cannot live without.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("models", "chain", "agent", "sim")  # each may import only itself and those before it


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def package_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imports_of(path) - {package}:
                edges.setdefault((package, target), []).append(str(path.relative_to(ROOT)))
    return edges


def test_no_package_imports_a_higher_layer():
    upward = {f"{a} -> {b}": files for (a, b), files in package_edges().items()
              if LAYERS.index(b) > LAYERS.index(a)}
    assert upward == {}


def test_models_and_chain_never_import_the_agent_or_the_simulator():
    edges = package_edges()
    for low in ("models", "chain"):
        for high in ("agent", "sim"):
            assert (low, high) not in edges, edges.get((low, high))


def test_the_package_graph_has_no_cycle():
    graph: dict[str, set[str]] = {p: set() for p in LAYERS}
    for a, b in package_edges():
        graph[a].add(b)
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for nxt in graph[node]:
            visit(nxt, (*path, node))
        done.add(node)

    for p in LAYERS:
        visit(p, ())


def test_the_walk_sees_lazy_and_type_only_imports(tmp_path):
    # The checker itself: an import inside a function or under TYPE_CHECKING is found.
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sim.world\n"
                 "def g():\n    from agent.cli import main\n")
    assert imports_of(f) == {"sim", "agent"}
