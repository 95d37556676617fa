"""Bias probes from a table of image files and attribute columns (CSV or Parquet).

FairFace's label files are such tables (`file,age,gender,race,service_test`, paths relative to
the dataset's root); any table with a file column and attribute columns works the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from ccsclip.errors import InvalidInputError, NotFoundError
from ccsclip.probe_import.payload import ImageSource
from ccsclip.probe_import.vocab import query_set_names, read_query_set, read_templates
from ccsclip.probe_import.write import BiasDraft


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{path}: not a readable UTF-8 CSV file: {exc}") from exc


def _read_parquet(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise InvalidInputError(
            f"{path}: reading Parquet needs pyarrow (pip install 'ccsclip[data]'), "
            "or save the table as CSV"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types for a bad file
        raise InvalidInputError(f"{path}: not a readable Parquet file: {exc}") from exc
    columns = table.column_names
    rows = [{c: "" if v is None else str(v) for c, v in row.items()} for row in table.to_pylist()]
    return columns, rows


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Column names and rows (every value as text) of a .csv or .parquet file."""
    if not path.is_file():
        raise NotFoundError(f"table {str(path)!r} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return _read_csv(path)
    raise InvalidInputError(f"{path}: expected a .csv or .parquet table")


def parse_where(conditions: list[str]) -> dict[str, str]:
    """`column=value` filters (all must hold), e.g. FairFace's `service_test=True`."""
    parsed = {}
    for text in conditions:
        column, sep, value = text.partition("=")
        if not sep or not column:
            raise InvalidInputError(f"--where {text!r}: expected COLUMN=VALUE")
        parsed[column] = value
    return parsed


def require_columns(columns: list[str], wanted: list[str], source: str) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InvalidInputError(
            f"{source}: no column(s) {missing}; columns: {columns}. Name the right ones with "
            "--file-column / --attribute / --where"
        )


def query_texts(
    queries: list[str], templates_file: Path | None
) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, text) queries and templates of the named sets / files.

    Sets with different templates (occupations: "a photo of a {}.", traits: "a photo of a {}
    person.") are combined by writing each set's templates into its queries' texts.
    """
    if not queries:
        raise InvalidInputError(
            f"no neutral queries: pass --queries with a set name ({', '.join(query_set_names())})"
            " or a file with one query a line"
        )
    sets = [read_query_set(q) for q in queries]
    if templates_file is not None:
        return [(q, q) for s in sets for q in s.queries], read_templates(templates_file)
    if len({s.templates for s in sets}) == 1:
        return [(q, q) for s in sets for q in s.queries], list(sets[0].templates)
    texts = [t.format(q) for s in sets for q in s.queries for t in s.templates]
    return [(text, text) for text in texts], ["{}"]


def _rows(
    images: Path, rows: list[dict[str, str]], file_column: str, attributes: list[str], table: Path
) -> Iterator[tuple[ImageSource, str, dict[str, str], str]]:
    for line_no, row in enumerate(rows, start=2):
        rel = row[file_column]
        path = images / rel
        label = f"{table}:{line_no} ({rel})"
        if Path(rel).is_absolute():
            if not path.resolve().is_relative_to(images.resolve()):
                raise InvalidInputError(
                    f"{label}: an absolute path outside --images {str(images)!r}; point --images "
                    "at a folder that holds every image"
                )
            rel = path.resolve().relative_to(images.resolve()).as_posix()
        if not path.is_file():
            raise NotFoundError(f"{label}: image {str(path)!r} does not exist; check --images")
        yield path, rel, {a: row[a] for a in attributes}, label


def table_draft(
    table: Path,
    name: str,
    *,
    images: Path | None,
    attributes: list[str],
    queries: list[str],
    file_column: str = "file",
    where: list[str] | None = None,
    templates_file: Path | None = None,
    k: list[int] | None = None,
) -> BiasDraft:
    """A bias probe of the table's rows that pass `where`; images are looked up under `images`
    (default: the table's folder) and keep their relative paths inside the probe."""
    if not attributes:
        raise InvalidInputError("name at least one --attribute column (e.g. gender, race)")
    columns, rows = read_table(table)
    filters = parse_where(where or [])
    require_columns(columns, [file_column, *attributes, *filters], str(table))
    kept = [r for r in rows if all(r[c] == v for c, v in filters.items())]
    texts, templates = query_texts(queries, templates_file)
    root = images if images is not None else table.parent
    if not root.is_dir():
        raise NotFoundError(f"--images {str(root)!r} does not exist or is not a folder")
    return BiasDraft(
        name=name,
        attributes=list(attributes),
        queries=texts,
        templates=templates,
        rows=_rows(root, kept, file_column, attributes, table),
        k=list(k or []),
    )
