"""Greedy (or beam) forward selection of heads on the cached direct-effect estimate.

At every step each candidate is added to each kept head set and scored on the search part:
the bias objective (mean MaxSkew@K over queries, mean over bias probes) and the mean accuracy
over accuracy probes. Among the sets that keep the accuracy drop within the constraint, the
`beam` with the lowest objective go on; the best set of each size is a point of the path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ccsclip.errors import InvalidInputError
from ccsclip.headref import Head
from ccsclip.profiles.search.batch_metrics import accuracy, max_skew
from ccsclip.profiles.search.data import ProbeData
from ccsclip.profiles.search.direct_cache import DirectCache

_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Constraint:
    """Mean accuracy may drop by at most `max_accuracy_drop` (a fraction: 0.01 = one point)."""

    max_accuracy_drop: float = 0.01
    max_heads: int = 8

    def __post_init__(self) -> None:
        if self.max_accuracy_drop < 0:
            raise InvalidInputError(
                f"max accuracy drop {self.max_accuracy_drop} is negative: no head set can "
                "raise accuracy by construction; use 0 or more (0.01 = one point)"
            )
        if self.max_heads < 1:
            raise InvalidInputError(f"max heads must be at least 1, got {self.max_heads}")

    def allows(self, baseline_accuracy: float, accuracy: float) -> bool:
        return baseline_accuracy - accuracy <= self.max_accuracy_drop + _TOLERANCE


@dataclass(frozen=True)
class PathPoint:
    """A head set with its estimated objective and accuracy on the search part (and the true
    ones when the step was verified)."""

    heads: tuple[Head, ...]
    objective: float
    accuracy: float
    true_objective: float | None = None
    true_accuracy: float | None = None


Verifier = Callable[[tuple[Head, ...]], tuple[float, float]]
"""(objective, accuracy) of a head set on the search part by true ablation."""


class Scorer:
    """Estimated objective and accuracy on the search part, for many candidates at once."""

    def __init__(
        self,
        probes: Sequence[ProbeData],
        caches: Sequence[DirectCache],
        k: int,
        chunk: int = 16,
    ) -> None:
        self.probes, self.caches, self.k, self.chunk = list(probes), list(caches), k, chunk
        self.heads = self.caches[0].heads
        self.evaluations = 0  # head sets scored (what true ablation would need a forward pass for)

    def _probe(self, probe: ProbeData, cache: DirectCache, base, candidates) -> torch.Tensor:
        rows = probe.rows("search")
        out = []
        for start in range(0, len(candidates), self.chunk):
            part = candidates[start : start + self.chunk]
            emb = cache.estimate_each(base, part, rows)  # [C, n, E]
            if probe.kind == "accuracy":
                out.append(accuracy(emb, probe.texts, probe.targets[rows]))
            else:
                scores = (emb @ probe.texts.T).transpose(1, 2)  # [C, Q, n]
                codes = probe.targets[rows]
                out.append(max_skew(scores, codes, len(probe.values), self.k).mean(-1))
        return torch.cat(out)

    @torch.inference_mode()
    def score(
        self, heads: Sequence[Head], candidates: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective [C], accuracy [C]) of `heads` plus each candidate index."""
        objective, accuracies = [], []
        self.evaluations += len(candidates)
        for probe, cache in zip(self.probes, self.caches, strict=True):
            base = cache.removed(list(heads))
            values = self._probe(probe, cache, base, list(candidates))
            (objective if probe.kind == "bias" else accuracies).append(values)
        return torch.stack(objective).mean(0), torch.stack(accuracies).mean(0)

    def baseline(self) -> PathPoint:
        """The empty set: the estimate is then the exact un-ablated forward."""
        objective, accuracies = [], []
        for probe, cache in zip(self.probes, self.caches, strict=True):
            emb = cache.estimate([])
            if probe.kind == "bias":
                objective.append(float(probe.skews(emb, "search", self.k).mean()))
            else:
                accuracies.append(probe.accuracy(emb, "search"))
        return PathPoint((), sum(objective) / len(objective), sum(accuracies) / len(accuracies))


