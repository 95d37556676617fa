"""How much of a bias head pruning can reach: attribution of several bias probes, summarised.

The search's attribution stage (`ccsclip search --attribution`) calls `reach` with one set of
options per bias probe (the search part of its split, never the validation part) and gets the
mean shares by component type, the heads ranked by share (`--candidates attribution:N`), and a
verdict that says plainly when most of the gaps are carried by MLPs, which head pruning cannot
remove. This module knows nothing of the search: the search imports attribution, never the
reverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from ccsclip.models import LoadedModel
from ccsclip.profiles.attribute.result import AttributionResult
from ccsclip.profiles.attribute.run import AttributionOptions, attribute
from ccsclip.profiles.intervals import Span

_HEADS_REACH = 0.5  # heads carrying less than half of the gaps: pruning cannot remove most


class ReachedComponent(BaseModel):
    """A component's share of the gaps (mean over the probes) and the value it favours."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    share: Span
    favours: str


class Reach(BaseModel):
    """What pareto.json's `attribution` holds (key for key)."""

    model_config = ConfigDict(frozen=True)

    part: str
    by_kind: dict[str, Span]
    top_components: list[ReachedComponent]
    head_order: list[str]  # every head, largest share first
    verdict: str
    heads_reach: bool  # heads carry at least half of the gaps

    def to_dict(self) -> dict[str, object]:
        return self.model_dump()


def _mean(spans: Sequence[Span]) -> Span:
    keys = ("value", "low", "high")
    return Span(**{key: float(np.mean([getattr(s, key) for s in spans])) for key in keys})


def summarise_reach(results: Sequence[AttributionResult], attribute: str, part: str) -> Reach:
    """Mean shares over the probes' results, the heads ranked, and the verdict."""
    first = results[0]
    by_kind = {kind: _mean([r.by_kind[kind] for r in results]) for kind in first.by_kind}
    components = [
        ReachedComponent(
            name=comp.name,
            kind=comp.kind,
            share=_mean([r.components[i].share for r in results]),
            favours=comp.favours,
        )
        for i, comp in enumerate(first.components)
    ]
    components.sort(key=lambda c: -c.share.value)
    head, mlp = by_kind["head"], by_kind["mlp"]
    if head.value < _HEADS_REACH and mlp.value > head.value:
        verdict = (
            f"head pruning cannot remove most of this bias: MLPs carry {_fmt(mlp)} of the "
            f"{attribute} gaps and heads only {_fmt(head)} ({part} part)"
        )
    else:
        verdict = (
            f"heads carry {_fmt(head)} of the {attribute} gaps and MLPs {_fmt(mlp)} "
            f"({part} part): head pruning can reach the heads' part"
        )
    return Reach(
        part=part,
        by_kind=by_kind,
        top_components=components[:10],
        head_order=[c.name for c in components if c.kind == "head"],
        verdict=verdict,
        heads_reach=head.value >= _HEADS_REACH,
    )


def reach(loaded: LoadedModel, per_probe: Sequence[AttributionOptions]) -> Reach:
    """Attribute every probe (same attribute and part) and summarise where the bias lives."""
    results = [attribute(loaded, options) for options in per_probe]
    return summarise_reach(results, per_probe[0].attribute, per_probe[0].part)


def _fmt(stats: Span) -> str:
    return f"{stats.value:.2f} [{stats.low:.2f}, {stats.high:.2f}]"
