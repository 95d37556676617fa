"""The live figures the judge compares, as the servers export them (docs/ab.md).

Each figure F is four counters: `F_observations_total`, `F_positive_total` (sum of max(x, 0)),
`F_negative_total` (sum of max(-x, 0)) and `F_squares_total` (sum of x^2), from which n, the
mean and the variance of the per-observation values follow.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER_SUFFIXES = ("observations", "positive", "negative", "squares")


@dataclass(frozen=True)
class Figure:
    """One judged figure: its metric, which way is better, and how it is judged by default.

    `higher_is_better` orients the harm: the judge works with harm = how much worse the
    candidate is than the control (candidate - control when lower is better, control -
    candidate otherwise), so a margin is always "at most this much worse".
    `full_model_value` is the value the full model has by definition (it agrees with itself);
    None where the figure has no such value. `prior_points` are pseudo-observations that only
    enter the variance (confseq.mean_sequence), so a run of identical values cannot collapse
    the interval.
    """

    key: str
    metric: str
    title: str
    higher_is_better: bool
    default_margin: float
    full_model_value: float | None
    prior_points: tuple[float, ...]
    zero_one: bool = False

    def counter(self, suffix: str) -> str:
        """The series name of one of the four counters, as a scrape spells it."""
        return f"{self.metric}_{suffix}_total"

    def counters(self) -> tuple[str, ...]:
        return tuple(self.counter(s) for s in COUNTER_SUFFIXES)


EXCESS_SKEW = Figure(
    key="excess_maxskew",
    metric="ccsclip_live_excess_maxskew",
    title="excess MaxSkew@k",
    higher_is_better=False,
    default_margin=0.05,
    full_model_value=None,
    prior_points=(-0.5, 0.5),
)
TOP1_AGREEMENT = Figure(
    key="top1_agreement",
    metric="ccsclip_shadow_top1_agreement",
    title="top-1 agreement with full model",
    higher_is_better=True,
    default_margin=0.05,
    full_model_value=1.0,
    prior_points=(),
    zero_one=True,
)
EMBED_COSINE = Figure(
    key="embed_cosine",
    metric="ccsclip_shadow_embed_cosine",
    title="embedding cosine to full model",
    higher_is_better=True,
    default_margin=0.05,
    full_model_value=1.0,
    prior_points=(0.0, 1.0),
)
FIGURES: tuple[Figure, ...] = (EXCESS_SKEW, TOP1_AGREEMENT, EMBED_COSINE)
FIGURES_BY_KEY = {f.key: f for f in FIGURES}
