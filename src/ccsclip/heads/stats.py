"""Streaming statistics of head contributions and head outputs (docs/design.md §3).

Per analysed head: n, s = sum c and S = sum c c^T of its direct contribution c (float64), the only
inputs TextSpan needs. Per layer, head and position: the mean head output z, the ablation means.
Memory is O(L_a * H * E^2 + L * T * H * d) whatever the number of images; shards merge by addition
and `all_reduce` makes a torchrun job exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import atomic_path, atomic_write_json, sha256_file
from ccsclip.heads.decompose import decompose
from ccsclip.heads.resolve import resolve_heads

STATS_FILE = "stats.safetensors"
MEANS_FILE = "means.safetensors"
SIDECAR_FILE = "stats.json"


@dataclass
class HeadMoments:
    """First and second moments of each analysed head's direct contribution."""

    layers: tuple[int, ...]
    n: int
    s: torch.Tensor  # [La, H, E] float64
    S: torch.Tensor  # [La, H, E, E] float64

    @classmethod
    def zeros(cls, layers: Sequence[int], heads: int, embed_dim: int) -> HeadMoments:
        la = len(layers)
        return cls(
            tuple(layers),
            0,
            torch.zeros(la, heads, embed_dim, dtype=torch.float64),
            torch.zeros(la, heads, embed_dim, embed_dim, dtype=torch.float64),
        )

    def update(self, contributions: torch.Tensor) -> None:
        """Add a batch of contributions [B, La, H, E]."""
        c = contributions.detach().to(torch.float64)
        self.n += c.shape[0]
        self.s += c.sum(0)
        self.S += torch.einsum("blhe,blhf->lhef", c, c)

    def merge(self, other: HeadMoments) -> HeadMoments:
        if other.layers != self.layers:
            raise InvalidInputError(
                f"cannot merge moments of layers {other.layers} into {self.layers}"
            )
        return HeadMoments(self.layers, self.n + other.n, self.s + other.s, self.S + other.S)

    def head(self, layer: int, head: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(n, s, S) of one head, by original layer number."""
        index = self.layers.index(layer)
        return self.n, self.s[index, head], self.S[index, head]

    def covariance(self, layer: int, head: int) -> torch.Tensor:
        n, s, S = self.head(layer, head)
        mean = s / n
        return S / n - torch.outer(mean, mean)


@dataclass
class HeadMeans:
    """Running per-position sums of every head output z[l, t, h, :] over images."""

    count: int
    total: torch.Tensor  # [L, T, H, d] float64

    @classmethod
    def zeros(cls, layers: int, tokens: int, heads: int, head_dim: int) -> HeadMeans:
        return cls(0, torch.zeros(layers, tokens, heads, head_dim, dtype=torch.float64))

    def merge(self, other: HeadMeans) -> HeadMeans:
        return HeadMeans(self.count + other.count, self.total + other.total)

    def means(self) -> torch.Tensor:
        """Ablation means [L, T, H, d], float32."""
        if self.count == 0:
            raise InvalidInputError("no images were seen: ablation means are undefined")
        return (self.total / self.count).to(torch.float32)


def all_reduce(moments: HeadMoments, means: HeadMeans) -> None:
    """Sum the statistics of every process of an initialised torch.distributed group, in place."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    counts = torch.tensor([moments.n, means.count], dtype=torch.float64)
    for tensor in (counts, moments.s, moments.S, means.total):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    moments.n, means.count = int(counts[0].item()), int(counts[1].item())


def _z_sum_hooks(model: torch.nn.Module, means: HeadMeans) -> list[Any]:
    handles = []
    for layer, attn in enumerate(resolve_heads(model)):

        def hook(_module, _inputs, z, layer=layer):
            means.total[layer] += z.detach().to(torch.float64).sum(0)

        handles.append(attn.hook_z.register_forward_hook(hook))
    return handles


def accumulate(
    model: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    layers: Sequence[int],
    moments: HeadMoments,
    means: HeadMeans,
) -> None:
    """One decomposition pass over image batches, updating both statistics in place."""
    handles = _z_sum_hooks(model, means)
    try:
        with torch.inference_mode():
            for images in batches:
                decomposition = decompose(model, images, layers)
                moments.update(decomposition.heads)
                means.count += images.shape[0]
    finally:
        for handle in handles:
            handle.remove()


def canonical_header(path: str | Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place.

    safetensors keeps `metadata` in a hash map, so the order of its keys (and with it the file's
    sha256) changes from run to run; profiles record the means file's sha256, so equal
    statistics must give equal bytes. Same header, same length: the data offsets stay valid.
    """
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        if len(text) > size:  # cannot happen for the same keys and values; never corrupt a file
            raise IntegrityError(f"cannot canonicalise the safetensors header of {str(path)!r}")
        handle.seek(8)
        handle.write(text.ljust(size, b" "))


def save_statistics(
    out_dir: str | Path, moments: HeadMoments, means: HeadMeans, meta: dict[str, Any]
) -> dict[str, Any]:
    """Write stats.safetensors, means.safetensors and the stats.json sidecar, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = {
        "model": str(meta.get("model", "")),
        "weights_sha256": str(meta.get("weights_sha256", "")),
    }
    stats_tensors = {
        "n": torch.tensor([moments.n], dtype=torch.int64),
        "layers": torch.tensor(moments.layers, dtype=torch.int64),
        "s": moments.s.contiguous(),
        "S": moments.S.contiguous(),
    }
    means_tensors = {"means": means.means().contiguous(), "count": torch.tensor([means.count])}
    for name, tensors in ((STATS_FILE, stats_tensors), (MEANS_FILE, means_tensors)):
        with atomic_path(out / name) as tmp:
            save_file(tensors, str(tmp), metadata=header)
            canonical_header(tmp)
    sidecar = {
        **meta,
        "layers": list(moments.layers),
        "n_images": moments.n,
        "files": {name: sha256_file(out / name) for name in (STATS_FILE, MEANS_FILE)},
    }
    atomic_write_json(out / SIDECAR_FILE, sidecar)
    return sidecar


def read_sidecar(stats_dir: str | Path) -> dict[str, Any]:
    path = Path(stats_dir) / SIDECAR_FILE
    if not path.is_file():
        raise NotFoundError(f"no {SIDECAR_FILE} in {str(stats_dir)!r}: run `ccsclip stats` first")
    return json.loads(path.read_text())


def _checked(stats_dir: Path, name: str, sidecar: dict[str, Any]) -> Path:
    path = stats_dir / name
    if not path.is_file():
        raise NotFoundError(f"{str(path)!r} is missing: rerun `ccsclip stats`")
    expected = sidecar.get("files", {}).get(name)
    if expected != sha256_file(path):
        raise IntegrityError(
            f"{str(path)!r} does not match the sha256 in {SIDECAR_FILE}: rerun stats"
        )
    return path


def load_statistics(
    stats_dir: str | Path, weights_sha256: str | None = None
) -> tuple[HeadMoments, torch.Tensor, dict[str, Any]]:
    """Read moments, ablation means and sidecar, checking hashes (and the model, if given)."""
    stats_dir = Path(stats_dir)
    sidecar = read_sidecar(stats_dir)
    if weights_sha256 is not None and sidecar.get("weights_sha256") != weights_sha256:
        raise IntegrityError(
            f"statistics in {str(stats_dir)!r} were computed for model {sidecar.get('model')!r} "
            f"with other weights: rerun `ccsclip stats` for this model"
        )
    tensors = load_file(str(_checked(stats_dir, STATS_FILE, sidecar)))
    moments = HeadMoments(
        tuple(int(x) for x in tensors["layers"].tolist()),
        int(tensors["n"][0]),
        tensors["s"],
        tensors["S"],
    )
    means = load_means(stats_dir / MEANS_FILE, sidecar["files"][MEANS_FILE])
    return moments, means, sidecar


def load_means(path: str | Path, expected_sha256: str | None = None) -> torch.Tensor:
    """Ablation means [L, T, H, d]; the file's sha256 must match when one is expected."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"ablation means {str(path)!r} do not exist")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise IntegrityError(
            f"ablation means {str(path)!r} do not match sha256 {expected_sha256[:12]}…: "
            "the file was changed or belongs to another run"
        )
    return load_file(str(path))["means"]
