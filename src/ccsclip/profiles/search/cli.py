"""`ccsclip search`: the pruning profile with the best accuracy-bias trade-off, held out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ccsclip.profiles.search.result import SearchResult

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)  # wrapped numbers are unreadable


def search(
    model: Annotated[
        str, typer.Option("--model", "-m", help="open_clip name, hf-hub:ID or local-dir:PATH")
    ],
    probes: Annotated[
        list[Path], typer.Option("--probe", help="accuracy probe folder (repeat): the constraint")
    ],
    bias_probes: Annotated[
        list[Path], typer.Option("--bias-probe", help="bias probe folder (repeat): the objective")
    ],
    attribute: Annotated[str, typer.Option(help="protected attribute of the bias probes")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for profiles, pareto.json/png")],
    pretrained: Annotated[
        str | None, typer.Option(help="open_clip tag, checkpoint, 'embedded' or none (random)")
    ] = None,
    means: Annotated[
        Path | None, typer.Option(help="ablation means (stats/means.safetensors of `rank`)")
    ] = None,
    ccs: Annotated[
        Path | None, typer.Option(help="ccs.json: candidates = its heads; enables CCS arms")
    ] = None,
    mode: Annotated[str, typer.Option(help="ablation mode: mean or zero")] = "mean",
    k: Annotated[
        int | None, typer.Option(help="MaxSkew@K of the objective (default: largest K listed)")
    ] = None,
    max_accuracy_drop: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="allowed drop of mean accuracy (0.01 = 1 pt)")
    ] = 0.01,
    max_heads: Annotated[int, typer.Option(min=1, help="largest head set")] = 8,
    beam: Annotated[int, typer.Option(min=1, help="beam width (1 = greedy)")] = 1,
    verify_top: Annotated[
        int,
        typer.Option(
            min=0, help="re-rank each step's best N sets by true ablation on the search part"
        ),
    ] = 0,
    layers: Annotated[
        str | None, typer.Option(help="candidate layers (default: the CCS table's, else last:4)")
    ] = None,
    candidates: Annotated[
        str,
        typer.Option(
            help="explicit candidates (L5H1,L5H3), or attribution:N = the N heads with the "
            "largest shares of the bias gaps on the search part (needs --attribution)"
        ),
    ] = "",
    validation: Annotated[
        float, typer.Option(help="share of each probe held out (by file-name hash)")
    ] = 0.5,
    bootstrap: Annotated[int, typer.Option(min=20, help="bootstrap resamples")] = 200,
    seed: Annotated[int, typer.Option(min=0, help="seed of the bootstrap")] = 0,
    random_seeds: Annotated[
        list[int] | None, typer.Option("--random-seed", help="seeds of the random arm (repeat)")
    ] = None,
    check_probes: Annotated[
        list[Path] | None,
        typer.Option("--check-probe", help="probe of another world (repeat): chosen vs baseline"),
    ] = None,
    name: Annotated[str, typer.Option(help="name of the chosen profile")] = "search",
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    attribution: Annotated[
        bool,
        typer.Option(
            "--attribution/--no-attribution",
            help="first attribute the bias gaps on the search part (heads, MLPs, embeddings): "
            "its verdict goes into pareto.json; needed by --candidates attribution:N",
        ),
    ] = False,
) -> None:
    """Search head sets that lower bias within an accuracy constraint; verify, compare, write."""
    from ccsclip.errors import CcsclipError
    from ccsclip.models import load_model
    from ccsclip.profiles.search.greedy import Constraint
    from ccsclip.profiles.search.run import SearchOptions, run_search
    from ccsclip.profiles.split import Split

    options = SearchOptions(
        accuracy_probes=probes,
        bias_probes=bias_probes,
        out=out_dir,
        attribute=attribute,
        k=k,
        means=means,
        mode=mode,
        ccs_table=ccs,
        layers=layers,
        candidates=[c for c in candidates.split(",") if c.strip()],
        constraint=Constraint(max_accuracy_drop, max_heads),
        beam=beam,
        verify_top=verify_top,
        split=Split(validation),
        replicates=bootstrap,
        seed=seed,
        random_seeds=random_seeds or [0, 1, 2],
        check_probes=check_probes or [],
        name=name,
        batch_size=batch_size,
        attribution=attribution,
    )
    try:
        options.check()
        loaded = load_model(model, pretrained)
        result = run_search(loaded, options)
    except CcsclipError as exc:  # bad input: one line and exit 2, also under CliRunner
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    print_result(result)
    console.print(f"wrote {out_dir / 'pareto.json'}, pareto.png and profiles in {out_dir}/profiles")


def _cell(stats: dict[str, Any], digits: int = 3) -> str:
    return f"{stats['value']:.{digits}f}±{stats['half_width']:.{digits}f}"


def print_result(result: SearchResult) -> None:
    """The validation table: baseline, path points, arms; then the verdict."""
    metric = result.metric
    ks = result.objective.reported_ks
    view = Table(
        title=f"validation part, 95% intervals; objective {metric} "
        f"({result.objective.attribute}); * = Pareto front; gap = estimate - true"
    )
    columns = ("set", "n", "accuracy", *(f"@{k}" for k in ks), f"null {metric}", "gap")
    for column in (*columns, "constraint"):
        view.add_column(column, no_wrap=True)
    for entry in [result.baseline, *result.points, *result.arms]:
        val = entry.validation
        view.add_row(
            entry.name + (" *" if entry.pareto and entry.n_heads else ""),
            str(entry.n_heads),
            _cell(val["accuracy"]),
            *(_cell(val[f"maxskew@{k}"]) for k in ks),
            f"{entry.null[metric]:.3f}",
            f"{entry.gap[metric]:+.3f}",
            "ok" if entry.meets_constraint["validation"] else "fails",
        )
    out.print(view)
    out.print(
        "null = MaxSkew of the same ranking with the attribute shuffled within each query's "
        "relevant images: what no attribute preference gets"
    )
    if result.attribution is not None:
        out.print(f"attribution: {result.attribution.verdict}")
    chosen = result.chosen
    if chosen is None:
        out.print(f"no profile chosen: {result.chosen_reason}")
        return
    verdict_ = result.verdict()
    change = verdict_.change or {}
    verdict = "lowers" if verdict_.beats_baseline else "does not lower"
    sure = "(interval excludes 0)" if verdict_.significant else "(interval includes 0)"
    out.print(
        f"chosen {chosen.name} ({', '.join(chosen.heads)}) {verdict} validation {metric}: "
        f"change against the baseline {change['value']:+.3f} "
        f"[{change['low']:+.3f}, {change['high']:+.3f}] {sure}"
    )
