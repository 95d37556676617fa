"""The judge's decision: per figure pass / fail / undecided, overall promote / roll back / keep
collecting (docs/ab.md, "How the judge decides").

The level alpha is split so that the whole decision keeps it: alpha / (number of judged
figures) per figure (Bonferroni), and within a figure alpha / 2 per estimated arm, whose two
confidence sequences then hold together (union bound). Each arm's sequence is uniform over its
own sample size, so a look at any pair of sample sizes, as often as one likes, stays covered:
this is why a union of per-arm sequences suits arms that receive traffic at different rates
(a 10 % canary), where a two-sample sequence would need the arms' observations paired in time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ccsclip.ab.confseq import Interval, Moments, bernoulli_bounds, mean_sequence
from ccsclip.ab.figures import COUNTER_SUFFIXES, Figure
from ccsclip.ab.selectors import Selector
from ccsclip.ab.sources import CounterSource
from ccsclip.errors import InvalidInputError

FigureVerdictName = Literal["pass", "fail", "undecided"]
Decision = Literal["promote", "roll back", "keep collecting"]
FullModel = Literal["control", "candidate", "both", "none"]
EXIT_CODES: dict[Decision, int] = {"promote": 0, "roll back": 1, "keep collecting": 3}


class ArmSummary(BaseModel):
    """One arm on one figure: sample size, mean and its confidence sequence (None: unknown)."""

    model_config = ConfigDict(extra="forbid")

    n: float
    mean: float | None
    low: float | None
    high: float | None
    full_model: bool


class FigureResult(BaseModel):
    """One figure's comparison. `harm` is how much worse the candidate is (docs/ab.md)."""

    model_config = ConfigDict(extra="forbid")

    figure: str
    title: str
    higher_is_better: bool
    margin: float
    alpha: float
    control: ArmSummary
    candidate: ArmSummary
    harm: float | None
    harm_low: float | None
    harm_high: float | None
    verdict: FigureVerdictName
    reason: str


class JudgeResult(BaseModel):
    """The judge's whole answer, as `--json` prints it."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    exit_code: int
    alpha: float
    min_samples: int
    control: str
    candidate: str
    source: str
    figures: list[FigureResult]


@dataclass(frozen=True)
class JudgeSettings:
    """What the user chose: level, minimum sample per arm, margins, which arm is the full model."""

    alpha: float
    min_samples: int
    margins: dict[str, float]
    full_model: FullModel

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInputError(f"--alpha must lie in (0, 1), got {self.alpha}")
        if self.min_samples < 1:
            raise InvalidInputError(f"--min-samples must be at least 1, got {self.min_samples}")
        for key, margin in self.margins.items():
            if not margin >= 0.0 or math.isinf(margin):
                raise InvalidInputError(f"the margin of {key} must be finite and >= 0")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def read_moments(source: CounterSource, selector: Selector, figure: Figure) -> Moments | None:
    """The arm's moments of one figure; None when its selector matches none of the counters."""
    sums = {s: source.counter_sum(selector, figure.counter(s)) for s in COUNTER_SUFFIXES}
    if all(v is None for v in sums.values()):
        return None
    return Moments.from_counters(*(sums[s] or 0.0 for s in COUNTER_SUFFIXES))


def _summary(
    moments: Moments | None, figure: Figure, alpha: float, settings: JudgeSettings
) -> tuple[ArmSummary, Interval]:
    """An estimated arm: its summary and its confidence sequence now."""
    if moments is None or moments.n <= 0:
        empty = ArmSummary(n=0.0, mean=None, low=None, high=None, full_model=False)
        return empty, Interval(-math.inf, math.inf)
    if figure.zero_one:
        _check_zero_one(moments, figure)
        low, high = bernoulli_bounds(moments, alpha, settings.min_samples)
        interval = Interval(float(low), float(high))
    else:
        interval = mean_sequence(moments, alpha, settings.min_samples, figure.prior_points)
    summary = ArmSummary(
        n=moments.n,
        mean=moments.mean,
        low=_finite(interval.low),
        high=_finite(interval.high),
        full_model=False,
    )
    return summary, interval


def _check_zero_one(moments: Moments, figure: Figure) -> None:
    """0/1 observations have x^2 = x: their squares and their sum agree."""
    if abs(moments.squares - moments.total) > 1e-6 * max(moments.n, 1.0):
        raise InvalidInputError(
            f"{figure.metric}: each observation must be 0 or 1, but its sum of squares "
            f"({moments.squares:g}) differs from its sum ({moments.total:g}): a server exports "
            "another figure under this name"
        )


def _full(value: float) -> tuple[ArmSummary, Interval]:
    return ArmSummary(n=0.0, mean=value, low=value, high=value, full_model=True), Interval(
        value, value
    )


