"""Probes from a Hugging Face `datasets` dataset saved to disk (`Dataset.save_to_disk`).

An image column plus either a label column (an accuracy probe; a ClassLabel names its classes)
or attribute columns (a bias probe). Images are read as their stored bytes, never re-decoded into
a different file; nothing is downloaded (`load_from_disk` reads the local Arrow files only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ccsclip.errors import InvalidInputError, NotFoundError
from ccsclip.probe_import.payload import ImageSource
from ccsclip.probe_import.table import query_texts, require_columns
from ccsclip.probe_import.vocab import (
    DEFAULT_TEMPLATES,
    dataset_lists,
    read_class_names,
    read_templates,
)
from ccsclip.probe_import.write import (
    AccuracyDraft,
    BiasDraft,
    ProbeClassDraft,
    class_folder,
)


def _datasets() -> Any:
    try:
        import datasets
    except ModuleNotFoundError as exc:
        raise InvalidInputError(
            "importing a `datasets` dataset needs the datasets package: pip install 'ccsclip[data]'"
        ) from exc
    return datasets


def load_split(path: Path, split: str | None) -> Any:
    """The saved Dataset, or one split of a saved DatasetDict."""
    datasets = _datasets()
    if not path.is_dir():
        raise NotFoundError(f"saved dataset {str(path)!r} does not exist or is not a folder")
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise InvalidInputError(f"{path}: not a dataset written by `save_to_disk`: {exc}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        names = sorted(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            raise InvalidInputError(f"{path}: choose a split with --split: {names}")
        return loaded[split]
    if split is not None:
        raise InvalidInputError(f"{path} holds one dataset without splits; drop --split")
    return loaded


def _raw_images(ds: Any, column: str, source: str) -> Any:
    """The image column as stored bytes (or file paths), not decoded PIL images."""
    datasets = _datasets()
    feature = ds.features[column]
    if not isinstance(feature, datasets.Image):
        raise InvalidInputError(
            f"{source}: column {column!r} is {feature!r}, not an Image column; name the image "
            "column with --image-column"
        )
    return ds.cast_column(column, datasets.Image(decode=False))


def _image(value: dict[str, Any] | None, label: str) -> ImageSource:
    if value and value.get("bytes"):
        return value["bytes"]
    if value and value.get("path"):
        return Path(value["path"])
    raise InvalidInputError(f"{label}: no image stored; drop the row or add its image")


def _text_values(ds: Any, column: str) -> list[str]:
    """A column as text; a ClassLabel's integers become its names."""
    datasets = _datasets()
    feature = ds.features[column]
    values = ds[column]
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(v) if v is not None and v >= 0 else "" for v in values]
    return ["" if v is None else str(v) for v in values]


def _class_list(
    ds: Any, label_column: str, dataset: str | None, classes_file: Path | None
) -> tuple[list[str], list[int]]:
    """Class names and each row's class index."""
    feature = ds.features[label_column]
    values = ds[label_column]
    label_names = list(feature.names) if hasattr(feature, "names") else None  # a ClassLabel
    given: list[str] | None = label_names
    if classes_file is not None:
        given = list(read_class_names(classes_file, dataset).names)
    elif dataset is not None:
        lists = dataset_lists(dataset)
        if label_names is not None:
            given = lists.class_names_for(label_names)
        elif lists.class_names is not None:
            given = list(lists.class_names)
    if all(isinstance(v, int) for v in values):
        if given is None:
            raise InvalidInputError(
                f"column {label_column!r} holds class indices without names; pass --classes "
                "(one name a line, in index order) or --dataset NAME"
            )
        return given, list(values)
    texts = [str(v) for v in values]
    names = given if given is not None else sorted(set(texts))
    index = {n: i for i, n in enumerate(names)}
    outside = sorted(set(texts) - set(index))
    if outside:
        raise InvalidInputError(
            f"labels {outside[:10]} of column {label_column!r} are not in the class list; "
            "add them to the --classes file"
        )
    return names, [index[t] for t in texts]


def _accuracy_items(
    ds: Any, column: str, labels: list[int], source: str
) -> Iterator[tuple[int, ImageSource, str | None, str]]:
    rows = ds.select_columns([column])  # row by row: never the whole image column in memory
    for row, (record, target) in enumerate(zip(rows, labels, strict=True)):
        label = f"{source} row {row}"
        yield target, _image(record[column], label), None, label


def hf_accuracy_draft(
    path: Path,
    name: str,
    *,
    split: str | None,
    image_column: str,
    label_column: str,
    dataset: str | None = None,
    classes_file: Path | None = None,
    templates_file: Path | None = None,
) -> AccuracyDraft:
    """An accuracy probe: one class folder per class, images numbered within it."""
    ds = load_split(path, split)
    require_columns(list(ds.column_names), [image_column, label_column], str(path))
    names, labels = _class_list(ds, label_column, dataset, classes_file)
    if templates_file is not None:
        templates = read_templates(templates_file, dataset)
    elif dataset is not None:
        templates = list(dataset_lists(dataset).templates)
    else:
        templates = list(DEFAULT_TEMPLATES)
    classes = [ProbeClassDraft(folder=class_folder(i, n), name=n) for i, n in enumerate(names)]
    raw = _raw_images(ds, image_column, str(path))
    items = _accuracy_items(raw, image_column, labels, str(path))
    return AccuracyDraft(name=name, classes=classes, templates=templates, items=items)


def _bias_rows(
    ds: Any, column: str, values: dict[str, list[str]], source: str
) -> Iterator[tuple[ImageSource, str, dict[str, str], str]]:
    for row, record in enumerate(ds.select_columns([column])):
        label = f"{source} row {row}"
        image = _image(record[column], label)
        yield image, f"{row:06d}.png", {a: v[row] for a, v in values.items()}, label


def hf_bias_draft(
    path: Path,
    name: str,
    *,
    split: str | None,
    image_column: str,
    attributes: list[str],
    queries: list[str],
    templates_file: Path | None = None,
    k: list[int] | None = None,
) -> BiasDraft:
    """A bias probe: images numbered by row, metadata.csv with the attribute columns as text."""
    if not attributes:
        raise InvalidInputError("name at least one --attribute column, or a --label-column")
    ds = load_split(path, split)
    require_columns(list(ds.column_names), [image_column, *attributes], str(path))
    texts, templates = query_texts(queries, templates_file)
    values = {a: _text_values(ds, a) for a in attributes}
    raw = _raw_images(ds, image_column, str(path))
    return BiasDraft(
        name=name,
        attributes=list(attributes),
        queries=texts,
        templates=templates,
        rows=_bias_rows(raw, image_column, values, str(path)),
        k=list(k or []),
    )
