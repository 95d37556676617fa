"""`ccsclip index`: embed a folder of images into a retrieval gallery with one bundle profile.

Without `--backend` it writes the read-only gallery folder `/v1/retrieve` serves (`--out`). With
`--backend exact|hnsw|milvus` it streams into a live gallery (`--name`, in the `--store` folder
or the Milvus server at `--milvus-uri`), which the gallery API then serves and extends; an
interrupted run resumes where it stopped when run again (engine/galleries/bulk.py).

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
    out: Annotated[
        Path | None, typer.Option("--out", help="read-only gallery folder to write")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="profile to embed with (default: the bundle's)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 64,
    threads: Annotated[
        int | None, typer.Option(min=1, help="onnxruntime intra-op threads (default: all)")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="live gallery backend: exact, hnsw or milvus")
    ] = None,
    name: Annotated[str | None, typer.Option(help="live gallery name (with --backend)")] = None,
    store: Annotated[
        Path | None,
        typer.Option(envvar="CCSCLIP_GALLERY_ROOT", help="folder of live galleries (exact, hnsw)"),
    ] = None,
    milvus_uri: Annotated[str | None, typer.Option(envvar="CCSCLIP_MILVUS_URI")] = None,
    milvus_token: Annotated[str | None, typer.Option(envvar="CCSCLIP_MILVUS_TOKEN")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="backend parameter KEY=VALUE, e.g. connectivity=32 (repeatable)"),
    ] = None,
) -> None:
    """Embed every image below --images with a bundle profile into a gallery (--out, or a live
    gallery with --backend/--name; resumable)."""
    from ccsclip.engine.engine import Engine
    from ccsclip.engine.gallery import build_gallery

    if backend is not None:
        _index_live(
            bundle,
            images,
            profile,
            batch_size,
            threads,
            backend,
            name,
            store,
            milvus_uri,
            milvus_token,
            param or [],
        )
        return
    if out is None:
        console.print("error: give --out (a read-only gallery) or --backend and --name")
        raise typer.Exit(2)
    try:
        engine = Engine.load(bundle, intra_op_threads=threads, require_default=profile is None)
        with _bar() as bar:
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


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _params(pairs: list[str]) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CcsclipError(f"--param {pair!r}: expected KEY=VALUE, e.g. connectivity=32")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _index_live(
    bundle: Path,
    images: Path,
    profile: str | None,
    batch_size: int,
    threads: int | None,
    backend: str,
    name: str | None,
    store_root: Path | None,
    milvus_uri: str | None,
    milvus_token: str | None,
    pairs: list[str],
) -> None:
    from ccsclip.engine.engine import Engine
    from ccsclip.engine.galleries.bulk import index_into, open_or_create
    from ccsclip.engine.galleries.milvus import MilvusConnection
    from ccsclip.engine.galleries.store import GalleryStore

    try:
        if name is None:
            raise CcsclipError("--backend needs --name (the gallery's name)")
        engine = Engine.load(bundle, intra_op_threads=threads, require_default=profile is None)
        milvus = (
            MilvusConnection(milvus_uri, milvus_token)
            if backend == "milvus" and milvus_uri
            else None
        )
        # one snapshot at the end rather than one per 64 MB of log; usearch on every core
        gallery_store = GalleryStore(engine, store_root, milvus, threads=0, compact_bytes=1 << 40)
        gallery = open_or_create(gallery_store, name, profile, backend, _params(pairs))
        with _bar() as bar:
            task = bar.add_task("index", total=None)
            result = index_into(
                engine,
                gallery,
                images,
                batch_size,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
    except CcsclipError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    console.print(
        f"gallery {name!r} ({backend}, profile {gallery.meta.profile.name!r}): added "
        f"{result.added}, already there {result.already}, now {gallery.count()} items",
        markup=False,
    )
    if result.unreadable:
        console.print(f"skipped {len(result.unreadable)} unreadable images", markup=False)


gallery_app = typer.Typer(
    help="Maintain galleries: check and repair a store.", no_args_is_help=True
)


@gallery_app.command("check")
def check(
    root: Annotated[
        Path, typer.Option(envvar="CCSCLIP_GALLERY_ROOT", help="folder of galleries to check")
    ],
    repair: Annotated[
        bool,
        typer.Option(help="remove crash leftovers and cut torn log tails (safe while serving)"),
    ] = False,
) -> None:
    """Report (and with --repair fix) what crashes left in a gallery root. Exit 1 if a problem
    remains."""
    from ccsclip.engine.galleries.check import check_root

    if not root.is_dir():
        console.print(f"error: {root} is not a folder", markup=False)
        raise typer.Exit(2)
    remaining = 0
    for report in check_root(root, repair):
        label = report.name or "(root)"
        count = "" if report.count is None else f" {report.count} items"
        fixed = set(report.repaired)
        status = "ok" if not report.problems else f"{len(report.problems)} problem(s)"
        console.print(f"{label}:{count} {status}", markup=False)
        for problem in report.problems:
            console.print(f"  - {problem}", markup=False)
        for repaired in fixed:
            console.print(f"  + {repaired}", markup=False)
        remaining += len(report.problems) - len(report.repaired)
    raise typer.Exit(1 if remaining > 0 else 0)


def register(app: typer.Typer) -> None:
    """Add `index` and `gallery` to the top-level app."""
    app.command("index")(index)
    app.add_typer(gallery_app, name="gallery")
