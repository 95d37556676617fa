"""The heads a search may prune: explicit names, the CCS table's heads, whole layers, or the N
heads with the largest shares of the bias gaps (`attribution:N`, from the attribution stage)."""

from __future__ import annotations

from collections.abc import Sequence

from ccsclip.errors import InvalidInputError
from ccsclip.headref import Head
from ccsclip.heads.layers import parse_layers
from ccsclip.models import ModelSpec
from ccsclip.profiles.attribute.reach import Reach
from ccsclip.profiles.rank.table import CcsTable
from ccsclip.profiles.schema import parse_head_names

PREFIX = "attribution:"


def attribution_request(candidates: Sequence[str]) -> int | None:
    """N of `--candidates attribution:N`, None for explicit heads; refuses a malformed N."""
    if len(candidates) != 1 or not candidates[0].startswith(PREFIX):
        if any(c.startswith(PREFIX) for c in candidates):
            raise InvalidInputError("--candidates attribution:N cannot be mixed with head names")
        return None
    text = candidates[0].removeprefix(PREFIX)
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"--candidates {candidates[0]!r}: N must be a positive integer")
    return int(text)


def parse_heads(names: Sequence[str]) -> list[Head]:
    """Head labels (`L5H1`) as heads; a clear error for a malformed one."""
    return [Head(layer, head) for layer, head in parse_head_names(list(names))]


def candidate_heads(
    spec: ModelSpec,
    candidates: Sequence[str],
    layers: str | None,
    table: CcsTable | None,
    reach: Reach | None,
) -> list[Head]:
    """The candidates, sorted: attribution's top N, explicit heads, the table's, or layers."""
    top = attribution_request(candidates)
    if top is not None:
        if reach is None:
            raise InvalidInputError(
                "--candidates attribution:N ranks heads by the attribution stage: add --attribution"
            )
        return sorted(parse_heads(reach.head_order[:top]))
    if candidates:
        heads = parse_heads(candidates)
        bad = [h.label for h in heads if h.layer >= spec.layers or h.head >= spec.heads]
        if bad:
            raise InvalidInputError(
                f"candidate heads {', '.join(bad)} do not exist (layers 0..{spec.layers - 1}, "
                f"heads 0..{spec.heads - 1})"
            )
        return sorted(set(heads))
    if layers is None and table is not None:
        return sorted(Head(row.layer, row.head) for row in table.heads)
    chosen = parse_layers(layers or f"last:{min(4, spec.layers)}", spec.layers)
    return [Head(layer, head) for layer in chosen for head in range(spec.heads)]
