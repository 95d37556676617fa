"""Live bias: the attribute distribution of what each profile actually returns, per search.

A live gallery may declare protected attributes among its item metadata at creation
(`bias_attributes: ["colour"]`). After every search on it, the top-k hits' values of each
declared attribute are counted against the gallery's own distribution, per serving profile:

* `ccsclip_live_topk_items_total{profile, gallery, attribute, value}`: hits with that value;
* `ccsclip_live_gallery_share{gallery, attribute, value}`: the value's share of the gallery;
* `ccsclip_live_maxskew{profile, gallery, attribute}`: a histogram of each search's MaxSkew@k;
* `ccsclip_live_null_maxskew_total{profile, gallery, attribute}`: the sum of each search's null,
  the expected MaxSkew@k of k items drawn at random without replacement from the same gallery
  (k = hits returned; `ccsclip.fairness.expected_max_skew`: exact where cheap, else seeded Monte
  Carlo; cached by (value counts, k));
* `ccsclip_live_excess_maxskew_{observations,positive,negative,squares}_total`: the excess,
  observed minus null, per search (metrics.SignedFigure: its mean and variance follow).

A ranking blind to the attribute scores a positive MaxSkew@k by chance at finite k; the excess
is what is left of it once that chance level is taken away (negative: more balanced than
chance). Skew@k of a value over a window is ln(its share of the hits / its share of the gallery),
i.e. `ln((rate(topk{value}) / sum rate(topk)) / gallery_share)` (the recording rule
`ccsclip:live_skew:ratio` in deploy/prometheus/ccsclip-rules.yaml); the definitions are those of
ccsclip.fairness (values absent from the top k never win the max). With the A/B overlay each
variant's pods serve their own profile, so the series compare the variants on the traffic each
served.

The gallery's distribution comes from the per-value counts its store keeps as it is written
(engine/galleries/counts.py): O(values) per search at any gallery size, for every backend.

What it cannot tell: a query that asks for an attribute on purpose ("a red car") is skewed by
design, and nothing here tells it from a neutral one; searches whose filter names a declared
attribute are not counted (the filter chose the distribution), and a filter on another key
narrows the hits but not the null (drawn from the whole gallery). Values outside the first
`MAX_VALUES` of the gallery are counted as `other` (bounded label cardinality); an item without
the attribute counts as `none`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ccsclip.engine.galleries.base import Hit
from ccsclip.engine.galleries.counts import value_label
from ccsclip.engine.galleries.protocol import Gallery
from ccsclip.fairness import expected_max_skew

log = logging.getLogger(__name__)

MAX_VALUES = 32
OTHER = "other"
_EPS = 1e-12  # as ccsclip.fairness


def lumped(counts: Mapping[str, int]) -> dict[str, int]:
    """The MAX_VALUES most common values' counts, the rest summed as `other`."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:MAX_VALUES])
    rest = sum(n for _, n in ranked[MAX_VALUES:])
    if rest:
        kept[OTHER] = kept.get(OTHER, 0) + rest
    return kept


def top_counts(hits: Sequence[Mapping[str, Any]], attribute: str, known: Mapping) -> Counter:
    """Hits per value of `attribute` (metadata mappings), unknown values as `other`."""
    out: Counter = Counter()
    for metadata in hits:
        value = value_label(metadata.get(attribute))
        out[value if value in known else OTHER] += 1
    return out


def skews(counts: Mapping[str, int], shares: Mapping[str, float]) -> dict[str, float]:
    """Skew@k per value present in the top k: ln(top share / gallery share)."""
    k = sum(counts.values())
    return {
        value: math.log((n / k) / (shares.get(value, 0.0) + _EPS))
        for value, n in counts.items()
        if n > 0
    }


class LiveBias:
    """Counts each search's hits into the live-bias series, against the gallery's kept counts."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self._published: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
        self._unsupported: set[str] = set()
        self._lock = threading.Lock()

    def _gallery_counts(self, gallery: Gallery, attributes: list[str]) -> dict | None:
        """{attribute: lumped value counts} of the gallery now; the share gauges follow them."""
        meta = gallery.meta
        try:
            kept = gallery.value_counts()
        except (NotImplementedError, AttributeError) as exc:
            if meta.name not in self._unsupported:
                log.info("live bias off for gallery %r: %s", meta.name, exc)
                self._unsupported.add(meta.name)
            return None
        counts = {a: lumped(kept.get(a) or {}) for a in attributes}
        if not all(counts.values()):
            return None
        key = (meta.name, meta.uid)
        with self._lock:
            changed = self._published.get(key) != counts
            if changed:
                self._published = {k: v for k, v in self._published.items() if k[0] != meta.name}
                self._published[key] = counts
        if changed:
            for attribute, per_value in counts.items():
                total = sum(per_value.values())
                for value, n in per_value.items():
                    self.metrics.live_gallery_share(meta.name, attribute, value, n / total)
        return counts

    def observe_search(
        self, gallery: Gallery, hits: Sequence[Hit], search_filter: Mapping | None
    ) -> None:
        """The gallery-search hook: never lets a metrics problem fail the search."""
        try:
            metadata = [h.metadata for h in hits]
            self.observe(gallery, gallery.meta.profile.name, metadata, search_filter)
        except Exception as exc:  # pragma: no cover - defensive: metrics never break a search
            log.warning("live bias not recorded for gallery %r: %s", gallery.meta.name, exc)

    def observe(
        self,
        gallery: Gallery,
        profile: str,
        hits: Sequence[Mapping[str, Any]],
        search_filter: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one search's hits (their metadata mappings) to the profile's series."""
        attributes = list(getattr(gallery.meta, "bias_attributes", None) or [])
        if search_filter:
            attributes = [a for a in attributes if a not in search_filter]
        if not attributes or not hits:
            return
        counts = self._gallery_counts(gallery, attributes)
        if counts is None:
            return
        name = gallery.meta.name
        for attribute in attributes:
            per_value = counts[attribute]
            total = sum(per_value.values())
            shares = {value: n / total for value, n in per_value.items()}
            top = top_counts(hits, attribute, shares)
            for value, n in top.items():
                self.metrics.live_topk(profile, name, attribute, value, n)
            observed = max(skews(top, shares).values())
            null = expected_max_skew(tuple(sorted(per_value.values())), min(len(hits), total))
            self.metrics.live_maxskew(profile, name, attribute, observed, null)
