"""One way to name an attention head: (layer, head), 0-based, labelled `L{layer}H{head}`.

Profiles, the CCS table, the search, attribution, surgery and the bundle's manifest all address
heads this way; the label is what files and tables show, so it is formatted and parsed here only.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ccsclip.errors import InvalidInputError

_LABEL = re.compile(r"^L(\d+)H(\d+)$")


class Head(NamedTuple):
    """An attention head of the image tower, in the model's original numbering."""

    layer: int
    head: int

    @property
    def label(self) -> str:
        return f"L{self.layer}H{self.head}"

    @classmethod
    def parse(cls, label: str) -> Head:
        """`L2H7` -> Head(2, 7); a clear error for anything else."""
        match = _LABEL.match(label.strip())
        if match is None:
            raise ValueError(
                f"{label!r} is not a head label: write it as L<layer>H<head>, e.g. L2H7"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def check_exists(self, layers: int, heads: int, model: str | None = None) -> Head:
        """Return self if the model has this head, else a readable error naming the valid range.

        The one check of a head against a model's shape: ablation, surgery and the model spec
        all use it.
        """
        if not (0 <= self.layer < layers and 0 <= self.head < heads):
            where = f" in {model}" if model else ""
            raise InvalidInputError(
                f"head {self.label} does not exist{where}: "
                f"layers are 0..{layers - 1} and heads 0..{heads - 1}"
            )
        return self


def head_label(layer: int, head: int) -> str:
    """The label of (layer, head) without building a Head."""
    return Head(layer, head).label
