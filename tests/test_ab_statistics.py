"""The judge's statistics: the confidence sequence's coverage under repeated looks (simulated),
known answers of the boundary, and the verdict rules (ccsclip.ab.confseq, ccsclip.ab.verdict).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ccsclip.ab.confseq import (
    Moments,
    bernoulli_bounds,
    half_width,
    mean_sequence,
    regularised_variance,
    sequence_half_width,
    tuning,
)
from ccsclip.ab.figures import EXCESS_SKEW, TOP1_AGREEMENT
from ccsclip.ab.verdict import JudgeSettings, decide, judge_figure
from ccsclip.errors import InvalidInputError

ALPHA = 0.05
MIN_SAMPLES = 200
STREAMS, LOOKS = 1000, 2000


def settings(**overrides) -> JudgeSettings:
    values = {"alpha": ALPHA, "min_samples": MIN_SAMPLES, "margins": {}, "full_model": "control"}
    return JudgeSettings(**{**values, **overrides})


def moments_of(values) -> Moments:
    values = np.asarray(values, dtype=float)
    return Moments(float(values.size), float(values.sum()), float((values**2).sum()))


# --- coverage under a look after every observation ------------------------------------------


def widths(alpha: float, prior: tuple[float, ...], s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The module's half-width at every n for cumulative sums s, q (streams x n)."""
    n = np.broadcast_to(np.arange(1, s.shape[1] + 1, dtype=float), s.shape)
    return sequence_half_width(Moments(n, s, q), alpha, MIN_SAMPLES, prior)


def ever_misses(draw, truth: float, prior: tuple[float, ...], alpha: float = ALPHA) -> float:
    """Share of streams whose sequence excludes the truth at any look n >= MIN_SAMPLES."""
    x = draw(np.random.default_rng(7), (STREAMS, LOOKS))
    s, q = np.cumsum(x, axis=1), np.cumsum(x * x, axis=1)
    mean = s / np.arange(1, LOOKS + 1)
    miss = np.abs(mean - truth) > widths(alpha, prior, s, q)
    return float(miss[:, MIN_SAMPLES - 1 :].any(axis=1).mean())


TOLERANCE = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / STREAMS)  # alpha within MC error


@pytest.mark.parametrize(
    ("name", "draw", "truth", "prior"),
    [
        ("excess skew, normal", lambda r, shape: r.normal(0.1, 0.3, shape), 0.1, (-0.5, 0.5)),
        ("excess skew, skewed", lambda r, shape: r.exponential(0.3, shape) - 0.2, 0.1, (-0.5, 0.5)),
        (
            "cosine near 1",
            lambda r, shape: np.clip(r.normal(0.97, 0.02, shape), 0, 1),
            0.97,
            (0, 1),
        ),
    ],
)
def test_coverage_holds_at_every_look(name, draw, truth, prior):
    missed = ever_misses(draw, truth, prior)
    assert missed <= TOLERANCE, f"{name}: {missed:.3f} of streams ever excluded the mean"


@pytest.mark.parametrize("agreement", [0.5, 0.9, 0.97, 0.99])
def test_zero_one_coverage_holds_at_every_look_up_to_099(agreement):
    x = (np.random.default_rng(13).random((STREAMS, LOOKS)) < agreement).astype(float)
    n = np.broadcast_to(np.arange(1, LOOKS + 1, dtype=float), x.shape)
    s = np.cumsum(x, axis=1)
    low, high = bernoulli_bounds(Moments(n, s, s), ALPHA, MIN_SAMPLES)
    missed = ((agreement < low) | (agreement > high))[:, MIN_SAMPLES - 1 :].any(axis=1).mean()
    assert missed <= TOLERANCE, f"agreement {agreement}: {missed:.3f} ever excluded"


def test_the_plug_in_variance_would_not_cover_agreements_near_1():
    """Why 0/1 figures get their own bounds: with the sample variance, 0.99 is missed often."""
    missed = ever_misses(
        lambda r, shape: (r.random(shape) < 0.99).astype(float), 0.99, TOP1_AGREEMENT.prior_points
    )
    assert missed > TOLERANCE


