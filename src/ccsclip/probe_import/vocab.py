"""Class names, zero-shot templates and neutral query sets: from clip-benchmark, the user or us.

clip-benchmark ships its per-dataset lists as JSON data files next to its dataset builder; they
are read here as package data, so naming a dataset needs the `clip-benchmark` package but none
of its heavy dependencies (transformers, pycocoevalcap: its captioning and model code only).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ccsclip.errors import InvalidInputError, NotFoundError

DEFAULT_TEMPLATES = ("a photo of a {}.",)
"""CLIP's plain zero-shot template: used when neither a dataset nor a templates file is given."""

_BENCHMARK_PACKAGE = "clip_benchmark.datasets"
_CLASSNAMES_FILE = "en_classnames.json"
_TEMPLATES_FILE = "en_zeroshot_classification_templates.json"
# clip-benchmark takes these datasets' class names from the torchvision dataset's own class
# list with underscores (and sun397's slashes) turned into spaces; the others keep theirs.
_SPACED_FOLDER_NAMES = frozenset({"food101", "sun397"})
_NOT_DATASETS = frozenset({"dummy"})
_QUERY_SETS = resources.files("ccsclip.probe_import") / "queries"


def _benchmark_json(filename: str) -> dict[str, Any]:
    try:
        files = resources.files(_BENCHMARK_PACKAGE)
    except ModuleNotFoundError as exc:
        raise InvalidInputError(
            "naming a dataset needs clip-benchmark's class-name and template lists: "
            "pip install 'ccsclip[data]' (or `pip install --no-deps clip-benchmark==1.6.2`), "
            "or pass --classes and --templates files instead"
        ) from exc
    return json.loads((files / filename).read_text(encoding="utf-8"))


def benchmark_template(text: str) -> str:
    """clip-benchmark writes the class slot as `{c}`; probes use `{}`."""
    return text.replace("{c}", "{}")


def known_datasets() -> list[str]:
    """Dataset names with a template list in clip-benchmark (and class names for some)."""
    names = set(_benchmark_json(_TEMPLATES_FILE)) | set(_benchmark_json(_CLASSNAMES_FILE))
    return sorted(names - _NOT_DATASETS)


@dataclass(frozen=True)
class DatasetLists:
    """What clip-benchmark knows of one dataset: its templates and, for some, class names."""

    name: str
    templates: tuple[str, ...]
    class_names: tuple[str, ...] | None

    def class_names_for(self, folders: list[str]) -> list[str]:
        """Class names for this dataset's classes known by folder (or label) names, in order.

        With a clip-benchmark list, folder i (sorted, as torchvision's ImageFolder numbers
        them) is class i; without one the names come from the folders, as clip-benchmark does.
        """
        if self.class_names is None:
            if self.name in _SPACED_FOLDER_NAMES:
                return [re.sub(r"[_/]", " ", f) for f in folders]
            return list(folders)
        if list(folders) == list(self.class_names):
            return list(folders)
        if len(folders) != len(self.class_names):
            raise InvalidInputError(
                f"dataset {self.name!r} has {len(self.class_names)} classes in clip-benchmark's "
                f"list but the tree has {len(folders)} class folders; import the whole split, "
                "or pass a --classes file naming the folders you have (folder<TAB>name lines)"
            )
        return list(self.class_names)


