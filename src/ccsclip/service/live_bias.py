"""Live bias: the attribute distribution of what each profile actually returns, per search.

A live gallery may declare protected attributes among its item metadata at creation
(`bias_attributes: ["colour"]`). After every search on it, the top-k hits' values of each
declared attribute are counted against the gallery's own distribution, per serving profile:

* `ccsclip_live_topk_items_total{profile, gallery, attribute, value}`: hits with that value;
* `ccsclip_live_gallery_share{gallery, attribute, value}`: the value's share of the gallery;
* `ccsclip_live_maxskew{profile, gallery, attribute}`: a histogram of each search's MaxSkew@k.

Skew@k of a value over a window is ln(its share of the hits / its share of the gallery), i.e.
`ln((rate(topk{value}) / sum rate(topk)) / gallery_share)` (the recording rule
`ccsclip:live_skew:ratio` in deploy/prometheus/ccsclip-rules.yaml), and the mean MaxSkew@k is
`rate(_sum) / rate(_count)` of the histogram; the definitions are those of ccsclip.fairness
(values absent from the top k never win the max). With the A/B overlay each variant's pods serve
their own profile, so the series compare the variants on the traffic each served.

What it cannot tell: a query that asks for an attribute on purpose ("a red car") is skewed by
design, and nothing here tells it from a neutral one; searches whose filter names a declared
attribute are not counted (the filter chose the distribution). Values outside the first
`MAX_VALUES` seen in the gallery are counted as `other` (bounded label cardinality); an item
without the attribute counts as `none`. Backends that cannot list their metadata (milvus) are
skipped, with one log line.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

MAX_VALUES = 32
MISSING, OTHER = "none", "other"
_EPS = 1e-12  # as ccsclip.fairness


def value_label(value: Any) -> str:
    """A metadata value as a label (bools as true/false, as JSON writes them)."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def gallery_shares(metadata: Sequence[Mapping[str, Any]], attribute: str) -> dict[str, float]:
    """Each value's share of the gallery (at most MAX_VALUES values, the rest as `other`)."""
    counts = Counter(value_label(m.get(attribute)) for m in metadata)
    kept = [value for value, _ in counts.most_common(MAX_VALUES)]
    shares = {value: counts[value] / len(metadata) for value in kept}
    rest = sum(n for value, n in counts.items() if value not in shares)
    if rest:
        shares[OTHER] = rest / len(metadata)
    return shares


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
    """Counts each search's hits into the live-bias series; gallery shares cached per version."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self._shares: dict[tuple[str, str, Any], dict[str, dict[str, float]]] = {}
        self._unsupported: set[str] = set()
        self._lock = threading.Lock()

    def _gallery_shares(self, gallery: Any, attributes: list[str]) -> dict | None:
        meta = gallery.meta
        try:
            facts = gallery.info()
            version = (facts.seq, facts.generation, facts.count)
        except Exception:
            version = None
        key = (meta.name, meta.uid, version)
        with self._lock:
            cached = self._shares.get(key)
        if cached is not None and version is not None:
            return cached
        try:
            items = gallery.metadata()
        except (NotImplementedError, AttributeError) as exc:
            if meta.name not in self._unsupported:
                log.info("live bias off for gallery %r: %s", meta.name, exc)
                self._unsupported.add(meta.name)
            return None
        if not items:
            return None
        shares = {attribute: gallery_shares(items, attribute) for attribute in attributes}
        for attribute, per_value in shares.items():
            for value, share in per_value.items():
                self.metrics.live_gallery_share(meta.name, attribute, value, share)
        with self._lock:
            self._shares = {k: v for k, v in self._shares.items() if k[:2] != key[:2]}
            self._shares[key] = shares
        return shares

    def observe(
        self,
        gallery: Any,
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
        shares = self._gallery_shares(gallery, attributes)
        if shares is None:
            return
        name = gallery.meta.name
        for attribute in attributes:
            counts = top_counts(hits, attribute, shares[attribute])
            for value, n in counts.items():
                self.metrics.live_topk(profile, name, attribute, value, n)
            per_value = skews(counts, shares[attribute])
            self.metrics.live_maxskew(profile, name, attribute, max(per_value.values()))


_instances: dict[int, LiveBias] = {}


def observe_search(
    core: Any, gallery: Any, hits: Sequence[Any], search_filter: Mapping | None
) -> None:
    """The gallery-search hook: never lets a metrics problem fail the search."""
    try:
        live = _instances.get(id(core.metrics))
        if live is None:
            live = _instances.setdefault(id(core.metrics), LiveBias(core.metrics))
        live.observe(gallery, gallery.meta.profile.name, [h.metadata for h in hits], search_filter)
    except Exception as exc:  # pragma: no cover - defensive: metrics never break a search
        log.warning("live bias not recorded for gallery %r: %s", gallery.meta.name, exc)
