"""Description pools: the v1 format, its error messages, and the shipped general pool."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from ccsclip.errors import InvalidInputError, NotFoundError
from ccsclip.profiles.rank.pool import (
    HEADER,
    MAX_REPORTED_ERRORS,
    DescriptionPool,
    load_pool,
    normalise_key,
    parse_pool,
    shipped_pools,
    write_pool,
)

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "scripts" / "make_general_pool.py"


def _error(text: str, name: str = "p") -> str:
    with pytest.raises(InvalidInputError) as info:
        parse_pool(text, name)
    return str(info.value)


# ---------------------------------------------------------------- good files


def test_parse_tagged_pool_with_header_and_comments() -> None:
    text = (
        f"{HEADER}\n"
        "# colours and food\n"
        "a photo of a red apple\tcolour,food\n"
        "  # an indented comment\n"
        "  snowy mountain peak  \t nature \n"
    )
    pool = parse_pool(text, "mine")
    assert pool.name == "mine"
    assert pool.descriptions == ("a photo of a red apple", "snowy mountain peak")
    assert pool.tags == (frozenset({"colour", "food"}), frozenset({"nature"}))
    assert pool.is_tagged
    assert pool.concepts == ("colour", "food", "nature")
    assert pool.concept_counts() == {"colour": 1, "food": 1, "nature": 1}
    assert len(pool) == 2


def test_parse_untagged_pool() -> None:
    pool = parse_pool("a dog\na cat\n", "plain")
    assert pool.descriptions == ("a dog", "a cat")
    assert pool.tags is None
    assert not pool.is_tagged
    assert pool.concepts == ()
    assert pool.concept_counts() == {}


def test_crlf_bom_trailing_blank_lines_and_no_final_newline_are_accepted() -> None:
    assert parse_pool("\ufeffa dog\r\na cat\r\n\r\n\n  \n", "p").descriptions == ("a dog", "a cat")
    assert parse_pool("a dog\na cat", "p").descriptions == ("a dog", "a cat")


def test_description_of_exactly_200_characters_is_accepted() -> None:
    assert len(parse_pool("x" * 200 + "\n", "p").descriptions[0]) == 200


def test_repeated_tag_on_a_line_counts_once() -> None:
    pool = parse_pool("a red car\tcolour,vehicle,colour\n", "p")
    assert pool.tags == (frozenset({"colour", "vehicle"}),)


# ---------------------------------------------------------------- errors, with line numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a dog\n\na cat\n", "p:2: blank line inside the file"),
        ("a dog\tanimal\n\tcolour\n", "p:2: empty description"),
        ("a dog\tanimal\n   \tcolour\n", "p:2: empty description"),
        ("a dog\tanimal\na cat\tColour!\n", "p:2: bad tag 'Colour!' (tags are lowercase"),
        ("a dog\tanimal\na cat\t1st\n", "p:2: bad tag '1st'"),
        ("a dog\tanimal\na cat\tanimal,,pet\n", "p:2: empty tag"),
        ("a dog\tanimal\na cat\t  \n", "p:2: a tab but no tags"),
        ("a dog\tanimal\na\tcat\tanimal\n", "p:2: 2 tabs"),
        ("a dog\n" + "y" * 201 + "\n", "p:2: description is 201 characters long; the limit is 200"),
        ("a dog\na c\x07t\n", "p:2: description contains control character U+0007"),
        ("# ccsclip-pool v2\na dog\n", "p:1: unsupported header"),
        ("", "p:1: the pool has no descriptions"),
        (f"{HEADER}\n# only comments\n", "p:2: the pool has no descriptions"),
    ],
)
def test_each_error_names_its_line(text: str, expected: str) -> None:
    message = _error(text)
    assert expected in message
    assert message.startswith("invalid description pool p: 1 problem(s)")


def test_duplicates_ignore_case_and_spacing_and_name_the_first_line() -> None:
    message = _error("# pool\na red  car\tcolour\na dog\tanimal\n  A RED car \tvehicle\n")
    assert "p:4: duplicate of line 2: 'A RED car'" in message


def test_mixed_tagged_and_untagged_is_rejected_at_the_odd_line() -> None:
    message = _error("a dog\tanimal\na cat\tanimal\na bird\na fish\tanimal\n")
    assert "p:3: mixed tagged and untagged lines: tag every line or none" in message
    assert "3 tagged, first at line 1; 1 untagged, first at line 3" in message


def test_errors_are_collected_sorted_and_capped() -> None:
    lines = ["a dog\tanimal"] + [f"thing {i}\tBAD" for i in range(30)]
    message = _error("\n".join(lines) + "\n")
    reported = re.findall(r"^  p:(\d+): ", message, flags=re.MULTILINE)
    assert len(reported) == MAX_REPORTED_ERRORS
    assert [int(n) for n in reported] == sorted(int(n) for n in reported)
    assert reported[0] == "2"
    assert f"and {30 - MAX_REPORTED_ERRORS} more problem(s)" in message
    assert "30 problem(s)" in message


def test_several_kinds_of_error_in_one_file_are_all_reported() -> None:
    message = _error("a dog\tanimal\n\n\tx\na dog\tanimal\n")
    assert "p:2: blank line" in message
    assert "p:3: empty description" in message
    assert "p:4: duplicate of line 1" in message


def test_load_pool_reports_errors_against_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("a dog\tanimal\na cat\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=re.escape(f"{path}:2: mixed tagged")):
        load_pool(path)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"a dog\na caf\xe9\n")
    with pytest.raises(InvalidInputError, match=re.escape(f"{path}:2: not valid UTF-8")):
        load_pool(path)


def test_pool_rejects_tags_of_the_wrong_length() -> None:
    with pytest.raises(InvalidInputError, match="2 descriptions but 1 tag sets"):
        DescriptionPool("p", ("a", "b"), (frozenset({"x"}),), "0" * 64)


# ---------------------------------------------------------------- files, names, hashes


def test_sha256_is_of_the_file_bytes_and_stable(tmp_path: Path) -> None:
    data = f"{HEADER}\na dog\tanimal\na red car\tcolour,vehicle\n".encode()
    first, second = tmp_path / "one.txt", tmp_path / "sub" / "two.txt"
    second.parent.mkdir()
    first.write_bytes(data)
    second.write_bytes(data)
    assert load_pool(first).sha256 == hashlib.sha256(data).hexdigest()
    assert load_pool(first).sha256 == load_pool(second).sha256
    assert load_pool(first).name == "one"
    assert parse_pool(data.decode(), "x").sha256 == hashlib.sha256(data).hexdigest()
    first.write_bytes(data.replace(b"a dog", b"a cat"))
    assert load_pool(first).sha256 != load_pool(second).sha256


def test_unknown_name_and_missing_file_raise_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no shipped description pool named 'nosuch'.*general"):
        load_pool("nosuch")
    with pytest.raises(NotFoundError, match="description pool file not found"):
        load_pool(tmp_path / "missing.txt")
    with pytest.raises(InvalidInputError, match="not a file"):
        load_pool(tmp_path)


def test_bare_names_prefer_shipped_pools_and_paths_reach_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("general").write_text("a local dog\n", encoding="utf-8")
    Path("mine").write_text("a local cat\n", encoding="utf-8")
    assert load_pool("general").is_tagged
    assert load_pool("./general").descriptions == ("a local dog",)
    assert load_pool("mine").descriptions == ("a local cat",)
    assert load_pool(Path("general")).name == "general"
    assert not load_pool(Path("general")).is_tagged


def test_write_pool_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out" / "mine.txt"
    written = write_pool(
        path, [" a dog ", "a red car"], [["animal"], {"vehicle", "colour"}], comments=["hello"]
    )
    assert path.read_text(encoding="utf-8") == (
        f"{HEADER}\n# hello\na dog\tanimal\na red car\tcolour,vehicle\n"
    )
    loaded = load_pool(path)
    assert loaded == written
    assert loaded.descriptions == ("a dog", "a red car")
    untagged = write_pool(tmp_path / "plain.txt", ["a dog", "a cat"])
    assert untagged.tags is None
    assert load_pool(tmp_path / "plain.txt") == untagged


@pytest.mark.parametrize(
    ("descriptions", "tags", "match"),
    [
        (["a dog", "A  dog"], None, r"start at line 2\):3: duplicate of line 2"),
        (["a dog", "a cat"], [["animal"], []], "has no tags"),
        (["a dog"], [["animal"], ["animal"]], "1 descriptions but 2 tag sets"),
        (["a dog\na cat"], None, "line break"),
        (["a dog"], [["Animal"]], "bad tag 'Animal'"),
    ],
)
def test_write_pool_refuses_bad_input_and_leaves_the_old_file(
    tmp_path: Path, descriptions: list[str], tags: list[list[str]] | None, match: str
) -> None:
    path = tmp_path / "keep.txt"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=match):
        write_pool(path, descriptions, tags)
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


# ---------------------------------------------------------------- the shipped general pool


@pytest.fixture(scope="module")
def general() -> DescriptionPool:
    return load_pool("general")


def test_general_is_shipped_and_loads_by_name(general: DescriptionPool) -> None:
    assert "general" in shipped_pools()
    assert general.name == "general"
    assert general.is_tagged
    assert len(general) >= 3000


def test_general_has_balanced_concepts(general: DescriptionPool) -> None:
    counts = general.concept_counts()
    assert len(counts) >= 20
    assert min(counts.values()) >= 100, counts
    assert max(counts.values()) <= 2 * min(counts.values()), counts
    required = {
        "colour", "location", "animal", "people", "object", "shape", "text", "number",
        "texture", "material", "nature", "body", "profession", "food", "vehicle", "art",
        "lighting", "weather", "emotion", "architecture",
    }  # fmt: skip
    assert required <= set(counts)


def test_general_has_no_duplicates_and_short_caption_lines(general: DescriptionPool) -> None:
    keys = [normalise_key(d) for d in general.descriptions]
    assert len(set(keys)) == len(keys)
    lengths = Counter(len(d.split()) for d in general.descriptions)
    assert min(lengths) >= 2 and max(lengths) <= 10, lengths
    assert general.tags is not None
    assert all(1 <= len(t) <= 2 for t in general.tags)
    single = sum(len(t) == 1 for t in general.tags)
    assert single >= 0.8 * len(general)


def test_general_phrasing_is_varied(general: DescriptionPool) -> None:
    starts = Counter(" ".join(d.lower().split()[:3]) for d in general.descriptions)
    prefix, count = starts.most_common(1)[0]
    assert count <= 0.03 * len(general), (prefix, count)
    skeletons = Counter(
        " ".join(w for w in d.lower().split() if w in {"a", "an", "the", "of", "in", "on"})
        for d in general.descriptions
    )
    assert len(skeletons) >= 50


def test_general_is_reproduced_by_its_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("make_general_pool", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path / "general.txt"
    assert module.main(["--out", str(out)]) == 0
    shipped = ROOT / "src" / "ccsclip" / "profiles" / "pools" / "general.txt"
    assert out.read_bytes() == shipped.read_bytes(), "rerun scripts/make_general_pool.py"
