"""`ccsclip index` and `ccsclip gallery ...`: fill and maintain galleries from the command line.

`ccsclip index` embeds a folder of images with one bundle profile into a gallery of any backend
(`--name`, in the `--root` folder or the Milvus server at `--milvus-uri`): the same store format
the gallery API writes and serves, so the server then serves and extends it. An interrupted run
resumes where it stopped when run again (engine/galleries/bulk.py). Item ids are the images'
paths relative to `--images`, extension included (`nested/g00019.png`).

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
    name: Annotated[
        str | None, typer.Option(help="gallery name (default: the images folder's name)")
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(envvar="CCSCLIP_GALLERY_ROOT", help="gallery folder (exact, hnsw)"),
    ] = None,
    backend: Annotated[str, typer.Option(help="exact, hnsw or milvus")] = "hnsw",
    profile: Annotated[
        str | None, typer.Option(help="profile to embed with (default: the bundle's)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 64,
    threads: Annotated[
        int | None, typer.Option(min=1, help="onnxruntime intra-op threads (default: all)")
    ] = None,
    milvus_uri: Annotated[str | None, typer.Option(envvar="CCSCLIP_MILVUS_URI")] = None,
    milvus_token: Annotated[str | None, typer.Option(envvar="CCSCLIP_MILVUS_TOKEN")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="backend parameter KEY=VALUE, e.g. connectivity=32 (repeatable)"),
    ] = None,
) -> None:
    """Embed every image below --images with a bundle profile into the gallery --name of the
    --root folder (or Milvus); resumable: run again to finish an interrupted run."""
    from ccsclip.engine.engine import Engine
    from ccsclip.engine.galleries.bulk import index_into, open_or_create
    from ccsclip.engine.galleries.milvus import MilvusConnection
    from ccsclip.engine.galleries.store import GalleryStore

    try:
        name = name or images.name
        if backend != "milvus" and root is None:
            raise CcsclipError("--root: give the gallery folder (or set CCSCLIP_GALLERY_ROOT)")
        if backend == "milvus" and not milvus_uri:
            raise CcsclipError("--milvus-uri: give the Milvus server (or CCSCLIP_MILVUS_URI)")
        engine = Engine.load(bundle, intra_op_threads=threads, require_default=profile is None)
        milvus = MilvusConnection(milvus_uri, milvus_token) if backend == "milvus" else None
        # one snapshot at the end rather than one per 64 MB of log; usearch on every core
        store = GalleryStore(engine, root, milvus, threads=0, compact_bytes=1 << 40)
        gallery = open_or_create(store, name, profile, backend, _params(param or []))
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
        console.print(
            f"skipped {len(result.unreadable)} unreadable images: "
            + ", ".join(result.unreadable[:10])
            + (" …" if len(result.unreadable) > 10 else ""),
            markup=False,
        )


def _bar(what: str = "indexing") -> Progress:
    return Progress(
        TextColumn(f"[bold]{what}"),
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


gallery_app = typer.Typer(
    help="Maintain galleries: check and repair, copy between backends, convert old folders.",
    no_args_is_help=True,
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


@gallery_app.command("copy")
def copy(
    source: Annotated[str, typer.Argument(help="ROOT/NAME or milvus+http://HOST:PORT/NAME")],
    dest: Annotated[str, typer.Argument(help="ROOT/NAME or milvus+http://HOST:PORT/NAME")],
    backend: Annotated[
        str | None, typer.Option(help="exact or hnsw for a folder (default: the source's)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="backend parameter KEY=VALUE (repeatable)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=65536)] = 1024,
) -> None:
    """Copy a gallery into another backend without embedding again (streaming, resumable)."""
    from ccsclip.engine.galleries.copy import MILVUS, copy_gallery, open_store

    try:
        source_store, source_name = open_store(source)
        gallery = source_store.get(source_name, "SRC")
        store, name = open_store(dest)
        if dest.startswith(MILVUS):
            kind = "milvus"
        else:
            kind = backend or ("hnsw" if gallery.meta.backend == "milvus" else gallery.meta.backend)
        params = _params(param or []) or (
            gallery.meta.params if kind == gallery.meta.backend else {}
        )
        with _bar("copying") as bar:
            task = bar.add_task("copy", total=None)
            result = copy_gallery(
                gallery,
                store,
                name,
                kind,
                params,
                batch_size,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
    except CcsclipError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    console.print(
        f"{source} -> {dest} ({kind}): copied {result.copied}, already there {result.already}",
        markup=False,
    )


@gallery_app.command("migrate")
def migrate(
    folder: Annotated[Path, typer.Argument(help="a folder written by an older `ccsclip index`")],
) -> None:
    """Convert a folder of the old `ccsclip index` format into the gallery format, in place."""
    from ccsclip.engine.galleries.legacy import is_legacy
    from ccsclip.engine.galleries.legacy import migrate as convert

    if not is_legacy(folder):
        console.print(f"{folder}: not in the old format; nothing to do", markup=False)
        return
    try:
        meta = convert(folder)
    except CcsclipError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    console.print(f"{folder}: converted (exact, profile {meta.profile.name!r})", markup=False)


def register(app: typer.Typer) -> None:
    """Add `index` and `gallery` to the top-level app."""
    app.command("index")(index)
    app.add_typer(gallery_app, name="gallery")