def harm_bounds(control: Interval, candidate: Interval, higher_is_better: bool) -> tuple:
    """(low, high) of the harm (how much worse the candidate is) from the arms' intervals;
    element-wise when the intervals hold arrays (benchmarks/ab_judge.py)."""
    if higher_is_better:
        return control.low - candidate.high, control.high - candidate.low
    return candidate.low - control.high, candidate.high - control.low


def passes(high: Any, margin: float) -> Any:
    """Non-inferior: even the harm's upper bound is within the margin."""
    return high <= margin


def fails(low: Any, margin: float) -> Any:
    """Inferior: even the harm's lower bound exceeds the margin."""
    return low > margin


def judge_figure(
    figure: Figure,
    control: Moments | None,
    candidate: Moments | None,
    alpha: float,
    settings: JudgeSettings,
) -> FigureResult:
    """Compare one figure between the arms at level alpha."""
    margin = settings.margins.get(figure.key, figure.default_margin)
    full = {"control": False, "candidate": False}
    if figure.full_model_value is not None:
        for arm, moments in (("control", control), ("candidate", candidate)):
            if settings.full_model in {arm, "both"}:
                if moments is not None and moments.n > 0:
                    raise InvalidInputError(
                        f"the {arm} is declared the full model (--full-model "
                        f"{settings.full_model}) but has {figure.metric} series, which only "
                        "pruned profiles export: pass --full-model none (or the other arm)"
                    )
                full[arm] = True
    estimated = 2 - sum(full.values())
    arm_alpha = alpha / max(estimated, 1)
    value = figure.full_model_value
    arms = {"control": control, "candidate": candidate}
    (ctrl, ctrl_iv), (cand, cand_iv) = (
        _full(value) if full[arm] else _summary(arms[arm], figure, arm_alpha, settings)
        for arm in ("control", "candidate")
    )
    low, high = harm_bounds(ctrl_iv, cand_iv, figure.higher_is_better)
    point = None
    if ctrl.mean is not None and cand.mean is not None:
        point = harm_bounds(
            Interval(ctrl.mean, ctrl.mean), Interval(cand.mean, cand.mean), figure.higher_is_better
        )[0]
    short = [
        arm
        for arm, summary in (("control", ctrl), ("candidate", cand))
        if not summary.full_model and summary.n < settings.min_samples
    ]
    if short:
        verdict: FigureVerdictName = "undecided"
        reason = " and ".join(short) + f" below the minimum sample ({settings.min_samples})"
    elif passes(high, margin):
        verdict, reason = "pass", f"worse by at most {high:.4g} <= margin {margin:g}"
    elif fails(low, margin):
        verdict, reason = "fail", f"worse by at least {low:.4g} > margin {margin:g}"
    else:
        verdict = "undecided"
        reason = f"interval [{low:.4g}, {high:.4g}] contains the margin {margin:g}"
    return FigureResult(
        figure=figure.key,
        title=figure.title,
        higher_is_better=figure.higher_is_better,
        margin=margin,
        alpha=alpha,
        control=ctrl,
        candidate=cand,
        harm=point,
        harm_low=_finite(low),
        harm_high=_finite(high),
        verdict=verdict,
        reason=reason,
    )


def decide(verdicts: Sequence[FigureVerdictName]) -> Decision:
    """Roll back if any figure fails, promote if all pass, keep collecting otherwise."""
    if "fail" in verdicts:
        return "roll back"
    if verdicts and all(v == "pass" for v in verdicts):
        return "promote"
    return "keep collecting"


def judge(
    source: CounterSource,
    control: Selector,
    candidate: Selector,
    figures: Sequence[Figure],
    settings: JudgeSettings,
) -> JudgeResult:
    """Read both arms' counters from the source and decide."""
    if not figures:
        raise InvalidInputError("no figure to judge: give at least one --figure")
    moments = {
        arm: {f.key: read_moments(source, selector, f) for f in figures}
        for arm, selector in (("control", control), ("candidate", candidate))
    }
    for arm, selector in (("control", control), ("candidate", candidate)):
        if all(m is None for m in moments[arm].values()):
            names = ", ".join(f.counter("observations") for f in figures)
            raise InvalidInputError(
                f"the {arm} selector {selector} matches no series of {names} in "
                f"{source.describe()}: check its labels against the servers' /metrics"
            )
    alpha = settings.alpha / len(figures)
    results = [
        judge_figure(f, moments["control"][f.key], moments["candidate"][f.key], alpha, settings)
        for f in figures
    ]
    decision = decide([r.verdict for r in results])
    return JudgeResult(
        decision=decision,
        exit_code=EXIT_CODES[decision],
        alpha=settings.alpha,
        min_samples=settings.min_samples,
        control=str(control),
        candidate=str(candidate),
        source=source.describe(),
        figures=results,
    )