def test_a_fixed_sample_interval_looked_at_often_would_not():
    """The check is sharp: the 95 % fixed-n interval, looked at every step, misses far more."""
    x = np.random.default_rng(7).normal(0.0, 1.0, (STREAMS, LOOKS))
    n = np.arange(1, LOOKS + 1)
    mean = np.cumsum(x, axis=1) / n
    missed = (np.abs(mean) > 1.96 / np.sqrt(n))[:, MIN_SAMPLES - 1 :].any(axis=1).mean()
    assert missed > 3 * TOLERANCE


def test_union_of_two_arms_keeps_the_level_for_the_difference():
    """A/A: two arms at alpha/2 each; the difference's interval excludes 0 at most alpha."""
    rng = np.random.default_rng(11)
    a = rng.normal(0.2, 0.3, (STREAMS, LOOKS))
    b = rng.normal(0.2, 0.3, (STREAMS, LOOKS // 4))  # a 20 % canary: the arms grow unequally
    prior = EXCESS_SKEW.prior_points
    wa = widths(ALPHA / 2, prior, np.cumsum(a, 1), np.cumsum(a * a, 1))
    wb = widths(ALPHA / 2, prior, np.cumsum(b, 1), np.cumsum(b * b, 1))
    ma = np.cumsum(a, 1) / np.arange(1, LOOKS + 1)
    mb = np.cumsum(b, 1) / np.arange(1, LOOKS // 4 + 1)
    looks = np.arange(MIN_SAMPLES * 4, LOOKS)  # candidate n = look // 4 >= MIN_SAMPLES
    gap = np.abs(ma[:, looks] - mb[:, looks // 4 - 1])
    missed = (gap > wa[:, looks] + wb[:, looks // 4 - 1]).any(axis=1).mean()
    assert missed <= ALPHA / 2 + 3 * math.sqrt(ALPHA / 2 / STREAMS)  # conservative


# --- known answers -----------------------------------------------------------------------------


def test_boundary_known_answer():
    # rho^2 = (-2 ln .05 + ln(-2 ln .05 + 1)) / 100; worked out by hand to 4 digits: 0.3035.
    assert half_width(100, 1.0, 0.05, tuning(0.05, 100)) == pytest.approx(0.30352, abs=1e-5)
    # scale: sd 2 at n 400 is the sd-1 width at n 400 times 2
    assert half_width(400, 4.0, 0.05, tuning(0.05, 100)) == pytest.approx(
        2 * half_width(400, 1.0, 0.05, tuning(0.05, 100))
    )
    assert half_width(0, 1.0, 0.05, 1.0) == math.inf
    # wider than the fixed-n interval (the price of looking often), narrower as n grows
    assert half_width(100, 1.0, 0.05, tuning(0.05, 100)) > 1.96 / 10
    assert half_width(10_000, 1.0, 0.05, tuning(0.05, 100)) < 0.05


def test_zero_one_bounds_known_answers():
    perfect = Moments(50.0, 50.0, 50.0)  # 50 agreements out of 50: variance 0, yet
    low, high = bernoulli_bounds(perfect, 0.05, 100)
    assert high == pytest.approx(1.0) and 0.8 < low < 0.97
    # the score inversion solves (m - mu)^2 = c^2 mu (1 - mu): check the root at n = 400
    m, c = 0.9, half_width(400, 1.0, 0.05, tuning(0.05, 100))
    low, high = bernoulli_bounds(Moments(400.0, 360.0, 360.0), 0.05, 100)
    for mu in (low, high):
        assert (m - mu) ** 2 == pytest.approx(c**2 * mu * (1 - mu))
    assert low < m < high
    assert bernoulli_bounds(Moments(0.0, 0.0, 0.0), 0.05, 100) == (0.0, 1.0)


def test_a_zero_one_figure_that_is_not_zero_one_is_bad_input():
    halves = Moments(300.0, 150.0, 75.0)  # 300 observations of 0.5
    with pytest.raises(InvalidInputError, match="0 or 1"):
        judge_figure(TOP1_AGREEMENT, None, halves, ALPHA, settings())


def test_moments_from_the_counter_contract():
    values = [0.5, -0.25, 1.0, -1.0]
    positive, negative = 1.5, 1.25
    m = Moments.from_counters(4, positive, negative, sum(v * v for v in values))
    assert m.mean == pytest.approx(np.mean(values))
    assert m.variance == pytest.approx(np.var(values))
    assert math.isnan(Moments(0, 0, 0).mean)


def test_prior_points_keep_a_perfect_run_from_collapsing():
    perfect = Moments(50, 50.0, 50.0)  # 50 agreements out of 50
    assert perfect.variance == 0.0
    assert regularised_variance(perfect, (0.0, 1.0)) == pytest.approx(51 / 52 * (1 - 51 / 52))
    interval = mean_sequence(perfect, 0.05, 100, (0.0, 1.0))
    assert interval.low < 0.95 < interval.high


# --- verdicts ----------------------------------------------------------------------------------

rng = np.random.default_rng(3)
LOW_SKEW = moments_of(rng.normal(0.10, 0.2, 4000))
SAME_SKEW = moments_of(rng.normal(0.10, 0.2, 4000))
HIGH_SKEW = moments_of(rng.normal(0.40, 0.2, 4000))


def test_same_skew_passes_more_skew_fails():
    same = judge_figure(EXCESS_SKEW, LOW_SKEW, SAME_SKEW, ALPHA, settings())
    assert same.verdict == "pass" and same.harm_high <= 0.05
    worse = judge_figure(EXCESS_SKEW, LOW_SKEW, HIGH_SKEW, ALPHA, settings())
    assert worse.verdict == "fail" and worse.harm_low > 0.05
    assert worse.harm == pytest.approx(HIGH_SKEW.mean - LOW_SKEW.mean)
    better = judge_figure(EXCESS_SKEW, HIGH_SKEW, LOW_SKEW, ALPHA, settings())
    assert better.verdict == "pass" and better.harm < 0  # less skew than the control


def test_a_harm_near_the_margin_stays_undecided():
    near = moments_of(rng.normal(0.15, 0.2, 4000))  # 0.05 worse: right at the margin
    result = judge_figure(EXCESS_SKEW, LOW_SKEW, near, ALPHA, settings())
    assert result.verdict == "undecided"
    assert result.harm_low < 0.05 < result.harm_high


def test_minimum_sample_blocks_any_verdict():
    few = moments_of(rng.normal(0.9, 0.2, 150))
    result = judge_figure(EXCESS_SKEW, LOW_SKEW, few, ALPHA, settings())
    assert result.verdict == "undecided" and "minimum sample" in result.reason
    assert judge_figure(EXCESS_SKEW, LOW_SKEW, few, ALPHA, settings(min_samples=100)).verdict == (
        "fail"
    )


def test_full_model_control_is_exactly_one():
    agree = moments_of(rng.random(3000) < 0.99)
    result = judge_figure(TOP1_AGREEMENT, None, agree, ALPHA, settings())
    assert result.control.full_model and result.control.mean == 1.0
    assert result.verdict == "pass"
    assert result.harm == pytest.approx(1 - agree.mean)
    poor = moments_of(rng.random(3000) < 0.8)
    assert judge_figure(TOP1_AGREEMENT, None, poor, ALPHA, settings()).verdict == "fail"
    # no full model declared: a missing control is unknown, not 1
    unknown = judge_figure(TOP1_AGREEMENT, None, agree, ALPHA, settings(full_model="none"))
    assert unknown.verdict == "undecided" and unknown.control.mean is None
    # both full (A/A on the full model): nothing to lose
    both = judge_figure(TOP1_AGREEMENT, None, None, ALPHA, settings(full_model="both"))
    assert both.verdict == "pass" and both.harm == 0.0


def test_a_declared_full_model_with_shadow_series_is_bad_input():
    agree = moments_of(rng.random(300) < 0.9)
    with pytest.raises(InvalidInputError, match="--full-model none"):
        judge_figure(TOP1_AGREEMENT, agree, agree, ALPHA, settings())


def test_decision_rule():
    assert decide(["pass", "pass", "pass"]) == "promote"
    assert decide(["pass", "undecided", "fail"]) == "roll back"
    assert decide(["pass", "undecided"]) == "keep collecting"
    assert decide([]) == "keep collecting"


@pytest.mark.parametrize(
    "bad", [{"alpha": 0.0}, {"alpha": 1.0}, {"min_samples": 0}, {"margins": {"x": -0.1}}]
)
def test_settings_are_checked(bad):
    with pytest.raises(InvalidInputError):
        settings(**bad)
