"""Compare the artefacts of two `SERVE=0 scripts/demo.sh` runs: the no-behaviour-change check.

    python scripts/compare_demo.py REF_WORK NEW_WORK [--rtol 0]

Compared: rank/ccs.json, every profile YAML (rank/profiles, search/profiles), search/pareto.json
and bundle/manifest.json. Left out on purpose: the `timing` of pareto.json (wall clock), the
manifest's per-profile `source` (provenance: it changed from a machine path to a name, hash and
relative path) and, in every string, the run's own folder (each run writes to its own WORK).
Numbers must be equal (or within `--rtol`). Prints one line per file and every difference by its
JSON path; exits 1 when anything differs or is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

FILES = ["rank/ccs.json", "search/pareto.json", "bundle/manifest.json"]
PROFILE_DIRS = ["rank/profiles", "search/profiles"]


def load(path: Path, root: Path) -> Any:
    text = path.read_text("utf-8").replace(str(root.resolve()), "$WORK").replace(str(root), "$WORK")
    data = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    if path.name == "pareto.json":
        data.pop("timing", None)
    if path.name == "manifest.json":
        for entry in data.get("profiles", {}).values():
            entry.pop("source", None)
    return data


def differences(a: Any, b: Any, rtol: float, where: str = "$") -> list[str]:
    """Every place where `a` and `b` differ, by JSON path."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in ref" for k in a.keys() - b.keys()]
        out += [f"{where}.{k}: only in new" for k in b.keys() - a.keys()]
        for key in sorted(a.keys() & b.keys(), key=str):
            out += differences(a[key], b[key], rtol, f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items in ref, {len(b)} in new"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, rtol, f"{where}[{i}]")
        ]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        if a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0):
            return []
        return [f"{where}: {a!r} (ref) != {b!r} (new)"]
    return [] if a == b else [f"{where}: {a!r} (ref) != {b!r} (new)"]


def compare(ref: Path, new: Path, rtol: float) -> int:
    names = list(FILES)
    for folder in PROFILE_DIRS:
        found = {p.name for p in (ref / folder).glob("*.yaml")} | {
            p.name for p in (new / folder).glob("*.yaml")
        }
        names += [f"{folder}/{name}" for name in sorted(found)]
    failed = 0
    for name in names:
        a, b = ref / name, new / name
        if not (a.is_file() and b.is_file()):
            print(
                f"MISSING {name}: ref {'has' if a.is_file() else 'lacks'} it, "
                f"new {'has' if b.is_file() else 'lacks'} it"
            )
            failed += 1
            continue
        found = differences(load(a, ref), load(b, new), rtol)
        print(f"{'same' if not found else 'DIFFERS'} {name}")
        for line in found[:20]:
            print(f"    {line}")
        failed += bool(found)
    print(f"{len(names) - failed} of {len(names)} files the same")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", type=Path, help="WORK folder of the reference run")
    parser.add_argument("new", type=Path, help="WORK folder of the run to check")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance of numbers")
    args = parser.parse_args()
    sys.exit(compare(args.ref, args.new, args.rtol))


if __name__ == "__main__":
    main()
