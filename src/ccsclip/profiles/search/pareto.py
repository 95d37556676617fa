"""The accuracy-bias front of a search: which points are Pareto-optimal, pareto.json, the plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ccsclip.fileio import atomic_path, atomic_write_json
from ccsclip.profiles.search.result import Measured, SearchResult


def pareto_flags(points: Sequence[tuple[float, float]]) -> list[bool]:
    """(accuracy, bias) pairs -> True where no other point has accuracy >= and bias <= with one
    of them strict (higher accuracy and lower bias are better)."""
    flags = []
    for acc, bias in points:
        dominated = any((a >= acc and b <= bias) and (a > acc or b < bias) for a, b in points)
        flags.append(not dominated)
    return flags


def write_pareto_json(path: Path, result: SearchResult) -> Path:
    atomic_write_json(path, result.to_dict())
    return path


def _xy(entry: Measured, key: str) -> tuple[float, float, float, float]:
    val = entry.validation
    return (
        val[key]["value"],
        val["accuracy"]["value"],
        val[key]["half_width"],
        val["accuracy"]["half_width"],
    )


_ARM_STYLE = {
    "high-ccs": ("s", "tab:red"),
    "low-ccs": ("v", "tab:purple"),
    "random": ("x", "tab:gray"),
}


def plot_pareto(result: SearchResult, path: Path) -> Path:
    """Validation accuracy against validation MaxSkew: the search path (front marked), the arms
    at the same sizes, the baseline; 95% bootstrap error bars on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = result.metric
    fig, ax = plt.subplots(figsize=(7, 5))
    base = result.baseline
    x, y, xe, ye = _xy(base, key)
    ax.errorbar(x, y, xerr=xe, yerr=ye, fmt="*", ms=14, color="black", capsize=3, label="baseline")
    ax.axhline(
        y - result.constraint.max_accuracy_drop,
        ls=":",
        color="black",
        lw=1,
        label="accuracy constraint",
    )
    path_points = result.points
    xs = [x] + [_xy(p, key)[0] for p in path_points]
    ys = [y] + [_xy(p, key)[1] for p in path_points]
    ax.plot(xs, ys, "-", color="tab:blue", lw=1, alpha=0.6)
    for point in path_points:
        px, py, pxe, pye = _xy(point, key)
        face = "tab:blue" if point.pareto else "white"
        ax.errorbar(px, py, xerr=pxe, yerr=pye, fmt="o", color="tab:blue", mfc=face, capsize=2)
        ax.annotate(str(point.n_heads), (px, py), textcoords="offset points", xytext=(4, 4))
    seen: set[str] = set()
    for arm in result.arms:
        marker, colour = _ARM_STYLE.get(arm.arm, ("d", "tab:green"))
        ax_, ay, axe, aye = _xy(arm, key)
        label = f"{arm.arm} (same size)" if arm.arm not in seen else None
        seen.add(arm.arm)
        ax.errorbar(
            ax_, ay, xerr=axe, yerr=aye, fmt=marker, color=colour, alpha=0.6, capsize=2, label=label
        )
    chosen = result.chosen
    if chosen:
        cx, cy, _, _ = _xy(chosen, key)
        ax.scatter([cx], [cy], s=220, facecolors="none", edgecolors="tab:orange", lw=2, zorder=5)
        ax.plot([], [], "o", mfc="none", mec="tab:orange", label=f"chosen ({chosen.name})")
    ax.plot([], [], "o-", color="tab:blue", label="search path (filled: Pareto front)")
    ax.set_xlabel(f"validation {key} ({result.objective.attribute}), lower is fairer")
    ax.set_ylabel("validation mean zero-shot accuracy")
    ax.set_title("accuracy against bias: searched head sets and the paper's arms")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