def dataset_lists(name: str) -> DatasetLists:
    """clip-benchmark's lists for `name`; an unknown name is an error listing the known ones."""
    templates = _benchmark_json(_TEMPLATES_FILE)
    classnames = _benchmark_json(_CLASSNAMES_FILE)
    if name in _NOT_DATASETS or (name not in templates and name not in classnames):
        raise NotFoundError(
            f"unknown dataset name {name!r}; clip-benchmark knows: {', '.join(known_datasets())}"
            " (or pass --classes and --templates files)"
        )
    chosen = templates.get(name, templates["imagenet1k"])  # clip-benchmark's own fallback
    if not isinstance(chosen, list):
        raise InvalidInputError(f"clip-benchmark's templates of {name!r} are not a list")
    names = classnames.get(name)
    return DatasetLists(
        name=name,
        templates=tuple(benchmark_template(t) for t in chosen),
        class_names=tuple(names) if names is not None else None,
    )


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise NotFoundError(f"file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text: {exc}") from exc
    return [
        line.rstrip("\r\n")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _json_list(path: Path, key: str | None, what: str) -> list[Any]:
    """A JSON list, or clip-benchmark's custom-file layout {dataset name: list}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        if key is None or key not in data:
            raise InvalidInputError(
                f"{path}: a mapping of dataset name to {what}; name one with --dataset "
                f"(keys: {sorted(data)[:20]})"
            )
        data = data[key]
    if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
        raise InvalidInputError(f"{path}: expected a list of {what} (strings)")
    return data


@dataclass(frozen=True)
class ClassNamesFile:
    """A user's class names: `names` in class-index order, or an explicit folder -> name map."""

    names: tuple[str, ...]
    folders: tuple[str, ...] | None = None


def read_class_names(path: Path, dataset: str | None = None) -> ClassNamesFile:
    """`.txt`: one class name a line (class-index order) or `folder<TAB>name` lines; `.json`: a
    list, or clip-benchmark's {dataset: list} layout (with --dataset)."""
    if path.suffix.lower() == ".json":
        names = _json_list(path, dataset, "class names")
        folders = None
    else:
        lines = _lines(path)
        tabbed = ["\t" in line for line in lines]
        if any(tabbed) and not all(tabbed):
            raise InvalidInputError(
                f"{path}: either every line is `folder<TAB>name` or none is (one name a line)"
            )
        if all(tabbed) and lines:
            pairs = [line.split("\t", 1) for line in lines]
            folders = tuple(f.strip() for f, _ in pairs)
            names = [n.strip() for _, n in pairs]
        else:
            folders = None
            names = [line.strip() for line in lines]
    if len(names) < 2:
        raise InvalidInputError(f"{path}: lists {len(names)} class(es); a probe needs at least 2")
    for label, values in (("class names", names), ("folders", folders or ())):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise InvalidInputError(f"{path}: duplicate {label}: {dupes}")
    return ClassNamesFile(names=tuple(names), folders=folders)


def read_templates(path: Path, dataset: str | None = None) -> list[str]:
    """`.txt`: one template a line with `{}` (or clip-benchmark's `{c}`) for the class; `.json`: a
    list, or clip-benchmark's {dataset: list} layout."""
    if path.suffix.lower() == ".json":
        raw = _json_list(path, dataset, "templates")
    else:
        raw = [line.strip() for line in _lines(path)]
    if not raw:
        raise InvalidInputError(f"{path}: no templates")
    return [benchmark_template(t) for t in raw]


@dataclass(frozen=True)
class QuerySet:
    """Neutral queries of a bias probe, with the templates they are meant for."""

    name: str
    queries: tuple[str, ...]
    templates: tuple[str, ...]


def query_set_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in _QUERY_SETS.iterdir() if p.name.endswith(".yaml")
    )


def read_query_set(name_or_path: str) -> QuerySet:
    """A shipped set by name (occupations, traits) or a file with one query a line."""
    shipped = _QUERY_SETS / f"{name_or_path}.yaml"
    if shipped.is_file():
        data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
        return QuerySet(
            name=data["name"], queries=tuple(data["queries"]), templates=tuple(data["templates"])
        )
    path = Path(name_or_path)
    if not path.is_file():
        raise NotFoundError(
            f"--queries {name_or_path!r} is neither a shipped query set "
            f"({', '.join(query_set_names())}) nor an existing file (one query a line)"
        )
    queries = tuple(line.strip() for line in _lines(path))
    if not queries:
        raise InvalidInputError(f"{path}: no queries")
    return QuerySet(name=path.stem, queries=queries, templates=DEFAULT_TEMPLATES)
