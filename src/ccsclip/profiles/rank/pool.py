"""Description pools: the candidate texts TextSpan chooses from to describe each head.

Format v1 (UTF-8, one description per line)::

    # ccsclip-pool v1
    # a comment
    a photo of a red apple<TAB>colour,food
    snowy mountain peak<TAB>nature

A line is ``description<TAB>tag[,tag...]`` or just ``description``. A pool is either fully
tagged (the offline ``tags`` judge can use it) or fully untagged (needs the ``embedding`` or
``llm`` judge). Every problem is reported as ``path:line: what is wrong`` so a broken file can be
fixed in one pass. See docs/pools.md.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ccsclip.errors import InvalidInputError, NotFoundError
from ccsclip.fileio import atomic_write_text, sha256_bytes

HEADER = "# ccsclip-pool v1"
MAX_DESCRIPTION_CHARS = 200
MAX_REPORTED_ERRORS = 20
TAG_RE = re.compile(r"[a-z][a-z0-9_-]*")
_HEADER_RE = re.compile(r"#\s*ccsclip-pool\b(.*)")
_BARE_NAME_RE = re.compile(r"[a-z][a-z0-9_-]*")
_FORMAT_HINT = (
    "format: one description per line, 'description<TAB>tag,tag' or just 'description' "
    "(all lines tagged or none); '#' starts a comment; see docs/pools.md"
)


@dataclass(frozen=True)
class DescriptionPool:
    """A parsed pool; `sha256` identifies the exact file so ccs.json can pin which pool it used."""

    name: str
    descriptions: tuple[str, ...]
    tags: tuple[frozenset[str], ...] | None
    sha256: str

    def __post_init__(self) -> None:
        if self.tags is not None and len(self.tags) != len(self.descriptions):
            raise InvalidInputError(
                f"pool {self.name!r}: {len(self.descriptions)} descriptions but "
                f"{len(self.tags)} tag sets; give one tag set per description or tags=None"
            )

    def __len__(self) -> int:
        return len(self.descriptions)

    @property
    def is_tagged(self) -> bool:
        """Whether the offline `tags` judge can label this pool's descriptions."""
        return self.tags is not None

    @property
    def concepts(self) -> tuple[str, ...]:
        """All tags used in the pool, sorted; empty for an untagged pool."""
        if self.tags is None:
            return ()
        return tuple(sorted(set().union(*self.tags)))

    def concept_counts(self) -> dict[str, int]:
        """Lines per tag (a line with two tags counts for both), sorted by tag."""
        counts: Counter[str] = Counter()
        for line_tags in self.tags or ():
            counts.update(line_tags)
        return dict(sorted(counts.items()))


