"""Per-value counts of a gallery's declared bias attributes, kept as the gallery is written.

Live bias (service/live_bias.py) compares each search's hits with the gallery's own distribution
of every attribute the gallery declares (`bias_attributes`). Keeping that distribution up to date
at each write (an upsert adds the new items' values and takes away those of the items it
replaces, a delete takes away the removed items' values) makes it O(values) per search at any
gallery size. Embedded galleries recount once when they load a snapshot and follow every log
record after that (local.py); Milvus galleries keep the counts in their registry record
(milvus.py).

A value is counted under its label: `none` for an item without the attribute, `true`/`false` for
booleans (as JSON writes them), str() of anything else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MISSING = "none"


def value_label(value: Any) -> str:
    """A metadata value as a label (bools as true/false, as JSON writes them)."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ValueCounts:
    """{attribute: {value label: live items}} for a fixed list of attributes (not thread-safe:
    the gallery that owns it serialises its writes)."""

    def __init__(self, attributes: Sequence[str]) -> None:
        self.attributes = tuple(attributes)
        self._counts: dict[str, Counter] = {a: Counter() for a in self.attributes}

    def __bool__(self) -> bool:
        return bool(self.attributes)

    def add(self, metadata: Iterable[Mapping[str, Any]], sign: int = 1) -> None:
        """Count items in (sign 1) or out (sign -1)."""
        if not self.attributes:
            return
        for item in metadata:
            for attribute in self.attributes:
                self._counts[attribute][value_label(item.get(attribute))] += sign

    def remove(self, metadata: Iterable[Mapping[str, Any]]) -> None:
        self.add(metadata, -1)

    def clear(self) -> None:
        for counter in self._counts.values():
            counter.clear()

    def to_dict(self) -> dict[str, dict[str, int]]:
        """A copy, values with no live item left out."""
        return {
            attribute: {value: n for value, n in sorted(counter.items()) if n > 0}
            for attribute, counter in self._counts.items()
        }

    @classmethod
    def of(cls, attributes: Sequence[str], metadata: Iterable[Mapping[str, Any]]) -> ValueCounts:
        """A recount over every item's metadata."""
        counts = cls(attributes)
        counts.add(metadata)
        return counts

    @classmethod
    def from_dict(
        cls, attributes: Sequence[str], stored: Mapping[str, Mapping[str, int]]
    ) -> ValueCounts:
        """Counts as `to_dict` wrote them (attributes not stored start empty)."""
        counts = cls(attributes)
        for attribute in counts.attributes:
            counts._counts[attribute].update(
                {str(v): int(n) for v, n in (stored.get(attribute) or {}).items()}
            )
        return counts
