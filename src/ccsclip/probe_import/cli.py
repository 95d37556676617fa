"""`ccsclip probe import <source>`: sealed probes from the datasets researchers already have."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ccsclip.errors import CcsclipError
from ccsclip.probe_import.write import Imported
from ccsclip.probeset import AccuracyProbeSpec

import_app = typer.Typer(
    help="Write a sealed probe from a class-folder tree, clip-benchmark's dataset builders, a "
    "CSV/Parquet table (FairFace) or a `datasets` dataset saved to disk.",
    no_args_is_help=True,
)

OutOpt = Annotated[Path, typer.Option("--out", help="probe folder to write (must not exist)")]
NameOpt = Annotated[str | None, typer.Option(help="probe name (default: the --out folder's name)")]
OverwriteOpt = Annotated[bool, typer.Option(help="replace an existing --out folder")]
DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset", help="clip-benchmark dataset name: its class names and templates (cifar100)"
    ),
]
ClassesOpt = Annotated[
    Path | None,
    typer.Option(help="class names: one a line (class-index order) or folder<TAB>name; or JSON"),
]
TemplatesOpt = Annotated[
    Path | None, typer.Option(help="templates, one a line with {} (or {c}) for the class; or JSON")
]
AttributeOpt = Annotated[
    list[str] | None, typer.Option("--attribute", help="protected attribute column (repeat)")
]
QueriesOpt = Annotated[
    list[str] | None,
    typer.Option("--queries", help="neutral queries: occupations, traits or a file (repeat)"),
]
KOpt = Annotated[
    list[int] | None,
    typer.Option("--k", min=1, help="MaxSkew@K (repeat; default 10, 100, 1000 as the pool allows)"),
]


def _run(write: Callable[[], Imported]) -> None:
    """Bad input: one line and exit 2 (also under CliRunner); success: what was written."""
    try:
        done = write()
    except CcsclipError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    spec = done.spec
    if isinstance(spec, AccuracyProbeSpec):
        detail = f"{len(spec.classes)} classes, {done.images} images"
    else:
        detail = f"{done.images} images, {len(spec.queries)} queries"
    typer.echo(f"sealed {spec.name} ({spec.kind}, {detail}) -> {done.path}")


@import_app.command("folder")
def import_folder(
    root: Annotated[Path, typer.Argument(help="class-folder tree: ROOT/<class>/<image>")],
    out: OutOpt,
    dataset: DatasetOpt = None,
    classes: ClassesOpt = None,
    templates: TemplatesOpt = None,
    name: NameOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """An accuracy probe from an ImageFolder tree (files keep their names)."""
    from ccsclip.probe_import.folder import folder_draft
    from ccsclip.probe_import.write import probe_name, write_accuracy

    def write() -> Imported:
        draft = folder_draft(
            root,
            probe_name(out, name),
            dataset=dataset,
            classes_file=classes,
            templates_file=templates,
        )
        return write_accuracy(draft, out, overwrite=overwrite)

    _run(write)


@import_app.command("benchmark")
def import_benchmark(
    dataset: Annotated[str, typer.Argument(help="clip-benchmark name: cifar100, wds/<name>, ...")],
    root: Annotated[Path, typer.Option(help="the dataset's files on disk (never downloaded)")],
    out: OutOpt,
    split: Annotated[str, typer.Option(help="split of the dataset")] = "test",
    classes: ClassesOpt = None,
    templates: TemplatesOpt = None,
    name: NameOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """An accuracy probe through clip-benchmark's builder (torchvision layouts, wds shards)."""
    from ccsclip.probe_import.benchmark import benchmark_draft
    from ccsclip.probe_import.write import probe_name, write_accuracy

    def write() -> Imported:
        draft = benchmark_draft(
            dataset,
            root,
            probe_name(out, name),
            split=split,
            classes_file=classes,
            templates_file=templates,
        )
        return write_accuracy(draft, out, overwrite=overwrite)

    _run(write)


@import_app.command("table")
def import_table(
    table: Annotated[Path, typer.Argument(help=".csv or .parquet: a file column + attributes")],
    out: OutOpt,
    attribute: AttributeOpt = None,
    queries: QueriesOpt = None,
    images: Annotated[
        Path | None, typer.Option(help="folder the file column is relative to (default: table's)")
    ] = None,
    file_column: Annotated[str, typer.Option(help="column with the image paths")] = "file",
    where: Annotated[
        list[str] | None, typer.Option(help="keep rows with COLUMN=VALUE (repeat)")
    ] = None,
    templates: TemplatesOpt = None,
    k: KOpt = None,
    name: NameOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """A bias probe from a table of images and attributes (FairFace's label files)."""
    from ccsclip.probe_import.table import table_draft
    from ccsclip.probe_import.write import probe_name, write_bias

    def write() -> Imported:
        draft = table_draft(
            table,
            probe_name(out, name),
            images=images,
            attributes=attribute or [],
            queries=queries or [],
            file_column=file_column,
            where=where,
            templates_file=templates,
            k=k,
        )
        return write_bias(draft, out, overwrite=overwrite)

    _run(write)


@import_app.command("hf")
def import_hf(
    path: Annotated[Path, typer.Argument(help="folder written by `Dataset.save_to_disk`")],
    out: OutOpt,
    split: Annotated[str | None, typer.Option(help="split of a saved DatasetDict")] = None,
    image_column: Annotated[str, typer.Option(help="Image column")] = "image",
    label_column: Annotated[
        str | None, typer.Option(help="class column: an accuracy probe")
    ] = None,
    attribute: AttributeOpt = None,
    queries: QueriesOpt = None,
    dataset: DatasetOpt = None,
    classes: ClassesOpt = None,
    templates: TemplatesOpt = None,
    k: KOpt = None,
    name: NameOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """An accuracy probe (--label-column) or a bias probe (--attribute, --queries)."""
    from ccsclip.errors import InvalidInputError
    from ccsclip.probe_import.hf import hf_accuracy_draft, hf_bias_draft
    from ccsclip.probe_import.write import probe_name, write_accuracy, write_bias

    def write() -> Imported:
        if (label_column is None) == (not attribute):
            raise InvalidInputError(
                "give either --label-column (an accuracy probe) or --attribute with --queries "
                "(a bias probe)"
            )
        if label_column is not None:
            draft = hf_accuracy_draft(
                path,
                probe_name(out, name),
                split=split,
                image_column=image_column,
                label_column=label_column,
                dataset=dataset,
                classes_file=classes,
                templates_file=templates,
            )
            return write_accuracy(draft, out, overwrite=overwrite)
        bias = hf_bias_draft(
            path,
            probe_name(out, name),
            split=split,
            image_column=image_column,
            attributes=attribute or [],
            queries=queries or [],
            templates_file=templates,
            k=k,
        )
        return write_bias(bias, out, overwrite=overwrite)

    _run(write)
