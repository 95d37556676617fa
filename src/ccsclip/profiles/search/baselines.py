"""The paper's arms cut to a given number of heads, for comparison with a searched head set.

- `high-ccs`: the n heads with the highest CCS (ties: larger share of direct-effect variance);
- `low-ccs`: the n with the lowest CCS (ties: smaller share), as the `low-matched` arm orders them;
- `random`: n heads drawn from the non-high heads (CCS below the table's `high`), one set per seed;
  from all candidates when there is no CCS table or too few non-high heads.
Only candidate heads are used, so every arm draws from the same heads as the search.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ccsclip.headref import Head
from ccsclip.profiles.rank.table import CcsTable


def _rows(table: CcsTable, candidates: Sequence[Head]):
    allowed = set(candidates)
    return [row for row in table.heads if (row.layer, row.head) in allowed]


def arm_heads(
    arm: str, n: int, candidates: Sequence[Head], table: CcsTable | None, seed: int | None = None
) -> tuple[Head, ...]:
    """The head set of `arm` with n heads (arms that need a CCS table need one)."""
    if arm in ("high-ccs", "low-ccs"):
        if table is None:
            raise ValueError(f"arm {arm} needs a CCS table")
        rows = _rows(table, candidates)
        if arm == "high-ccs":
            rows = sorted(rows, key=lambda r: (-r.ccs, -r.variance_share, r.layer, r.head))
        else:
            rows = sorted(rows, key=lambda r: (r.ccs, r.variance_share, r.layer, r.head))
        return tuple(sorted(Head(r.layer, r.head) for r in rows[:n]))
    if arm == "random":
        pool = sorted(candidates)
        if table is not None:
            high = {(r.layer, r.head) for r in table.heads if r.ccs >= table.thresholds.high}
            non_high = [h for h in pool if h not in high]
            pool = non_high if len(non_high) >= n else pool
        return tuple(sorted(random.Random(seed).sample(pool, min(n, len(pool)))))
    raise ValueError(f"unknown arm {arm!r}")


def arms_at(
    n: int, candidates: Sequence[Head], table: CcsTable | None, seeds: Sequence[int]
) -> list[tuple[str, int | None, tuple[Head, ...]]]:
    """(arm, seed, heads) of every comparison arm at size n."""
    out: list[tuple[str, int | None, tuple[Head, ...]]] = []
    if table is not None:
        out += [
            (arm, None, arm_heads(arm, n, candidates, table)) for arm in ("high-ccs", "low-ccs")
        ]
    out += [("random", seed, arm_heads("random", n, candidates, table, seed)) for seed in seeds]
    return out
