"""Stored probe results: a probe's full result for a profile is computed once, then read back.

A probe's result with a profile is a function of the profile's ONNX file (its sha256 in the
bundle manifest) and the probe (the sha256 of its probe.yaml, which itself pins the sha256 of
every image): nothing else changes it while both stay. So it is computed once (at export, baked
into the bundle: `BakedResults`; else at the first start) and stored here, keyed by both hashes,
with the canary's reference: the embeddings and top-1 class (or query) of every image of the probe,
of which each periodic round re-embeds and compares a share sized by the CPU budget
(service/probes.py).

One entry is two files, `<key>.npy` (the reference embeddings, float32, read with
allow_pickle=False) and `<key>.json` (the result, the subsample's indices and top-1, the hashes
of the key and the sha256 of the .npy). Both are written atomically, the .npy first; an entry
whose key fields or .npy hash do not match is ignored (logged) and recomputed. Two servers may
share the folder: the same key always means the same content. A bundle's baked results are such
a folder, each file's sha256 also in the manifest (`BakedResults` checks both).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccsclip.bundle import PROBE_RESULTS_DIR, BakedProbeResult, Manifest
from ccsclip.engine.engine import Engine
from ccsclip.engine.probes import prepare_probe, run_probe_embeddings, top1
from ccsclip.fileio import atomic_path, atomic_write_json, sha256_file
from ccsclip.service.settings import PROBE_FILE

log = logging.getLogger(__name__)
SCHEMA = "ccsclip-probe-result/2"  # /2: the reference holds every image (/1: a fixed subsample)


def default_root() -> Path:
    """`$XDG_CACHE_HOME/ccsclip/probe-results` (else `~/.cache/...`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccsclip" / "probe-results"


def probe_sha256(directory: Path) -> str:
    """The probe's identity: sha256 of its probe.yaml (which names its content's sha256)."""
    return sha256_file(Path(directory) / PROBE_FILE)


def entry_key(profile_sha256: str, probe_sha: str) -> str:
    return f"{profile_sha256[:20]}-{probe_sha[:20]}-all"


@dataclass
class Entry:
    """A probe's full result with a profile and the canary's reference."""

    result: dict[str, Any]  # as ccsclip.engine.probes.run_probe
    indices: np.ndarray  # int64 [n]: the images of the reference (positions in the probe)
    reference: np.ndarray  # float32 [n, E]: their embeddings when the result was computed
    top1: np.ndarray  # int64 [n]: their best class / query then


def full_entry(engine: Engine, directory: Path, profile: str, batch_size: int = 64) -> Entry:
    """Compute a probe's full result with a profile and keep every image as the reference."""
    result, embeddings = run_probe_embeddings(engine, directory, profile, batch_size=batch_size)
    prepared = prepare_probe(engine, directory)
    indices = np.arange(len(embeddings), dtype=np.int64)
    return Entry(result, indices, embeddings, top1(prepared, embeddings))


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
                "n_reference": len(entry.indices),
                "indices": entry.indices.tolist(),
                "top1": entry.top1.tolist(),
                "reference_sha256": sha256_file(npy_path),
                "result": entry.result,
            },
        )


class BakedResults:
    """A bundle's baked probe results: an entry is used only if its files match the manifest."""

    def __init__(self, bundle: Path, manifest: Manifest) -> None:
        self.bundle = Path(bundle)
        self.cache = ProbeCache(self.bundle / PROBE_RESULTS_DIR)
        self.entries = {(b.key, b.probe_sha256): b for b in manifest.probe_results}

    def __len__(self) -> int:
        return len(self.entries)

    def has(self, key: str, probe_sha: str) -> bool:
        return (key, probe_sha) in self.entries

    def load(self, key: str, profile_sha256: str, probe_sha: str) -> Entry | None:
        """The baked entry; None when absent, or (logged: refused) when a file was changed."""
        baked = self.entries.get((key, probe_sha))
        if baked is None:
            return None
        for ref in baked.files:
            path = self.cache.root / ref.file
            actual = sha256_file(path) if path.is_file() else "missing"
            if actual != ref.sha256:
                log.warning(
                    "baked probe result %s/%s (profile %s, probe %s) refused: sha256 %s, the "
                    "manifest says %s; computing it again",
                    PROBE_RESULTS_DIR,
                    ref.file,
                    baked.profile,
                    baked.probe,
                    actual[:12],
                    ref.sha256[:12],
                )
                return None
        return self.cache.load(key, profile_sha256, probe_sha)


def bake_entry(
    root: Path, engine: Engine, directory: Path, profile: str, batch_size: int = 64
) -> BakedProbeResult:
    """Compute a profile's full result on a probe into `root` (a bundle's probe-results/)."""
    sha = {p.name: p.sha256 for p in engine.profiles()}[profile]
    probe_sha = probe_sha256(directory)
    key = entry_key(sha, probe_sha)
    entry = full_entry(engine, directory, profile, batch_size)
    ProbeCache(root).store(key, sha, probe_sha, entry)
    files = [f"{key}.json", f"{key}.npy"]
    return BakedProbeResult(
        profile=profile,
        probe=entry.result["probe"],
        probe_sha256=probe_sha,
        key=key,
        files=[{"file": f, "sha256": sha256_file(root / f)} for f in files],
    )
