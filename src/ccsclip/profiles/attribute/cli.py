"""`ccsclip attribute`: where a bias lives (heads, MLPs, embeddings), before pruning anything."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)


def attribute(
    model: Annotated[
        str, typer.Option("--model", "-m", help="open_clip name, hf-hub:ID or local-dir:PATH")
    ],
    bias_probe: Annotated[Path, typer.Option("--bias-probe", help="bias probe folder")],
    attribute: Annotated[str, typer.Option(help="protected attribute of the bias probe")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for attribution.json/png")],
    pretrained: Annotated[
        str | None, typer.Option(help="open_clip tag, checkpoint, 'embedded' or none (random)")
    ] = None,
    means: Annotated[
        Path | None,
        typer.Option(help="ablation means (stats/means.safetensors of `rank`): centre heads"),
    ] = None,
    relevance: Annotated[
        str | None,
        typer.Option(
            help="metadata column whose value a query's '<value>:' name prefix retrieves, or "
            "'all' (default: inferred from the query names)"
        ),
    ] = None,
    part: Annotated[str, typer.Option(help="all, search or validation part of the split")] = "all",
    validation: Annotated[float, typer.Option(help="share held out (with --part)")] = 0.5,
    bootstrap: Annotated[int, typer.Option(min=20, help="bootstrap resamples")] = 200,
    seed: Annotated[int, typer.Option(min=0, help="seed of the bootstrap")] = 0,
    top: Annotated[int, typer.Option(min=1, help="components in the printed table")] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
) -> None:
    """Split every query's attribute gap into per-component parts; shares with 95% intervals."""
    from ccsclip.errors import CcsclipError
    from ccsclip.models import load_model
    from ccsclip.profiles.attribute.report import print_attribution, write_attribution
    from ccsclip.profiles.attribute.run import AttributionOptions
    from ccsclip.profiles.attribute.run import attribute as run_attribution
    from ccsclip.profiles.split import Split

    try:
        options = AttributionOptions(
            bias_probe=bias_probe,
            attribute=attribute,
            relevance=relevance,
            means=means,
            part=part,
            split=Split(validation),
            replicates=bootstrap,
            seed=seed,
            batch_size=batch_size,
        )
        options.check()
        loaded = load_model(model, pretrained)
        result = run_attribution(loaded, options)
        paths = write_attribution(result, out_dir)
    except CcsclipError as exc:  # bad input: one line and exit 2, also under CliRunner
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    print_attribution(result, out, top)
    console.print(f"wrote {paths[0]} and {paths[1]}")