def search_path(
    scorer: Scorer,
    constraint: Constraint,
    beam: int = 1,
    progress: bool = True,
    verify: Verifier | None = None,
    verify_top: int = 0,
) -> list[PathPoint]:
    """The best head set of each size, baseline first, until max_heads or no set is feasible.

    With `verify` and `verify_top` > 0, the `verify_top` best sets of each step by the estimate
    are measured by true ablation on the search part and re-ranked by the true objective among
    those that truly keep the constraint: a few forward passes per step that catch what the
    first-order estimate misses (accuracy lost through later layers).
    """
    if beam < 1:
        raise InvalidInputError(f"beam width must be at least 1, got {beam}")
    base = scorer.baseline()  # no head removed: the estimate is the exact forward pass
    base = PathPoint((), base.objective, base.accuracy, base.objective, base.accuracy)
    path, states = [base], [()]
    bar = tqdm(total=constraint.max_heads, desc="search", unit="head", disable=not progress)
    for step in range(constraint.max_heads):
        ranked = _step(scorer, constraint, base, states)
        if ranked and verify is not None and verify_top > 0:
            ranked = _verified(ranked[: max(beam, verify_top)], verify, constraint, base)
        if not ranked:
            if step == 0 and verify is None:
                raise InvalidInputError(_impossible(scorer, constraint, base))
            break
        states = [point.heads for point in ranked[:beam]]
        path.append(ranked[0])
        bar.update(1)
        bar.set_postfix(
            objective=f"{ranked[0].objective:.3f}", accuracy=f"{ranked[0].accuracy:.3f}"
        )
    bar.close()
    return path


def _step(
    scorer: Scorer, constraint: Constraint, base: PathPoint, states: list[tuple[Head, ...]]
) -> list[PathPoint]:
    """Every state plus every free candidate, estimated; feasible ones, best first."""
    pool: dict[tuple[Head, ...], tuple[float, float]] = {}
    for state in states:
        free = [i for i in range(len(scorer.heads)) if scorer.heads[i] not in state]
        if not free:
            continue
        objective, accuracies = scorer.score(state, free)
        for index, obj, acc in zip(free, objective.tolist(), accuracies.tolist(), strict=True):
            if constraint.allows(base.accuracy, acc):
                pool[tuple(sorted((*state, scorer.heads[index])))] = (obj, acc)
    ranked = sorted(pool.items(), key=lambda item: (item[1][0], -item[1][1], item[0]))
    return [PathPoint(heads, obj, acc) for heads, (obj, acc) in ranked]


def _verified(
    ranked: list[PathPoint], verify: Verifier, constraint: Constraint, base: PathPoint
) -> list[PathPoint]:
    """The sets re-measured by true ablation; truly feasible ones, best true objective first."""
    if base.true_accuracy is None:
        raise ValueError("the baseline of a verified search needs its true accuracy")
    checked = []
    for point in ranked:
        objective, accuracy = verify(point.heads)
        if constraint.allows(base.true_accuracy, accuracy):
            checked.append(
                PathPoint(point.heads, point.objective, point.accuracy, objective, accuracy)
            )
    return sorted(checked, key=lambda p: (p.true_objective, -p.true_accuracy, p.heads))


def _impossible(scorer: Scorer, constraint: Constraint, base: PathPoint) -> str:
    _, accuracies = scorer.score((), range(len(scorer.heads)))
    least = float(base.accuracy - accuracies.max())
    return (
        f"no head set meets the accuracy constraint: every single candidate head lowers mean "
        f"accuracy on the search part by at least {100 * least:.2f} points, the limit is "
        f"{100 * constraint.max_accuracy_drop:.2f}; raise --max-accuracy-drop or widen the "
        "candidates"
    )
