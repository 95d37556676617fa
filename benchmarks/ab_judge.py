"""The judge's error rate and speed on simulated experiments, with a look after every search.

No servers. Per-search excess MaxSkew@k values come from a recording of a real service
(benchmarks/ab_record.py; `--record`), resampled with replacement, or else from a normal
distribution (`--sd`). Each experiment routes searches to the candidate with probability
`--split` and asks the judge's rule (ccsclip.ab.confseq, ccsclip.ab.verdict: one figure, level
alpha, minimum sample per arm, non-inferiority margin) after every search, stopping at the first
promote or roll back.

1. A/A: both arms draw from the same values. Prints the false roll-back rate (any roll back is
   false) with its 95 % Clopper-Pearson interval; the goal is at most alpha.
2. Effect size: the candidate's values shifted by delta (harm) for a grid of deltas; prints the
   share promoted / rolled back and the median number of searches to a decision (undecided
   experiments counted at the horizon), and plots it against delta (`--plot`).

    python benchmarks/ab_judge.py --record runs/ab/searches.json --profile baseline \
        --experiments 1000 --searches 4000 --plot runs/ab/searches_to_decision.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ccsclip.ab.confseq import Interval, Moments, sequence_half_width
from ccsclip.ab.figures import EXCESS_SKEW
from ccsclip.ab.verdict import fails, harm_bounds, passes


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k successes in n, by bisection on the binomial tails."""
    from math import comb

    def at_most(p: float) -> float:  # P(X <= k), decreasing in p
        return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))

    def bisect(f, target: float) -> float:  # f decreasing in p: the p with f(p) = target
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) > target else (lo, mid)
        return (lo + hi) / 2

    tail = (1 - level) / 2
    low = 0.0 if k == 0 else bisect(lambda p: at_most(p) - _at(k, n, p), 1 - tail)
    high = 1.0 if k == n else bisect(at_most, tail)
    return low, high


def _at(k: int, n: int, p: float) -> float:
    from math import comb

    return comb(n, k) * p**k * (1 - p) ** (n - k)


