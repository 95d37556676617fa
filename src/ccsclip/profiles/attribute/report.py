"""attribution.json, the plot (per layer: heads against MLP) and the printed table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ccsclip.fileio import atomic_path, atomic_write_json
from ccsclip.profiles.attribute.result import AttributionResult
from ccsclip.profiles.intervals import Span


def _cell(stats: Span) -> str:
    return f"{stats.value:+.3f} [{stats.low:+.3f}, {stats.high:+.3f}]"


def print_attribution(result: AttributionResult, out: Console, top: int = 10) -> None:
    """Shares by kind, the top components, and MaxSkew with its null."""
    probe = result.probe
    gap = result.total_gap
    out.print(
        f"attribution of {result.attribute} gaps on {probe.name} ({probe.part}: "
        f"{probe.n_images} images, {probe.n_queries} queries; relevant: "
        f"{result.relevance.relevant}); gap rms {gap.rms:.4f}, favours {gap.favours}"
    )
    kinds = Table(title="share of the gaps by component type (95% intervals)")
    kinds.add_column("type")
    kinds.add_column("share", no_wrap=True)
    for kind, stats in result.by_kind.items():
        kinds.add_row(kind, _cell(stats))
    out.print(kinds)
    comps = Table(title=f"the {top} components with the largest shares")
    for column in ("component", "share", "gap rms", "favours", "removal (1st order)"):
        comps.add_column(column, no_wrap=True)
    ranked = sorted(result.components, key=lambda c: -c.share.value)
    for comp in ranked[:top]:
        comps.add_row(
            comp.name,
            _cell(comp.share),
            f"{comp.gap_rms:.4f}",
            comp.favours,
            f"{comp.removal:+.2f}",
        )
    out.print(comps)
    if result.maxskew:
        skews = ", ".join(
            f"{k} {v.value:.3f} (null {v.null:.3f})" for k, v in result.maxskew.items()
        )
        out.print(f"MaxSkew on these images: {skews}")
    out.print(
        "removal: first-order relative change of the summed squared gaps when the component "
        "alone is mean-ablated (negative: fewer gaps)"
    )


def plot_attribution(result: AttributionResult, path: Path) -> Path:
    """Per layer: the heads' summed share and the MLP's, with 95% error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result.by_layer
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for offset, kind, colour in ((-0.2, "head", "tab:blue"), (0.2, "mlp", "tab:orange")):
        values = [getattr(r, kind).value for r in rows]
        errors = [getattr(r, kind).half_width for r in rows]
        label = "heads (sum)" if kind == "head" else "MLP"
        ax.bar(x + offset, values, 0.4, yerr=errors, capsize=3, color=colour, label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [f"L{r.layer}" for r in rows])
    ax.set_ylabel("share of the gaps")
    other = sum(result.by_kind[k].value for k in ("embed", "constant", "remainder"))
    ax.set_title(
        f"where {result.attribute} gaps live on {result.probe.name}\n"
        f"(embed + constant + remainder: {other:+.3f})",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_attribution(result: AttributionResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "attribution.json"
    atomic_write_json(json_path, result.to_dict())
    return json_path, plot_attribution(result, out_dir / "attribution.png")
