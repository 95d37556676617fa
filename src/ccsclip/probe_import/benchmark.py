"""Accuracy probes through clip-benchmark's dataset builders, from data already on disk.

The builder reads torchvision layouts (cifar10, cifar100, food101, imagenet1k, fer2013, ...) and
webdataset shards (`wds/<name>`: `<root>/<split>/nshards.txt`, `0.tar`..., `classnames.txt`,
`zeroshot_classification_templates.txt`). It is always called with `download=False` on a root
that exists: several builders fetch data when the root is missing, and an import never
downloads.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ccsclip.errors import InvalidInputError, NotFoundError
from ccsclip.probe_import.payload import ImageSource
from ccsclip.probe_import.vocab import benchmark_template, read_class_names, read_templates
from ccsclip.probe_import.write import AccuracyDraft, ProbeClassDraft, class_folder

# Builders that fetch data whatever `download` says, or that need TensorFlow: refused.
_FETCHING = ("imagenetv2", "tfds/", "vtab/")


def _build(dataset: str, root: Path, split: str) -> Any:
    try:
        from clip_benchmark.datasets import builder
    except ModuleNotFoundError as exc:
        raise InvalidInputError(
            "clip-benchmark's dataset builders need clip-benchmark: pip install 'ccsclip[data]' "
            "(or `pip install --no-deps clip-benchmark==1.6.2 webdataset==1.0.2`)"
        ) from exc
    if dataset.startswith(_FETCHING):
        raise InvalidInputError(
            f"clip-benchmark's {dataset!r} builder downloads or needs TensorFlow; export the "
            "data as a class-folder tree and use `ccsclip probe import folder`"
        )
    task = builder.get_dataset_default_task(dataset)
    if task != "zeroshot_classification":
        raise InvalidInputError(
            f"{dataset!r} is a {task} dataset in clip-benchmark; a probe needs a classification one"
        )
    if not root.is_dir():
        raise NotFoundError(
            f"--root {str(root)!r} does not exist: put {dataset}'s files there first "
            "(ccsclip never downloads a dataset)"
        )
    try:
        with warnings.catch_warnings():  # the builder leaves webdataset's shard order unset
            warnings.filterwarnings("ignore", message=r"WebDataset\(shardshuffle")
            return builder.build_dataset(
                dataset, root=str(root), transform=None, split=split, download=False
            )
    except ValueError as exc:
        if "Unsupported dataset" in str(exc):
            raise NotFoundError(
                f"unknown dataset name {dataset!r} for clip-benchmark's builders (cifar10, "
                "cifar100, food101, imagenet1k, fer2013, wds/<name>, ...)"
            ) from exc
        raise InvalidInputError(f"clip-benchmark could not read {dataset}: {exc}") from exc
    except AssertionError as exc:
        raise InvalidInputError(f"clip-benchmark refused {dataset} split {split!r}: {exc}") from exc
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise NotFoundError(
            f"clip-benchmark found no {dataset} data under {root} ({exc}); put the dataset's "
            "torchvision or webdataset layout there (ccsclip never downloads)"
        ) from exc


def _items(ds: Any, n_classes: int, source: str) -> Iterator[tuple[int, ImageSource, None, str]]:
    samples = getattr(ds, "samples", None)
    if isinstance(samples, list):  # ImageFolder-based: copy the files themselves
        for path, target in samples:
            yield int(target), Path(path), None, str(path)
        return
    if hasattr(ds, "__len__"):
        for i in range(len(ds)):
            image, target = ds[i]
            yield int(target), image, None, f"{source} item {i}"
        return
    iterator = iter(ds)
    index = 0
    while True:
        label = f"{source} item {index}"
        try:
            image, target = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # a shard entry that does not decode
            raise InvalidInputError(
                f"cannot read image {label}: {exc}; replace or remove it, then import again"
            ) from exc
        yield int(target), image, None, label
        index += 1


def benchmark_draft(
    dataset: str,
    root: Path,
    name: str,
    *,
    split: str = "test",
    classes_file: Path | None = None,
    templates_file: Path | None = None,
) -> AccuracyDraft:
    """An accuracy probe of clip-benchmark's `dataset` under `root` with its class names and
    templates (or the user's files), one numbered image file per item."""
    ds = _build(dataset, root, split)
    names = list(ds.classes) if getattr(ds, "classes", None) else None
    if classes_file is not None:
        names = list(read_class_names(classes_file, dataset).names)
    if not names:
        raise InvalidInputError(f"{dataset} under {root} names no classes; pass --classes")
    templates_raw = getattr(ds, "templates", None)
    if templates_file is not None:
        templates = read_templates(templates_file, dataset)
    elif isinstance(templates_raw, list) and templates_raw:
        templates = [benchmark_template(t) for t in templates_raw]
    else:
        raise InvalidInputError(f"{dataset} under {root} has no list templates; pass --templates")
    classes = [ProbeClassDraft(folder=class_folder(i, n), name=n) for i, n in enumerate(names)]
    source = f"{dataset} ({root}, {split})"
    return AccuracyDraft(
        name=name, classes=classes, templates=templates, items=_items(ds, len(names), source)
    )
