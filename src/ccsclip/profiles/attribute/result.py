"""The typed result of an attribution: what attribution.json is written from, and what the
printed table, the plot and the search's attribution stage read.

`to_dict()` is the attribution.json document (schema `ccsclip/attribution/v1`), key for key and
in the same order as before the result was typed; `AttributionResult.model_validate(json)` reads
one back. Definitions of every figure: docs/attribution.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ccsclip.profiles.intervals import Interval

RESULT_SCHEMA = "ccsclip/attribution/v1"


class _Typed(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class AttributedProbe(_Typed):
    """The probe and the part of its split that was attributed."""

    name: str
    path: str
    content_sha256: str
    part: str
    split: dict[str, Any] | None  # Split.to_dict() when a part of the split was attributed
    n_images: int
    n_queries: int


class RelevanceInfo(_Typed):
    """Which images a query should retrieve (`ccsclip.fairness.Relevance.to_dict`)."""

    column: str | None
    relevant: str


class Component(_Typed):
    """One component's part of the gaps: its share (95% interval) and first-order removal."""

    name: str
    kind: str
    layer: int | None
    share: Interval
    gap_rms: float
    removal: float
    gap_by_value: dict[str, float]
    favours: str


class LayerShares(_Typed):
    """A layer's heads (summed) and MLP shares."""

    layer: int
    head: Interval
    mlp: Interval


class TotalGap(_Typed):
    rms: float
    by_value: dict[str, float]
    favours: str


class SkewWithNull(_Typed):
    """The model's mean MaxSkew@K on the attributed images and its shuffled-attribute null."""

    value: float
    null: float


class Exactness(_Typed):
    max_abs_parts_minus_embedding: float
    dtype: str


class BootstrapInfo(_Typed):
    replicates: int
    seed: int
    resampled: str = "images and queries, with replacement"
    interval: str = "estimate ± 1.96 bootstrap SE"


def definition(centring: dict[str, str]) -> dict[str, Any]:
    """The definitions attribution.json carries beside its figures (docs/attribution.md)."""
    return {
        "gap": "gap(q,a) = mean score of relevant images with value a - mean over all "
        "relevant images of q",
        "share": "share_c = sum_{q,a} gap_c(q,a) gap(q,a) / sum_{q,a} gap(q,a)^2 "
        "(sums to 1 over components)",
        "parts": "direct terms of the unit image embedding, ln_post scale and norm frozen "
        "per image, each centred on its mean; the centring constants form 'constant'",
        "first_order": "mean-ablating c (scales frozen, no indirect effect) removes gap_c; "
        "'removal' = the relative change of sum gap^2 that follows (negative: fewer gaps)",
        "centring": centring,
    }


class AttributionResult(_Typed):
    """Where a bias probe's gaps live: shares per component, per kind, per layer."""

    schema_: str = Field(RESULT_SCHEMA, alias="schema")
    model: dict[str, Any]  # ModelSpec.to_dict()
    attribute: str
    probe: AttributedProbe
    relevance: RelevanceInfo
    definition: dict[str, Any]
    total_gap: TotalGap
    maxskew: dict[str, SkewWithNull]  # "@K" -> figure; empty when no K fits the part
    by_kind: dict[str, Interval]
    by_layer: list[LayerShares]
    components: list[Component]
    exactness: Exactness
    bootstrap: BootstrapInfo
    timing: dict[str, float] = Field(default_factory=dict)

    model_config = ConfigDict(frozen=True, populate_by_name=True, protected_namespaces=())
