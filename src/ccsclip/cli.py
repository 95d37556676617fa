"""The `ccsclip` command line: one typer app, one sub-command per pipeline step."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ccsclip.cpu_threads import ThreadsOpt, prefer_passive_wait
from ccsclip.errors import CcsclipError

app = typer.Typer(
    help="Rank CLIP attention heads by Concept Consistency Score, prune, export and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out = Console()

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="open_clip name, hf-hub:ID or local-dir:PATH")
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option(
        help="open_clip tag, checkpoint path, 'embedded' (shipped weights) or none (random)"
    ),
]


def _init_distributed() -> tuple[int, int]:
    """Join a torchrun job when launched by one (gloo on CPU); otherwise a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size()


@app.command()
def stats(
    model: ModelOpt,
    images: Annotated[Path, typer.Option(help="ImageFolder tree or flat folder of images")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for stats/means safetensors")],
    pretrained: PretrainedOpt = None,
    layers: Annotated[
        str | None,
        typer.Option(help="'last:4' (default, or all layers if fewer), 'all', '8,9' or '8-11'"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 32,
    limit: Annotated[int | None, typer.Option(min=1, help="use only the first N images")] = None,
    strict: Annotated[
        bool, typer.Option(help="fail on unreadable images instead of skipping")
    ] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Per-head moments of direct contributions and per-position ablation means (one pass)."""
    from ccsclip.engine.image_files import list_images
    from ccsclip.heads.collect import collect_statistics
    from ccsclip.heads.layers import parse_layers
    from ccsclip.heads.stats import save_statistics
    from ccsclip.models import load_model

    list_images(images)  # fail on a bad folder before loading a model
    rank, _ = _init_distributed()
    loaded = load_model(model, pretrained)
    chosen = parse_layers(layers or f"last:{min(4, loaded.spec.layers)}", loaded.spec.layers)
    moments, means, meta = collect_statistics(loaded, images, chosen, batch_size, strict, limit)
    if meta["images"]["n_skipped"]:
        console.print(
            f"[yellow]skipped {meta['images']['n_skipped']} unreadable images:[/] "
            + ", ".join(meta["images"]["skipped"][:10])
        )
    if rank == 0:
        save_statistics(out_dir, moments, means, meta)
        console.print(f"statistics of {moments.n} images, layers {list(chosen)} -> {out_dir}")


@app.command()
def heads(
    stats_dir: Annotated[Path, typer.Argument(help="folder written by `ccsclip stats`")],
    top: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """Print the analysed heads ranked by the variance of their direct effects."""
    from ccsclip.heads.stats import load_statistics
    from ccsclip.heads.variance import head_variances

    moments, _, sidecar = load_statistics(stats_dir)
    table = Table(
        title=f"heads of {sidecar['model']} by direct-effect variance ({moments.n} images)"
    )
    for column in ("rank", "head", "variance share", "mean norm"):
        table.add_column(column, justify="right")
    for rank, row in enumerate(head_variances(moments)[:top], start=1):
        table.add_row(str(rank), row.name, f"{row.share:.3f}", f"{row.mean_norm:.3f}")
    out.print(table)


probe_app = typer.Typer(
    help="Probe folders (docs/design.md §7): import one from a dataset, seal a hand-made one, "
    "check one.",
    no_args_is_help=True,
)


@probe_app.command("seal")
def probe_seal(
    directory: Annotated[Path, typer.Argument(help="probe folder with a draft probe.yaml")],
) -> None:
    """Hash the probe's files into probe.yaml (content_sha256) and validate it."""
    import yaml

    from ccsclip.errors import InvalidInputError
    from ccsclip.probeset import PROBE_FILE, load_probe, write_probe_yaml

    draft = directory / PROBE_FILE
    if not draft.is_file():
        raise InvalidInputError(f"{draft} does not exist: write a draft probe.yaml first")
    data = yaml.safe_load(draft.read_text("utf-8")) or {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{draft} must be a mapping")
    data["content_sha256"] = "0" * 64
    write_probe_yaml(directory, data)
    probe = load_probe(directory)
    count = len(getattr(probe, "samples", ()) or getattr(probe, "rows", ()))
    out.print(f"sealed {probe.name} ({probe.spec.kind}, {count} images)")


@probe_app.command("check")
def probe_check(directory: Annotated[Path, typer.Argument()]) -> None:
    """Validate a probe folder and its content hash."""
    from ccsclip.probeset import load_probe

    probe = load_probe(directory)
    out.print(f"ok: {probe.name} ({probe.spec.kind})")


def _mount_subcommands() -> None:
    from ccsclip.ab.cli import register as register_ab
    from ccsclip.engine.cli import register as register_engine
    from ccsclip.export.cli import register as register_export
    from ccsclip.organism.cli import app as organism_app
    from ccsclip.probe_import.cli import import_app
    from ccsclip.profiles.cli import register as register_profiles
    from ccsclip.service.cli import register as register_service

    register_profiles(app)
    register_engine(app)
    register_export(app)
    register_service(app)
    register_ab(app)
    app.add_typer(organism_app, name="organism")
    probe_app.add_typer(import_app, name="import")
    app.add_typer(probe_app, name="probe")


_mount_subcommands()


def main() -> None:
    """Entry point: library errors become a one-line message and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    prefer_passive_wait()  # before any command imports torch: see ccsclip.cpu_threads
    try:
        app()
    except CcsclipError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
