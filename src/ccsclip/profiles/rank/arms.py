"""Arms: the head sets of the paper's experiments, as pruning profiles.

- `baseline`: nothing ablated.
- `high-ccs` (CCS >= high) and `low-ccs` (CCS <= low).
- `random`: as many heads as high-ccs, drawn from the non-high heads of the analysed layers, one
  profile per seed (`random-s<seed>`).
- `low-matched`: the equal-count control, as many heads as high-ccs with the lowest CCS (ties broken
  by the smaller share of direct-effect variance).
- `concept:<label>`: heads labelled with that concept and CCS >= moderate.
- `manual`: an explicit list of L<layer>H<head>.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ccsclip.errors import InvalidInputError
from ccsclip.profiles.rank.table import CcsTable, HeadRow
from ccsclip.profiles.schema import (
    ModelIdentity,
    Profile,
    ProfileAblation,
    ProfileHead,
    ProfileSelection,
    parse_head_names,
)

DEFAULT_ARMS = ("baseline", "high-ccs", "low-ccs", "low-matched", "random")


@dataclass(frozen=True)
class ArmContext:
    table: CcsTable
    table_file: str
    table_sha256: str
    means_file: str | None
    means_sha256: str | None
    mode: str = "mean"


def _high(table: CcsTable) -> list[HeadRow]:
    return [row for row in table.heads if row.ccs >= table.thresholds.high]


def _select(table: CcsTable, arm: str, seed: int | None, manual: Sequence[str]) -> list[HeadRow]:
    rows, t = table.heads, table.thresholds
    if arm == "baseline":
        return []
    if arm == "high-ccs":
        return _high(table)
    if arm == "low-ccs":
        return [row for row in rows if row.ccs <= t.low]
    if arm == "low-matched":
        ordered = sorted(rows, key=lambda r: (r.ccs, r.variance_share))
        return ordered[: len(_high(table))]
    if arm == "random":
        pool = [row for row in rows if row.ccs < t.high]
        count = min(len(_high(table)), len(pool))
        return random.Random(seed).sample(pool, count)
    if arm.startswith("concept:"):
        label = arm.removeprefix("concept:")
        chosen = [row for row in rows if row.concept == label and row.ccs >= t.moderate]
        if not chosen:
            concepts = sorted({row.concept for row in rows})
            raise InvalidInputError(
                f"no head has concept {label!r} with CCS >= {t.moderate}; "
                f"concepts in the table: {', '.join(concepts)}"
            )
        return chosen
    if arm == "manual":
        return [table.head(layer, head) for layer, head in parse_head_names(list(manual))]
    raise InvalidInputError(
        f"unknown arm {arm!r}: use baseline, high-ccs, low-ccs, low-matched, random, "
        "concept:<label> or manual"
    )


def _profile_name(arm: str, seed: int | None) -> str:
    name = arm.replace(":", "-").lower()
    return f"{name}-s{seed}" if seed is not None else name


def build_profile(
    ctx: ArmContext,
    arm: str,
    seed: int | None = None,
    manual: Sequence[str] = (),
    name: str | None = None,
) -> Profile:
    rows = _select(ctx.table, arm, seed, manual)
    mode = ctx.mode
    table = ctx.table
    return Profile(
        name=name or _profile_name(arm, seed),
        model=ModelIdentity(**table.model.model_dump()),
        ablation=ProfileAblation(
            mode=mode,
            means=ctx.means_file if mode == "mean" else None,
            means_sha256=ctx.means_sha256 if mode == "mean" else None,
        ),
        heads=[ProfileHead(layer=r.layer, head=r.head, ccs=r.ccs, concept=r.concept) for r in rows],
        selection=ProfileSelection(
            arm=arm,
            seed=seed,
            ccs_table=ctx.table_file,
            ccs_table_sha256=ctx.table_sha256,
            thresholds=table.thresholds.model_dump(),
        ),
    )


def build_arms(
    ctx: ArmContext, arms: Sequence[str], seeds: Sequence[int], manual: Sequence[str] = ()
) -> list[Profile]:
    """One profile per arm (per seed for `random`)."""
    profiles = []
    for arm in arms:
        if arm == "random":
            profiles.extend(build_profile(ctx, arm, seed) for seed in seeds)
        else:
            profiles.append(build_profile(ctx, arm, None, manual))
    return profiles
