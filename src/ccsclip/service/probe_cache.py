"""Stored probe results: a probe's full result for a profile is computed once, then read back.

A probe's result with a profile is a function of the profile's ONNX file (its sha256 in the
bundle manifest) and the probe (the sha256 of its probe.yaml, which itself pins the sha256 of
every image): nothing else changes it while both stay. So the service computes it at the first
start and stores it here, keyed by both hashes and the canary size, with the canary's reference:
the embeddings and top-1 class (or query) of a fixed subsample, which each periodic round
re-embeds and compares (service/probes.py).

One entry is two files, `<key>.npy` (the reference embeddings, float32, read with
allow_pickle=False) and `<key>.json` (the result, the subsample's indices and top-1, the hashes
of the key and the sha256 of the .npy). Both are written atomically, the .npy first; an entry
whose key fields or .npy hash do not match is ignored (logged) and recomputed. Two servers may
share the folder: the same key always means the same content.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.fileio import atomic_path, atomic_write_json, sha256_file
from ccsclip.service.settings import PROBE_FILE

log = logging.getLogger(__name__)
SCHEMA = "ccsclip-probe-result/1"


def default_root() -> Path:
    """`$XDG_CACHE_HOME/ccsclip/probe-results` (else `~/.cache/...`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccsclip" / "probe-results"


def probe_sha256(directory: Path) -> str:
    """The probe's identity: sha256 of its probe.yaml (which names its content's sha256)."""
    return sha256_file(Path(directory) / PROBE_FILE)


def entry_key(profile_sha256: str, probe_sha: str, canary_size: int) -> str:
    return f"{profile_sha256[:20]}-{probe_sha[:20]}-c{canary_size}"


@dataclass
class Entry:
    """A probe's full result with a profile and the canary's reference."""

    result: dict[str, Any]  # as ccsclip.engine.probes.run_probe
    indices: np.ndarray  # int64 [n]: the canary subsample (positions in the probe)
    reference: np.ndarray  # float32 [n, E]: their embeddings when the result was computed
    top1: np.ndarray  # int64 [n]: their best class / query then


class ProbeCache:
    """The stored entries under one folder (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def load(self, key: str, profile_sha256: str, probe_sha: str) -> Entry | None:
        """The entry, or None when absent or not matching its hashes (then it is recomputed)."""
        meta_path, npy_path = self.root / f"{key}.json", self.root / f"{key}.npy"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            expected = (SCHEMA, profile_sha256, probe_sha)
            found = (meta["schema"], meta["profile_sha256"], meta["probe_sha256"])
            if found != expected:
                raise ValueError(f"the entry is for {found}, not {expected}")
            if sha256_file(npy_path) != meta["reference_sha256"]:
                raise ValueError(f"{npy_path.name} does not match its sha256")
            reference = np.load(npy_path, allow_pickle=False)
            indices = np.asarray(meta["indices"], dtype=np.int64)
            top1 = np.asarray(meta["top1"], dtype=np.int64)
            if reference.ndim != 2 or not len(reference) == len(indices) == len(top1):
                raise ValueError(f"reference {reference.shape}, {len(indices)} indices")
            return Entry(meta["result"], indices, reference.astype(np.float32), top1)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("stored probe result %s is not used (%s); computing it again", key, exc)
            return None

    def store(self, key: str, profile_sha256: str, probe_sha: str, entry: Entry) -> None:
        """Write the entry atomically (.npy, then the .json naming its sha256)."""
        npy_path = self.root / f"{key}.npy"
        with atomic_path(npy_path) as tmp:
            with open(tmp, "wb") as handle:
                np.save(
                    handle, np.ascontiguousarray(entry.reference, np.float32), allow_pickle=False
                )
        atomic_write_json(
            self.root / f"{key}.json",
            {
                "schema": SCHEMA,
                "profile_sha256": profile_sha256,
                "probe_sha256": probe_sha,
                "canary_size": len(entry.indices),
                "indices": entry.indices.tolist(),
                "top1": entry.top1.tolist(),
                "reference_sha256": sha256_file(npy_path),
                "result": entry.result,
            },
        )
