"""A small real bundle for the engine tests: ccsclip-tiny with a baseline and a pruned profile.

Written by the exporter itself (`ccsclip.export.bundle.export_bundle`), so the engine tests also
check that the engine reads what the exporter writes.
"""

from __future__ import annotations

from pathlib import Path

from ccsclip.export.bundle import export_bundle
from ccsclip.profiles.schema import (
    Profile,
    manual_profile,
    write_profile,
)

PRUNED_HEADS = [(2, 0), (2, 1)]
PROFILE_HEADS = {"baseline": [], "pruned": PRUNED_HEADS}
DEFAULT = "baseline"


def make_profiles(loaded, folder: Path) -> list[tuple[Profile, Path]]:
    """Zero-mode profiles of `loaded` (a LoadedModel), written as YAML under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = loaded.spec
    out = []
    for name, heads in PROFILE_HEADS.items():
        profile = manual_profile(spec, name, heads)
        out.append((profile, write_profile(folder / f"{name}.yaml", profile)))
    return out


def build_test_bundle(loaded, out: Path) -> Path:
    """Export a two-profile bundle of `loaded` into `out` and return it."""
    profiles = make_profiles(loaded, out.parent / "profiles")
    export_bundle(loaded, profiles, out, default_profile=DEFAULT, progress=False)
    return out
