"""An object's private (underscore) parts stay inside its class (docs/design.md §1).

Read from the source with `ast`, nothing imported. In `src/ccsclip`, `x._name` is flagged unless
`x` is `self`, `cls` or `super()`, `x` is a module-level name of the same module, or the access
is inside a class that defines `_name` itself (a classmethod filling a new instance, `other._x`
in a comparison). `from ccsclip.m import _name` is flagged too: it is the same reach into another
module. Dunder names (`__class__`) are public. Where a third party offers no public way, the
exception is listed once in THIRD_PARTY with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "ccsclip"

# (module path relative to src/ccsclip, attribute) -> why no public way exists.
THIRD_PARTY: dict[tuple[str, str], str] = {
    ("models/open_clip_internals.py", "_embeds"): (
        "open_clip has no public call for the residual stream before the first block; "
        "this module is the one place that reads it, pinned to the open_clip version"
    ),
    ("service/parent_watch.py", "_exit"): (
        "os._exit is the standard library's documented way to end a process at once, "
        "without running cleanup that could hang"
    ),
}

# Attributes that are public API despite the underscore, wherever they are read.
PUBLIC_UNDERSCORE: dict[str, str] = {
    "_replace": "namedtuple API (grpc's RpcMethodHandler, ccsclip.headref.Head): the underscore "
    "only keeps it apart from field names",
    "_asdict": "namedtuple API, as _replace",
    "_fields": "namedtuple API, as _replace",
}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level: the module may use its own private parts."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def class_members(cls: ast.ClassDef) -> set[str]:
    """What a class defines: methods, class attributes, fields and `self.x = ...` in methods."""
    members: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            members.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            members.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            members.add(node.attr)
    return members


def own_object(node: ast.expr, module: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls") or node.id in module
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


class PrivateReads(ast.NodeVisitor):
    """Collects `path: expression` for every reach into another object's private parts."""

    def __init__(self, rel: str, tree: ast.Module) -> None:
        self.rel, self.module = rel, module_names(tree)
        self.classes: list[set[str]] = []
        self.found: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(class_members(node))
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if (
            is_private(name)
            and name not in PUBLIC_UNDERSCORE
            and not own_object(node.value, self.module)
            and not any(name in members for members in self.classes)
            and (self.rel, name) not in THIRD_PARTY
        ):
            self.found.append(f"{self.rel}: {ast.unparse(node)}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or (node.module or "").split(".")[0] == "ccsclip":
            for alias in node.names:
                if is_private(alias.name):
                    source = "." * node.level + (node.module or "")
                    self.found.append(f"{self.rel}: from {source} import {alias.name}")


def private_reads(source: str, rel: str = "m.py") -> list[str]:
    tree = ast.parse(source)
    visitor = PrivateReads(rel, tree)
    visitor.visit(tree)
    return visitor.found


def test_the_checker_flags_reaching_in_and_allows_own_parts():
    source = """
from ccsclip.other import _helper
from .sibling import _shared
_CACHE = {}

class Box:
    def __init__(self):
        self._items = []

    @classmethod
    def load(cls):
        box = cls()
        box._items = [1]
        return box

    def same(self, other):
        return self._items == other._items and super()._check() and cls._x

def peek(box, core):
    _CACHE.clear()
    return box._items, core._embed(1), box.__class__, box._replace(a=1)
"""
    assert private_reads(source) == [
        "m.py: from ccsclip.other import _helper",
        "m.py: from .sibling import _shared",
        "m.py: box._items",
        "m.py: core._embed",
    ]


def test_no_module_reads_another_objects_private_parts():
    found: set[str] = set()
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("v1/"):  # generated by grpcio-tools from the .proto
            continue
        found |= set(private_reads(path.read_text("utf-8"), rel))
    assert not found, "private parts read from outside their class:\n" + "\n".join(sorted(found))


def test_third_party_exceptions_are_still_needed():
    for rel, name in THIRD_PARTY:
        tree = ast.parse((ROOT / rel).read_text("utf-8"))
        reads = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert name in reads, f"{rel} no longer reads {name}: delete its THIRD_PARTY entry"