@dataclass
class _Problems:
    """Collects `line: message` pairs so one error lists everything wrong with a file."""

    source: str
    items: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, message: str) -> None:
        self.items.append((line, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        ordered = sorted(self.items, key=lambda item: item[0])
        shown = [f"  {self.source}:{line}: {msg}" for line, msg in ordered[:MAX_REPORTED_ERRORS]]
        hidden = len(ordered) - len(shown)
        if hidden:
            shown.append(f"  ... and {hidden} more problem(s) not shown")
        count = len(ordered)
        raise InvalidInputError(
            f"invalid description pool {self.source}: {count} problem(s)\n"
            + "\n".join(shown)
            + f"\n{_FORMAT_HINT}"
        )


def normalise_key(description: str) -> str:
    """Key under which two descriptions count as duplicates (case and spacing ignored)."""
    return " ".join(description.split()).casefold()


def _split_lines(text: str) -> list[str]:
    """Split on LF only (str.splitlines would also split on form feeds and U+2028)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_header(line: str, problems: _Problems) -> None:
    """Reject a header for another format version rather than misreading the file."""
    match = _HEADER_RE.fullmatch(line.strip())
    if match and match.group(1).strip() != "v1":
        problems.add(
            1,
            f"unsupported header {line.strip()!r}: this ccsclip reads {HEADER!r} "
            "(fix the header or upgrade ccsclip)",
        )


def _check_description(desc: str, lineno: int, problems: _Problems) -> bool:
    """Validate one stripped description; returns whether it is usable."""
    if not desc:
        problems.add(lineno, "empty description (write one before the tab, or delete the line)")
        return False
    ok = True
    if len(desc) > MAX_DESCRIPTION_CHARS:
        problems.add(
            lineno,
            f"description is {len(desc)} characters long; the limit is "
            f"{MAX_DESCRIPTION_CHARS} (shorten it)",
        )
        ok = False
    control = next((ch for ch in desc if unicodedata.category(ch) == "Cc"), None)
    if control is not None:
        problems.add(
            lineno, f"description contains control character U+{ord(control):04X} (remove it)"
        )
        ok = False
    return ok


def _parse_tags(field_text: str, lineno: int, problems: _Problems) -> frozenset[str] | None:
    """Parse the text after the tab; None when it is unusable (problems recorded)."""
    if not field_text.strip():
        problems.add(lineno, "a tab but no tags after it (add tags, or remove the tab)")
        return None
    tags: set[str] = set()
    ok = True
    for raw in field_text.split(","):
        tag = raw.strip()
        if not tag:
            problems.add(lineno, f"empty tag in {field_text.strip()!r} (remove the extra comma)")
            ok = False
        elif not TAG_RE.fullmatch(tag):
            problems.add(lineno, f"bad tag {tag!r} (tags are lowercase [a-z][a-z0-9_-]*)")
            ok = False
        else:
            tags.add(tag)
    return frozenset(tags) if ok else None


def _check_mixed(tagged: list[int], untagged: list[int], problems: _Problems) -> None:
    """A pool is all tagged or all untagged; point at the first line of the minority kind."""
    if not tagged or not untagged:
        return
    where = untagged[0] if len(untagged) <= len(tagged) else tagged[0]
    problems.add(
        where,
        "mixed tagged and untagged lines: tag every line or none "
        f"({len(tagged)} tagged, first at line {tagged[0]}; "
        f"{len(untagged)} untagged, first at line {untagged[0]})",
    )


def _parse(text: str, name: str, source: str, sha256: str) -> DescriptionPool:
    """Parse pool text, reporting every problem against `source` with its line number."""
    problems = _Problems(source)
    lines = _split_lines(text)
    last_content = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    descriptions: list[str] = []
    tag_sets: list[frozenset[str] | None] = []
    tagged_lines: list[int] = []
    untagged_lines: list[int] = []
    first_seen: dict[str, int] = {}
    for index, line in enumerate(lines[: last_content + 1]):
        lineno = index + 1
        if not line.strip():
            problems.add(
                lineno,
                "blank line inside the file (blank lines are allowed only at the end; "
                "delete it or start it with '#')",
            )
            continue
        if line.lstrip().startswith("#"):
            if lineno == 1:
                _check_header(line, problems)
            continue
        parts = line.split("\t")
        if len(parts) > 2:
            problems.add(
                lineno,
                f"{len(parts) - 1} tabs: a line is 'description<TAB>tags' and a description "
                "cannot contain a tab (replace the extra tabs with spaces)",
            )
            continue
        desc = parts[0].strip()
        (tagged_lines if len(parts) == 2 else untagged_lines).append(lineno)
        tags = _parse_tags(parts[1], lineno, problems) if len(parts) == 2 else None
        if not _check_description(desc, lineno, problems):
            continue
        key = normalise_key(desc)
        if key in first_seen:
            problems.add(
                lineno,
                f"duplicate of line {first_seen[key]}: {desc!r} (descriptions must be unique "
                "ignoring case and spacing; delete one)",
            )
            continue
        first_seen[key] = lineno
        descriptions.append(desc)
        tag_sets.append(tags)
    _check_mixed(tagged_lines, untagged_lines, problems)
    if last_content < 0 or (not descriptions and not problems.items):
        problems.add(max(len(lines), 1), "the pool has no descriptions (add at least one line)")
    problems.raise_if_any()
    tags_out = None if not tagged_lines else tuple(t for t in tag_sets if t is not None)
    return DescriptionPool(name, tuple(descriptions), tags_out, sha256)


def parse_pool(text: str, name: str, *, source: str | None = None) -> DescriptionPool:
    """Parse pool text; `source` (default: `name`) prefixes error locations, sha256 is of UTF-8."""
    return _parse(text, name, source or name, sha256_bytes(text.encode("utf-8")))


def _pools_dir() -> Traversable:
    return resources.files("ccsclip.profiles").joinpath("pools")


def shipped_pools() -> list[str]:
    """Names of the pools that ship inside the package (loadable by bare name)."""
    directory = _pools_dir()
    if not directory.is_dir():
        return []
    return sorted(
        entry.name[: -len(".txt")]
        for entry in directory.iterdir()
        if entry.name.endswith(".txt") and entry.is_file()
    )


def _resolve(path_or_name: str | os.PathLike[str]) -> tuple[Traversable | Path, str, str]:
    """Map a bare shipped-pool name or a file path to (resource, name, source for messages)."""
    shipped = shipped_pools()
    choices = ", ".join(shipped) or "none"
    if isinstance(path_or_name, str) and _BARE_NAME_RE.fullmatch(path_or_name):
        if path_or_name in shipped:
            resource = _pools_dir().joinpath(f"{path_or_name}.txt")
            return resource, path_or_name, f"<shipped pool {path_or_name}>"
        if not Path(path_or_name).is_file():
            raise NotFoundError(
                f"no shipped description pool named {path_or_name!r}; shipped pools: {choices} "
                "(or pass the path of a pool file)"
            )
    path = Path(path_or_name)
    if not path.exists():
        raise NotFoundError(
            f"description pool file not found: {path} (shipped pools, loadable by name: {choices})"
        )
    if not path.is_file():
        raise InvalidInputError(f"description pool path is not a file: {path}")
    return path, path.stem, str(path)


def _decode(data: bytes, source: str) -> str:
    """Decode UTF-8, naming the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"invalid description pool {source}: {source}:{lineno}: not valid UTF-8 "
            f"(byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8"
        ) from None


def load_pool(path_or_name: str | os.PathLike[str]) -> DescriptionPool:
    """Load a pool file, or a shipped pool by bare name (e.g. 'general'); sha256 is of the bytes."""
    resource, name, source = _resolve(path_or_name)
    data = resource.read_bytes()
    return _parse(_decode(data, source), name, source, sha256_bytes(data))


def _format_line(description: str, tags: Iterable[str] | None) -> str:
    if tags is None:
        return description
    return f"{description}\t{','.join(sorted(set(tags)))}"


def _check_writable(
    descriptions: Sequence[str], tags: Sequence[Iterable[str]] | None
) -> list[list[str]] | None:
    """Catch what would corrupt the line structure before it becomes a confusing parse error."""
    if tags is not None and len(tags) != len(descriptions):
        raise InvalidInputError(
            f"{len(descriptions)} descriptions but {len(tags)} tag sets; give one per description"
        )
    for i, desc in enumerate(descriptions):
        if "\n" in desc or "\r" in desc:
            raise InvalidInputError(f"description {i} contains a line break: {desc!r}")
    if tags is None:
        return None
    tag_lists = [list(t) for t in tags]
    for i, line_tags in enumerate(tag_lists):
        if not line_tags:
            raise InvalidInputError(
                f"description {i} ({descriptions[i]!r}) has no tags; a tagged pool tags every line"
            )
    return tag_lists


def write_pool(
    path: str | os.PathLike[str],
    descriptions: Sequence[str],
    tags: Sequence[Iterable[str]] | None = None,
    *,
    comments: Iterable[str] = (),
) -> DescriptionPool:
    """Validate then atomically write a pool (header, `# comments`, lines); returns it as loaded."""
    tag_lists = _check_writable(descriptions, tags)
    comment_lines = [f"# {c}".rstrip() for c in comments]
    if any("\n" in c or "\r" in c for c in comment_lines):
        raise InvalidInputError("pool comments must be single lines")
    body = [
        _format_line(desc.strip(), None if tag_lists is None else tag_lists[i])
        for i, desc in enumerate(descriptions)
    ]
    text = "\n".join([HEADER, *comment_lines, *body]) + "\n"
    target = Path(path)
    source = f"{target} (not written; descriptions start at line {len(comment_lines) + 2})"
    pool = _parse(text, target.stem, source, sha256_bytes(text.encode("utf-8")))
    atomic_write_text(target, text)
    return pool