def run(
    draw_control,
    draw_candidate,
    experiments: int,
    searches: int,
    split: float,
    alpha: float,
    min_samples: int,
    margin: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(decision per experiment: +1 promote, -1 roll back, 0 none; searches to it)."""
    rng = np.random.default_rng(seed)
    to_candidate = rng.random((experiments, searches)) < split
    control_values = draw_control(rng, (experiments, searches))
    candidate_values = draw_candidate(rng, (experiments, searches))

    def arm(mask: np.ndarray, values: np.ndarray) -> Interval:
        x = np.where(mask, values, 0.0)
        n = np.cumsum(mask, axis=1).astype(float)
        moments = Moments(n, np.cumsum(x, axis=1), np.cumsum(x * x, axis=1))
        width = sequence_half_width(moments, alpha / 2, min_samples, EXCESS_SKEW.prior_points)
        mean = np.divide(moments.total, n, out=np.zeros_like(n), where=n > 0)
        return Interval(mean - width, mean + width), n

    (control, n_control), (candidate, n_candidate) = (
        arm(~to_candidate, control_values),
        arm(to_candidate, candidate_values),
    )
    low, high = harm_bounds(control, candidate, EXCESS_SKEW.higher_is_better)
    enough = (n_control >= min_samples) & (n_candidate >= min_samples)
    decided = enough & (passes(high, margin) | fails(low, margin))
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), -1)
    rows = np.arange(experiments)
    decision = np.where(first < 0, 0, np.where(fails(low[rows, first], margin), -1, 1))
    return decision, np.where(first < 0, searches, first + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, help="benchmarks/ab_record.py output")
    parser.add_argument("--profile", default="baseline", help="whose recorded values to use")
    parser.add_argument(
        "--candidate-profile", help="with --record: also judge this profile's recorded values"
    )
    parser.add_argument("--sd", type=float, default=0.25, help="without --record: normal sd")
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--searches", type=int, default=4000)
    parser.add_argument("--split", type=float, default=0.5, help="candidate's traffic share")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-samples", type=int, default=200)
    parser.add_argument("--margin", type=float, default=EXCESS_SKEW.default_margin)
    parser.add_argument("--deltas", default="0,0.025,0.05,0.075,0.1,0.15,0.2,0.3")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()

    if args.record:
        recorded = np.asarray(json.loads(args.record.read_text())["excess"][args.profile])
        source = f"{recorded.size} recorded searches of {args.profile} (mean "
        source += f"{recorded.mean():+.3f}, sd {recorded.std():.3f}), resampled"

        def draw(rng, shape, shift=0.0):
            return rng.choice(recorded, size=shape) + shift
    else:
        source = f"normal(0, {args.sd})"

        def draw(rng, shape, shift=0.0):
            return rng.normal(0.0, args.sd, shape) + shift

    common = dict(
        searches=args.searches,
        split=args.split,
        alpha=args.alpha,
        min_samples=args.min_samples,
        margin=args.margin,
    )
    print(f"values: {source}; {args.searches} searches per experiment, candidate share "
          f"{args.split:g}, alpha {args.alpha:g}, minimum {args.min_samples} per arm, margin "
          f"{args.margin:g}, a look after every search")  # fmt: skip
    decision, _ = run(draw, draw, experiments=args.experiments, seed=1, **common)
    rolled = int((decision == -1).sum())
    low, high = clopper_pearson(rolled, args.experiments)
    print(f"A/A: {rolled}/{args.experiments} rolled back = {rolled / args.experiments:.4f} "
          f"(95 % CI {low:.4f} to {high:.4f}; goal <= {args.alpha:g}); "
          f"{np.sum(decision == 1)} promoted, {np.sum(decision == 0)} undecided")  # fmt: skip

    if args.record and args.candidate_profile:
        other = np.asarray(json.loads(args.record.read_text())["excess"][args.candidate_profile])
        outcome, needed = run(
            draw,
            lambda rng, shape: rng.choice(other, size=shape),
            experiments=max(args.experiments // 5, 50),
            seed=99,
            **common,
        )
        print(f"{args.candidate_profile} (mean {other.mean():+.3f}) against {args.profile}: "
              f"promoted {np.mean(outcome == 1):.3f}, rolled back {np.mean(outcome == -1):.3f}, "
              f"median searches to a decision {np.median(needed):.0f}")  # fmt: skip

    deltas = [float(d) for d in args.deltas.split(",")]
    medians = []
    print("delta  promoted  rolled back  undecided  median searches to a decision")
    for index, delta in enumerate(deltas):
        outcome, needed = run(
            draw,
            lambda rng, shape, d=delta: draw(rng, shape, d),
            experiments=max(args.experiments // 5, 50),
            seed=10 + index,
            **common,
        )
        # Undecided experiments count at the horizon: the median is then a lower bound where
        # half or more never decided ("> horizon").
        median = float(np.median(needed))
        medians.append(median)
        shown = f"> {args.searches}" if median >= args.searches else f"{median:.0f}"
        print(f"{delta:5.3f}  {np.mean(outcome == 1):8.3f}  {np.mean(outcome == -1):11.3f}  "
              f"{np.mean(outcome == 0):9.3f}  {shown:>8}")  # fmt: skip
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(deltas, medians, marker="o")
        ax.axvline(args.margin, linestyle="--", color="grey", label=f"margin {args.margin:g}")
        ax.axhline(args.searches, linestyle=":", color="red", label="horizon (undecided)")
        ax.set_xlabel("harm: candidate's mean excess MaxSkew@k minus the control's")
        ax.set_ylabel("median searches to a decision (both arms)")
        ax.set_ylim(0, args.searches * 1.05)
        ax.set_title(f"ccsclip ab judge, alpha {args.alpha:g}, split {args.split:g}")
        ax.legend()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"plot -> {args.plot}")


if __name__ == "__main__":
    main()
