"""`ccsclip index`: embed a folder of images into a retrieval gallery with one bundle profile.

Torch-free like the rest of the engine, so it also runs in the serving image; the torch-using
top-level CLI mounts it with `register(app)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ccsclip.errors import CcsclipError

console = Console(stderr=True)


def index(
    bundle: Annotated[Path, typer.Option(help="bundle directory (manifest.json, *.onnx)")],
    images: Annotated[Path, typer.Option(help="folder of images, flat or nested")],
    out: Annotated[Path, typer.Option("--out", help="gallery folder to write (new or a gallery)")],
    profile: Annotated[
        str | None, typer.Option(help="profile to embed with (default: the bundle's)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 64,
    threads: Annotated[
        int | None, typer.Option(min=1, help="onnxruntime intra-op threads (default: all)")
    ] = None,
) -> None:
    """Embed every image below --images with a bundle profile and write a gallery to --out."""
    from ccsclip.engine.engine import Engine
    from ccsclip.engine.gallery import build_gallery

    try:
        engine = Engine.load(bundle, intra_op_threads=threads, require_default=profile is None)
        with Progress(
            TextColumn("[bold]indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("index", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            gallery = build_gallery(engine, profile, images, out, batch_size, advance)
    except CcsclipError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    skipped = gallery.meta.skipped
    console.print(
        f"gallery of {gallery.count} images, profile {gallery.profile!r} -> {out}", markup=False
    )
    if skipped:
        console.print(
            f"skipped {len(skipped)} unreadable images: {', '.join(skipped[:10])}"
            + (" …" if len(skipped) > 10 else ""),
            markup=False,
        )


def register(app: typer.Typer) -> None:
    """Add `index` to the top-level app."""
    app.command("index")(index)
