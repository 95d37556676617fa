"""Attribute a bias probe's gaps to components: load, decompose, gaps, bootstrap, one result.

    attribute(loaded, AttributionOptions(...)) -> AttributionResult (attribution.json)

Definitions in `parts.py` and `gaps.py` and in docs/attribution.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ccsclip.errors import InvalidInputError
from ccsclip.fairness import infer_relevance, max_skew_at_k, shuffled_null_max_skew
from ccsclip.heads.stats import load_means
from ccsclip.models import LoadedModel
from ccsclip.probeset import load_probe, read_probe_spec
from ccsclip.profiles.attribute.gaps import Cells, bootstrap_shares, make_cells, point_estimate
from ccsclip.profiles.attribute.parts import KINDS, Parts, compute_parts
from ccsclip.profiles.attribute.result import (
    AttributedProbe,
    AttributionResult,
    BootstrapInfo,
    Component,
    Exactness,
    LayerShares,
    RelevanceInfo,
    SkewWithNull,
    TotalGap,
    definition,
)
from ccsclip.profiles.intervals import Interval, interval
from ccsclip.profiles.probe_checks import check_bias_spec
from ccsclip.profiles.probe_eval import load_image_tensor
from ccsclip.profiles.split import Split
from ccsclip.zeroshot import class_embeddings

PARTS = ("all", "search", "validation")


@dataclass
class AttributionOptions:
    """What to attribute: one bias probe, one attribute, a part of the split (default all)."""

    bias_probe: Path
    attribute: str
    relevance: str | None = None
    means: Path | None = None
    part: str = "all"
    split: Split | None = None
    replicates: int = 200
    seed: int = 0
    batch_size: int = 128

    def check(self) -> None:
        """Cheap checks before a model is loaded."""
        if self.part not in PARTS:
            raise InvalidInputError(f"part {self.part!r}: use one of {', '.join(PARTS)}")
        if self.replicates < 20:
            raise InvalidInputError(f"--bootstrap {self.replicates}: use at least 20 resamples")
        check_bias_spec(self.bias_probe, read_probe_spec(self.bias_probe), self.attribute)


@dataclass
class Attributed:
    """Everything the result is made of (kept for callers that need the raw tensors)."""

    parts: Parts
    texts: torch.Tensor
    values: tuple[str, ...]
    gaps: torch.Tensor  # [Q, A, C]
    mask: torch.Tensor  # [Q, A]
    shares: torch.Tensor  # [C]
    replicates: torch.Tensor  # [B, C]


@dataclass
class Context:
    """What the figures are about: the probe and part, relevance, each image's metadata, the
    cells (group x value) and the Ks that fit the part."""

    probe: AttributedProbe
    relevance: RelevanceInfo
    metadata: list[dict[str, str]]
    cells: Cells
    ks: list[int]


def _rows(probe, options: AttributionOptions) -> np.ndarray:
    everything = np.arange(len(probe.rows))
    if options.part == "all":
        return everything
    search, validation = (options.split or Split()).probe_parts(probe)
    return search if options.part == "search" else validation


def compute(loaded: LoadedModel, options: AttributionOptions) -> tuple[Attributed, Context]:
    """Decompose the probe's images, split every gap into parts, bootstrap the shares."""
    options.check()
    probe = load_probe(options.bias_probe)
    check_bias_spec(options.bias_probe, probe.spec, options.attribute)
    queries = probe.spec.queries
    names = [q.name for q in queries]
    all_rows = [attrs for _, attrs in probe.rows]
    relevance = infer_relevance(names, all_rows, options.attribute, options.relevance)
    rows = _rows(probe, options)
    metadata = [all_rows[i] for i in rows]
    cells, values = make_cells(
        relevance.image_groups(metadata),
        [attrs[options.attribute] for attrs in metadata],
        list(relevance.query_values),
        names,
    )
    images = load_image_tensor([probe.rows[i][0] for i in rows], loaded.preprocess)
    texts = class_embeddings(
        loaded.model, loaded.tokenizer, [q.text for q in queries], probe.spec.templates
    ).double()
    means = load_means(options.means) if options.means is not None else None
    parts = compute_parts(loaded.model, images, means, options.batch_size)
    gaps, mask, share = point_estimate(parts.terms, texts, cells)
    reps = bootstrap_shares(parts.terms, texts, cells, options.replicates, options.seed)
    context = Context(
        probe=AttributedProbe(
            name=probe.name,
            path=str(options.bias_probe),
            content_sha256=probe.spec.content_sha256,
            part=options.part,
            split=(options.split or Split()).to_dict() if options.part != "all" else None,
            n_images=len(rows),
            n_queries=len(queries),
        ),
        relevance=RelevanceInfo.model_validate(relevance.to_dict()),
        metadata=metadata,
        cells=cells,
        ks=[k for k in probe.spec.k if k <= len(rows)],
    )
    return Attributed(parts, texts, values, gaps, mask, share, reps), context


