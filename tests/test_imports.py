"""Import structure: no module of `src/ccsclip` imports another in a cycle (docs/design.md §1).

A cycle makes the import order matter (a half-initialised module hands out missing names) and
ties two modules that should have one job each. The graph is read from the source with `ast`, so
nothing is imported: every `import x` / `from x import y` inside the package counts, also inside
functions (a deferred import hides a cycle from Python, not from the design).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "ccsclip"
ROOT = Path(__file__).resolve().parent.parent / "src" / PACKAGE


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package's modules `path` imports (a `from pkg import mod` names the submodule)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for target in targets:
            if target in modules and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, name, modules) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "ccsclip.bundle" in graph["ccsclip.engine.engine"]
    assert "ccsclip.heads.walk" in graph["ccsclip.heads.decompose"]
    assert {"ccsclip.service.core", "ccsclip.service.http"} <= set(graph)


def test_the_graph_counts_deferred_and_relative_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from . import b\n    import ccsclip.c\n")
    modules = {"ccsclip.a", "ccsclip.b", "ccsclip.c"}
    assert imports_of(path, "ccsclip.a", modules) == {"ccsclip.b", "ccsclip.c"}


def test_no_import_cycles_in_the_package():
    found = cycles(import_graph())
    assert not found, "import cycles in src/ccsclip:\n" + "\n".join(
        " <-> ".join(component) for component in found
    )
