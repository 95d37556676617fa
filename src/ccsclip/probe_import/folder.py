"""Accuracy probes from a class-folder tree (torchvision's ImageFolder layout).

Class names come from a user's file, from clip-benchmark's list for a named dataset, or from the
folder names; templates from a user's file, clip-benchmark's list, or CLIP's plain template.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ccsclip.engine.image_files import list_images
from ccsclip.errors import InvalidInputError, NotFoundError
from ccsclip.probe_import.payload import ImageSource
from ccsclip.probe_import.vocab import (
    DEFAULT_TEMPLATES,
    ClassNamesFile,
    dataset_lists,
    read_class_names,
    read_templates,
)
from ccsclip.probe_import.write import AccuracyDraft, ProbeClassDraft


def class_folders(root: Path) -> list[str]:
    """The tree's class folders, sorted as torchvision's ImageFolder numbers them."""
    if not root.is_dir():
        raise NotFoundError(f"class-folder tree {str(root)!r} does not exist or is not a folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p.name for p in list_images(root, recursive=False, allow_empty=True)]
    if loose:
        raise InvalidInputError(
            f"{root}: images directly in the tree's root belong to no class ({loose[:3]}...); "
            "move them into class folders"
        )
    if len(folders) < 2:
        raise InvalidInputError(
            f"{root}: {len(folders)} class folder(s); a class-folder tree has one folder per "
            "class, at least 2"
        )
    return folders


def _mapping(folders: list[str], given: ClassNamesFile, source: Path) -> list[ProbeClassDraft]:
    if given.folders is not None:
        missing = sorted(set(given.folders) - set(folders))
        if missing:
            raise NotFoundError(f"{source}: folders {missing[:10]} are not in the tree")
        unlisted = sorted(set(folders) - set(given.folders))
        if unlisted:
            raise InvalidInputError(
                f"folders {unlisted[:10]} are not in the class names file {source}; add a "
                "`folder<TAB>name` line for each, or remove those folders"
            )
        pairs = zip(given.folders, given.names, strict=True)
        return [ProbeClassDraft(folder=f, name=n) for f, n in pairs]
    if len(given.names) != len(folders):
        raise InvalidInputError(
            f"{source} names {len(given.names)} classes but the tree has {len(folders)} class "
            "folders (name i goes to the i-th folder in sorted order); list one name per folder "
            "or use `folder<TAB>name` lines"
        )
    return [ProbeClassDraft(folder=f, name=n) for f, n in zip(folders, given.names, strict=True)]


def _items(
    root: Path, classes: list[ProbeClassDraft]
) -> Iterator[tuple[int, ImageSource, str, str]]:
    for index, cls in enumerate(classes):
        files = list_images(root / cls.folder, recursive=False, allow_empty=True)
        for path in files:
            yield index, path, path.stem, str(path)


def folder_draft(
    root: Path,
    name: str,
    *,
    dataset: str | None = None,
    classes_file: Path | None = None,
    templates_file: Path | None = None,
) -> AccuracyDraft:
    """An accuracy probe of the tree at `root` (files keep their names inside class folders)."""
    folders = class_folders(root)
    lists = dataset_lists(dataset) if dataset else None
    if classes_file is not None:
        classes = _mapping(folders, read_class_names(classes_file, dataset), classes_file)
    elif lists is not None:
        names = lists.class_names_for(folders)
        classes = [ProbeClassDraft(folder=f, name=n) for f, n in zip(folders, names, strict=True)]
    else:
        classes = [ProbeClassDraft(folder=f, name=f.replace("_", " ")) for f in folders]
    if templates_file is not None:
        templates = read_templates(templates_file, dataset)
    elif lists is not None:
        templates = list(lists.templates)
    else:
        templates = list(DEFAULT_TEMPLATES)
    return AccuracyDraft(
        name=name, classes=classes, templates=templates, items=_items(root, classes)
    )
