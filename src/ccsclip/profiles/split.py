"""Deterministic search/validation split of a probe by a hash of each image's file name.

Shared by the search and attribution stages (attribution runs on the search part), so neither
stage imports the other for it.

The part an image falls in depends only on its path inside the probe and a salt, never on the
order of the listing, the machine or the run: sha256("<salt>\\0<path>") read as a fraction in
[0, 1); below `validation` it is a validation image. So a profile searched on one machine is
validated on exactly the same images on another, and adding images never moves existing ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ccsclip.errors import InvalidInputError
from ccsclip.probeset import AccuracyProbe, Probe

DEFAULT_SALT = "ccsclip-split-v1"


def hash_fraction(name: str, salt: str = DEFAULT_SALT) -> float:
    """A stable pseudo-uniform number in [0, 1) for a file name."""
    digest = hashlib.sha256(f"{salt}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def probe_file_names(probe: Probe) -> list[str]:
    """Each image's path relative to the probe folder (posix), in the probe's own order."""
    items = probe.samples if isinstance(probe, AccuracyProbe) else probe.rows
    paths = [path for path, _ in items]
    return [Path(p).relative_to(probe.root).as_posix() for p in paths]


@dataclass(frozen=True)
class Split:
    """`validation` is the share of images held out from the search (by hash, not by count)."""

    validation: float = 0.5
    salt: str = DEFAULT_SALT

    def __post_init__(self) -> None:
        if not 0.0 < self.validation < 1.0:
            raise InvalidInputError(
                f"split fraction {self.validation} must be strictly between 0 and 1"
            )

    def parts(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(search indices, validation indices) into `names`, each sorted."""
        held_out = np.array([hash_fraction(n, self.salt) < self.validation for n in names], bool)
        return np.flatnonzero(~held_out), np.flatnonzero(held_out)

    def probe_parts(self, probe: Probe, minimum: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Split a probe; refuse one whose parts would hold fewer than `minimum` images."""
        search, validation = self.parts(probe_file_names(probe))
        smallest = min(len(search), len(validation))
        if smallest < minimum:
            raise InvalidInputError(
                f"probe {probe.name!r} splits into {len(search)} search and {len(validation)} "
                f"validation images; each part needs at least {minimum}: use a larger probe "
                "or another split fraction"
            )
        return search, validation

    def to_dict(self) -> dict[str, object]:
        return {"method": "sha256(salt, file name)", **asdict(self)}
