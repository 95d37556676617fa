"""Accuracy and MaxSkew of a head set: true (ablated forward pass) or estimated (direct cache),
as point values or with bootstrap intervals, on a part of the split.

Metric names: `accuracy` is the mean over accuracy probes; `maxskew@K` the mean over bias probes
of the mean over their queries of MaxSkew@K for the searched attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ccsclip.headref import Head
from ccsclip.heads.ablation import Ablation, ablated
from ccsclip.profiles.intervals import interval
from ccsclip.profiles.search.bootstrap import Resampler, difference
from ccsclip.profiles.search.data import Part, ProbeData
from ccsclip.profiles.search.direct_cache import DirectCache
from ccsclip.zeroshot import encode_images


class Evaluator:
    """Scores head sets on fixed probes; `ks` are the K values reported for MaxSkew."""

    def __init__(
        self,
        model: nn.Module,
        probes: Sequence[ProbeData],
        ks: Sequence[int],
        mode: str,
        means: torch.Tensor | None,
        resampler: Resampler,
        caches: Sequence[DirectCache] | None = None,
        batch_size: int = 256,
    ) -> None:
        self.model, self.probes, self.ks = model, list(probes), list(ks)
        self.mode, self.means, self.resampler = mode, means, resampler
        self.caches, self.batch_size = caches, batch_size
        self.forward_images = 0  # images run through a true ablated forward pass (benchmarks)

    @torch.inference_mode()
    def true(self, heads: Sequence[Head], part: Part = "all") -> list[torch.Tensor]:
        """Embeddings [N, E] per probe under true soft ablation; rows outside `part` are 0."""
        out = []
        with ablated(self.model, Ablation.of(heads, self.mode, self.means)):
            for probe in self.probes:
                rows = probe.rows(part)
                emb = encode_images(self.model.eval(), probe.images[rows], self.batch_size)
                full = emb.new_zeros(probe.images.shape[0], emb.shape[1])
                full[rows] = emb.float()
                out.append(full)
                self.forward_images += len(rows)
        return out

    @torch.inference_mode()
    def estimate(self, heads: Sequence[Head]) -> list[torch.Tensor]:
        if self.caches is None:
            raise ValueError("no direct caches for estimates")
        return [cache.estimate(list(heads)) for cache in self.caches]

    def _groups(self) -> tuple[list[ProbeData], list[ProbeData]]:
        accuracy = [p for p in self.probes if p.kind == "accuracy"]
        bias = [p for p in self.probes if p.kind == "bias"]
        return accuracy, bias

    def points(self, embeddings: Sequence[torch.Tensor], part: Part) -> dict[str, float]:
        """Point values of every metric on a part."""
        by_name = dict(zip([p.name for p in self.probes], embeddings, strict=True))
        accuracy, bias = self._groups()
        out: dict[str, float] = {}
        if accuracy:
            values = [p.accuracy(by_name[p.name], part) for p in accuracy]
            out["accuracy"] = sum(values) / len(values)
        for k in self.ks if bias else ():
            values = [float(p.skews(by_name[p.name], part, k).mean()) for p in bias]
            out[f"maxskew@{k}"] = sum(values) / len(values)
        return out

    def replicates(self, embeddings: Sequence[torch.Tensor], part: Part) -> dict[str, torch.Tensor]:
        """Bootstrap replicates [B] of every metric on a part (same resamples for all sets)."""
        by_name = dict(zip([p.name for p in self.probes], embeddings, strict=True))
        accuracy, bias = self._groups()
        out: dict[str, torch.Tensor] = {}
        if accuracy:
            stack = [self.resampler.accuracy(p, by_name[p.name], part) for p in accuracy]
            out["accuracy"] = torch.stack(stack).mean(0)
        per_probe = [self.resampler.max_skews(p, by_name[p.name], part, self.ks) for p in bias]
        for k in self.ks if bias else ():
            out[f"maxskew@{k}"] = torch.stack([skews[k] for skews in per_probe]).mean(0)
        return out


def with_intervals(
    points: dict[str, float],
    replicates: dict[str, torch.Tensor],
    baseline: tuple[dict[str, float], dict[str, torch.Tensor]] | None = None,
) -> dict[str, dict[str, float]]:
    """{metric: interval} and, given the baseline's points and replicates, {metric: paired
    interval of the difference} under key `minus_baseline`."""
    out: dict[str, dict[str, float]] = {}
    for name, value in points.items():
        out[name] = interval(value, replicates[name])
        if name == "accuracy":  # a normal interval may cross 1; accuracy cannot
            out[name]["low"] = max(0.0, out[name]["low"])
            out[name]["high"] = min(1.0, out[name]["high"])
        if baseline is not None:
            base_points, base_reps = baseline
            out[name]["minus_baseline"] = difference(
                value, base_points[name], replicates[name], base_reps[name]
            )
    return out
