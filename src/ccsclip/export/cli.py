"""`ccsclip export` (profiles + model -> bundle) and `ccsclip bundle verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ccsclip.cpu_threads import ThreadsOpt

console = Console(stderr=True)
out = Console()

bundle_app = typer.Typer(help="Inspect serving bundles.", no_args_is_help=True)

NamesOpt = Annotated[list[str] | None, typer.Option(help="profile name (repeat)")]


def _print_manifest(manifest, bundle: Path) -> None:
    table = Table(
        title=f"bundle {bundle} ({manifest.model.name}, default {manifest.default_profile})"
    )
    table.add_column("profile", no_wrap=True)
    for column in ("dtype", "heads", "GMAC/img", "params", "parity", "Δacc"):
        table.add_column(column, justify="right")
    for name, entry in manifest.profiles.items():
        delta = "" if entry.accuracy_delta is None else f"{entry.accuracy_delta:+.3f}"
        table.add_row(
            name,
            entry.quantize or entry.precision,
            str(len(entry.heads_removed)),
            f"{entry.flops_per_image / 1e9:.3g}",
            f"{entry.parameters:,}",
            f"{entry.parity_max_abs:.1e}",
            delta,
        )
    out.print(table)


def export(
    model: Annotated[str, typer.Option("--model", "-m", help="open_clip name or project model")],
    profile: Annotated[list[Path], typer.Option(help="profile YAML (repeat)")],
    out_dir: Annotated[Path, typer.Option("--out", help="bundle directory (replaced on success)")],
    pretrained: Annotated[
        str | None, typer.Option(help="open_clip tag, checkpoint path, 'embedded' or none")
    ] = None,
    default_profile: Annotated[
        str | None, typer.Option(help="served when a request names none (default: baseline)")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="max |ONNX - soft-pruned torch| on unit embeddings")
    ] = 1e-4,
    fp16: NamesOpt = None,
    int8: NamesOpt = None,
    probe: Annotated[
        list[Path] | None,
        typer.Option(
            help="probe dir (repeat; accuracy or bias): its full results are baked into the "
            "bundle; the first accuracy probe also gives fp16/int8 files their accuracy_delta"
        ),
    ] = None,
    bake: Annotated[
        bool, typer.Option(help="bake the --probe results into the bundle (servers skip them)")
    ] = True,
    threads: ThreadsOpt = None,
) -> None:
    """Bake each profile, export ONNX files, check parity and write a bundle with a manifest."""
    from ccsclip.probeset import read_probe_spec
    from ccsclip.profiles.schema import load_profile

    profiles = [(load_profile(path), path) for path in profile]  # fail before importing torch
    probes = list(probe or [])
    for directory in probes:
        read_probe_spec(directory)  # a clear error now, not after the export
    accuracy = next((d for d in probes if read_probe_spec(d).kind == "accuracy"), None)
    from ccsclip.export.bundle import export_bundle
    from ccsclip.models import load_model

    loaded = load_model(model, pretrained)
    manifest = export_bundle(
        loaded,
        profiles,
        out_dir,
        default_profile=default_profile,
        tolerance=tolerance,
        precision={name: "fp16" for name in fp16 or []},
        quantize={name: "int8" for name in int8 or []},
        probe=accuracy,
        progress=True,
        bake=probes if bake else [],
    )
    _print_manifest(manifest, out_dir)
    if manifest.probe_results:
        out.print(f"baked {len(manifest.probe_results)} probe results (profile x probe)")


@bundle_app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="bundle directory")],
    images: Annotated[int, typer.Option(min=1, max=256, help="random images per parity run")] = 4,
    threads: ThreadsOpt = None,
) -> None:
    """Recheck hashes, ONNX metadata, costs and parity against torch; exit 2 on any problem."""
    from ccsclip.export.bundle import check_bundle

    report = check_bundle(bundle, images)
    if report.rows:
        table = Table(title=f"bundle {bundle}")
        table.add_column("profile", no_wrap=True)
        for column in ("dtype", "heads", "recorded", "measured", "tol"):
            table.add_column(column, justify="right")
        table.add_column("reference", no_wrap=True)
        for row in report.rows:
            measured = "" if row.measured is None else f"{row.measured:.1e}"
            table.add_row(
                row.name,
                row.precision,
                str(row.heads_removed),
                f"{row.recorded:.1e}",
                measured,
                f"{row.tolerance:.0e}",
                row.reference,
            )
        out.print(table)
    if report.problems:
        console.print(f"[red]bundle {bundle} failed verification ({len(report.problems)}):[/]")
        for problem in report.problems:
            console.print(f"  - {problem}", markup=False, highlight=False)
        raise typer.Exit(2)
    from ccsclip.bundle import read_manifest

    text = "" if report.text_parity is None else f", text parity {report.text_parity:.1e}"
    baked = len(read_manifest(bundle).probe_results)
    results = f", {baked} baked probe results" if baked else ""
    out.print(f"bundle {bundle}: OK ({len(report.rows)} image files{text}{results})")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.add_typer(bundle_app, name="bundle")
