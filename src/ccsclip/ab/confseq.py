"""Anytime-valid confidence sequences for a mean, from n, sum and sum of squares only.

The boundary is the Gaussian-mixture asymptotic confidence sequence of Waudby-Smith, Arbour,
Sinha, Kennedy & Ramdas (2021), "Time-uniform central limit theory and asymptotic confidence
sequences", arXiv:2103.06476, Section 2 (Robbins' normal mixture applied to the sample mean):

    mean_t +/- sqrt( 2 (t s^2 r^2 + 1) / (t^2 r^2) * log( sqrt(t s^2 r^2 + 1) / alpha ) )

with s^2 the sample variance and r > 0 a tuning constant. We set r = rho / s, i.e. we fix rho
in standardised ("intrinsic time") units, so the width is s / t * B(t) with
B(t) = sqrt(2 (t rho^2 + 1) / rho^2 * log(sqrt(t rho^2 + 1) / alpha)), and choose rho to make
the sequence tightest at t_opt observations (the paper's choice of rho for a target time):
rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / t_opt.

The guarantee is asymptotic: for i.i.d. observations with finite variance, the probability that
the sequence ever excludes the mean tends to at most alpha (tests/test_ab_statistics.py checks
it by simulation). There is no well-kept Python package with this boundary (confseq, the
authors' package, ships C++ sources without wheels for current Pythons), hence this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ccsclip.errors import InvalidInputError


@dataclass(frozen=True)
class Moments:
    """What the counters give for one arm and figure: n, sum and sum of squares.

    Scalars for the judge; numpy arrays (one element per simulated stream and look) for
    `sequence_half_width` in the coverage test and the benchmark.
    """

    n: float | np.ndarray
    total: float | np.ndarray
    squares: float | np.ndarray

    @classmethod
    def from_counters(
        cls, observations: float, positive: float, negative: float, squares: float
    ) -> Moments:
        """The exported contract: the sum is split in a positive and a negative part."""
        return cls(observations, positive - negative, squares)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """The (biased) sample variance; never negative despite rounding in the sums."""
        if self.n <= 0:
            return math.nan
        return max(self.squares / self.n - self.mean**2, 0.0)


def tuning(alpha: float, t_opt: float) -> float:
    """rho for a sequence tightest at t_opt observations (standardised units)."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / t_opt)


def half_width(n: ArrayLike, variance: ArrayLike, alpha: float, rho: float) -> Any:
    """Half-width of the level-alpha asymptotic confidence sequence after n observations.

    Element-wise on arrays (the coverage test and the benchmark follow many streams at once);
    infinite where n <= 0.
    """
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must lie in (0, 1), got {alpha}")
    n = np.asarray(n, dtype=float)
    safe = np.maximum(n, 1.0)
    grow = safe * rho**2 + 1.0
    bound = np.sqrt(2.0 * grow / rho**2 * np.log(np.sqrt(grow) / alpha))
    width = np.where(n > 0, np.sqrt(variance) * bound / safe, np.inf)
    return width[()] if width.ndim == 0 else width


@dataclass(frozen=True)
class Interval:
    """A closed interval; infinite ends when nothing is known yet."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def regularised_variance(moments: Moments, prior_points: tuple[float, ...]) -> Any:
    """The variance of the observations together with a few pseudo-observations.

    With 50 agreements out of 50 the sample variance is 0 and the sequence would collapse onto
    the mean; pseudo-observations at the ends of a figure's plausible range (0 and 1 for an
    agreement) keep it honest until the data says the spread is small (their weight fades as
    1/n). They enter the variance only, never the mean. Element-wise when the moments hold
    arrays.
    """
    n = np.asarray(moments.n, dtype=float) + len(prior_points)
    total = moments.total + math.fsum(prior_points)
    squares = moments.squares + math.fsum(p * p for p in prior_points)
    return np.maximum(squares / n - (total / n) ** 2, 0.0)


def sequence_half_width(
    moments: Moments, alpha: float, t_opt: float, prior_points: tuple[float, ...] = ()
) -> Any:
    """The half-width of one arm's confidence sequence at its current n (arrays: per element)."""
    variance = regularised_variance(moments, prior_points)
    return half_width(moments.n, variance, alpha, tuning(alpha, t_opt))


def bernoulli_bounds(moments: Moments, alpha: float, t_opt: float) -> tuple[Any, Any]:
    """(low, high) of the sequence for the mean of 0/1 observations (element-wise on arrays).

    The same boundary with the variance taken at the hypothesised mean, mu (1 - mu), instead of
    the sample variance: the set of mu with (mean - mu)^2 <= c^2 mu (1 - mu), c = B(n) / n, a
    quadratic in mu (the score, or Wilson, inversion). For 0/1 data the variance is a function
    of the mean, so nothing is estimated but the mean; near 0 or 1, where the plug-in variance
    is unreliable (no disagreement yet: variance 0), this keeps the coverage (the test checks
    agreements up to 0.99).
    """
    n = np.asarray(moments.n, dtype=float)
    safe = np.maximum(n, 1.0)
    mean = np.clip(np.asarray(moments.total, dtype=float) / safe, 0.0, 1.0)
    c2 = np.asarray(half_width(n, 1.0, alpha, tuning(alpha, t_opt))) ** 2
    finite = np.isfinite(c2)
    c2 = np.where(finite, c2, 0.0)
    a, b = 1.0 + c2, 2.0 * mean + c2
    root = np.sqrt(np.maximum(b * b - 4.0 * a * mean * mean, 0.0))
    low = np.where(finite, (b - root) / (2.0 * a), 0.0)
    high = np.where(finite, (b + root) / (2.0 * a), 1.0)
    return (low[()], high[()]) if low.ndim == 0 else (low, high)


def mean_sequence(
    moments: Moments, alpha: float, t_opt: float, prior_points: tuple[float, ...] = ()
) -> Interval:
    """The level-alpha confidence sequence for one arm's mean at its current n."""
    if moments.n <= 0:
        return Interval(-math.inf, math.inf)
    width = float(sequence_half_width(moments, alpha, t_opt, prior_points))
    return Interval(moments.mean - width, moments.mean + width)