def _grouped(attributed: Attributed, select: Sequence[bool]) -> tuple[float, torch.Tensor]:
    chosen = torch.tensor(list(select))
    return float(attributed.shares[chosen].sum()), attributed.replicates[:, chosen].sum(1)


def _interval(value: float, reps: torch.Tensor) -> Interval:
    return Interval(**interval(value, reps.numpy()))


def _maxskew(attributed: Attributed, context: Context, attribute: str) -> dict[str, SkewWithNull]:
    """The model's MaxSkew@K on the attributed images with its null beside it."""
    scores = (attributed.texts @ attributed.parts.embedding.T).numpy()  # [Q, N]
    column = [attrs[attribute] for attrs in context.metadata]
    cells = context.cells
    masks = (cells.query_group[:, None] == cells.image_group[None, :]).numpy()
    ks = context.ks
    if not ks:
        return {}
    nulls = shuffled_null_max_skew(scores, column, masks, ks)
    return {
        f"@{k}": SkewWithNull(
            value=float(np.mean([max_skew_at_k(row, column, k) for row in scores])),
            null=nulls[k],
        )
        for k in ks
    }


def summarise(
    loaded: LoadedModel, options: AttributionOptions, attributed: Attributed, context: Context
) -> AttributionResult:
    """The result: shares per component, per kind, per layer (95% intervals), gaps by value."""
    parts = attributed.parts
    gaps, mask = attributed.gaps, attributed.mask
    total = gaps.sum(-1)  # [Q, A]
    valid = mask.to(gaps)
    per_value = (gaps * valid[..., None]).sum(0) / valid.sum(0).clamp(min=1)[:, None]  # [A, C]
    total_by_value = (total * valid).sum(0) / valid.sum(0).clamp(min=1)
    rms = ((gaps**2) * valid[..., None]).sum((0, 1)) / valid.sum()
    total_ms = float(((total**2) * valid).sum() / valid.sum())
    components = []
    for c, name in enumerate(parts.names):
        favoured = int(per_value[:, c].argmax())
        components.append(
            Component(
                name=name,
                kind=parts.kinds[c],
                layer=parts.layers[c],
                share=_interval(float(attributed.shares[c]), attributed.replicates[:, c]),
                gap_rms=float(rms[c].sqrt()),
                # first order: sum gap^2 after mean-ablating c alone, relative change
                removal=float(rms[c] / total_ms - 2 * attributed.shares[c]),
                gap_by_value={v: float(per_value[a, c]) for a, v in enumerate(attributed.values)},
                favours=attributed.values[favoured],
            )
        )
    by_kind = {
        kind: _interval(*_grouped(attributed, [k == kind for k in parts.kinds])) for kind in KINDS
    }
    layers = sorted({layer for layer in parts.layers if layer is not None})
    by_layer = []
    for layer in layers:
        shares = {}
        for kind in ("head", "mlp"):
            select = [
                k == kind and i == layer for k, i in zip(parts.kinds, parts.layers, strict=True)
            ]
            shares[kind] = _interval(*_grouped(attributed, select))
        by_layer.append(LayerShares(layer=layer, **shares))
    exact = (parts.terms.sum(1) - parts.embedding).abs().max()
    return AttributionResult(
        model=loaded.spec.to_dict(),
        attribute=options.attribute,
        probe=context.probe,
        relevance=context.relevance,
        definition=definition(parts.centring),
        total_gap=TotalGap(
            rms=total_ms**0.5,
            by_value={v: float(total_by_value[a]) for a, v in enumerate(attributed.values)},
            favours=attributed.values[int(total_by_value.argmax())],
        ),
        maxskew=_maxskew(attributed, context, options.attribute),
        by_kind=by_kind,
        by_layer=by_layer,
        components=components,
        exactness=Exactness(
            max_abs_parts_minus_embedding=float(exact),
            dtype=str(parts.terms.dtype).removeprefix("torch."),
        ),
        bootstrap=BootstrapInfo(replicates=options.replicates, seed=options.seed),
    )


def attribute(loaded: LoadedModel, options: AttributionOptions) -> AttributionResult:
    """compute + summarise, with the wall time."""
    start = time.perf_counter()
    attributed, context = compute(loaded, options)
    result = summarise(loaded, options, attributed, context)
    return result.model_copy(update={"timing": {"total_s": time.perf_counter() - start}})
