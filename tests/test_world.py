"""The organism world: determinism, labels that match pixels, true captions, planted bias,
multi-positive matrix, probe directories and the tagged description pool."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.organism import probes as P
from ccsclip.organism import world as W
from ccsclip.probeset import (
    AccuracyProbe,
    BiasProbe,
    compute_content_sha256,
    load_probe,
    write_probe_yaml,
)

PALETTE = np.array([W.OBJECT_RGB[c] for c in W.CONCEPTS["colour"]], dtype=np.float64)


def _quadrant_slices(position: str, size: int) -> tuple[slice, slice]:
    half = size // 2
    rows = slice(0, half) if position.startswith("top") else slice(half, size)
    cols = slice(0, half) if position.endswith("left") else slice(half, size)
    return rows, cols


def _preferred_rate(scenes: list[W.Scene], config: W.WorldConfig) -> float:
    return float(np.mean([s.colour == config.preferred_colour[s.shape] for s in scenes]))


# ----------------------------------------------------------------------------- world basics


def test_modules_do_not_import_torch() -> None:
    """In a fresh interpreter: other test files may have imported torch into this one."""
    code = (
        "import sys, ccsclip.organism.world, ccsclip.organism.probes, ccsclip.probeset; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    src = str(Path(W.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_generate_is_deterministic_and_seeds_differ() -> None:
    a = W.generate(48, 7, "train")
    b = W.generate(48, 7, "train")
    assert a.images.dtype == np.uint8 and a.images.shape == (48, 32, 32, 3)
    assert a.labels.dtype == np.int64 and a.labels.shape == (48, len(W.CONCEPTS))
    assert a.images.tobytes() == b.images.tobytes()
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    c = W.generate(48, 8, "train")
    assert a.images.tobytes() != c.images.tobytes()
    assert a.texts != c.texts
    test_split = W.generate(48, 7, "test")
    assert a.images.tobytes() != test_split.images.tobytes()
    assert np.array_equal(a.labels, W.scene_labels(a.scenes))
    assert [W.scene_from_labels(row) for row in a.labels] == a.scenes


def test_iter_batches_streams_deterministic_independent_batches() -> None:
    first = list(W.iter_batches(16, 3, "train", n_batches=3))
    assert [len(b) for b in first] == [16, 16, 16]
    resumed = next(W.iter_batches(16, 3, "train", start=2))
    assert resumed.images.tobytes() == first[2].images.tobytes()
    assert resumed.texts == first[2].texts
    assert first[0].images.tobytes() != first[1].images.tobytes()
    with pytest.raises(InvalidInputError, match="valid splits"):
        next(W.iter_batches(16, 3, "validation"))  # type: ignore[arg-type]


def test_invalid_values_are_rejected_with_choices() -> None:
    with pytest.raises(InvalidInputError, match="valid values: circle"):
        W.Scene("blob", "red", "small", "top_left", "plain", "dark")
    with pytest.raises(InvalidInputError, match="valid concepts"):
        W.class_phrase("texture", "plain")
    with pytest.raises(ValidationError):
        W.WorldConfig(image_size=36)
    with pytest.raises(ValidationError):
        W.WorldConfig(extra_field=1)
    with pytest.raises(InvalidInputError, match="preferred_colour"):
        W.make_config(preferred_colour={"circle": "red"})
    with pytest.raises(InvalidInputError):
        W.generate(4, -1, "train")


# ----------------------------------------------------------------------------- pixels vs labels


def test_labels_match_pixels() -> None:
    rng = np.random.default_rng(11)
    scenes = W.sample_scenes(240, rng, None)
    areas: dict[tuple[str, str], list[float]] = {}
    for scene in scenes:
        image, alpha = W.render_with_mask(scene, rng, 32)
        pixels = image.astype(np.float64)
        core = alpha > 0.9
        assert core.sum() >= 10, scene
        # colour: the object's mean colour is nearest to the named colour
        mean = pixels[core].mean(axis=0)
        nearest = W.CONCEPTS["colour"][int(np.argmin(((PALETTE - mean) ** 2).sum(axis=1)))]
        assert nearest == scene.colour, (scene, mean)
        # position: centroid in the quadrant, and nothing drawn outside it
        ys, xs = np.nonzero(alpha > 0.5)
        rows, cols = _quadrant_slices(scene.position, 32)
        assert rows.start <= ys.mean() < rows.stop and cols.start <= xs.mean() < cols.stop
        outside = alpha.copy()
        outside[rows, cols] = 0
        assert outside.max() == 0.0, scene
        # background: grey (low saturation) wherever the object is absent
        background = pixels[alpha == 0]
        assert (background.max(axis=1) - background.min(axis=1)).max() <= 8
        areas.setdefault((scene.shape, scene.size), []).append(float(alpha.sum()))
    for shape in W.CONCEPTS["shape"]:
        assert min(areas[(shape, "large")]) > max(areas[(shape, "small")]), shape


def test_drawn_pixels_are_the_object_on_plain_backgrounds() -> None:
    rng = np.random.default_rng(5)
    for scene in W.sample_scenes(60, rng, None, fixed={"pattern": "plain"}):
        image, alpha = W.render_with_mask(scene, rng, 32)
        diff = np.abs(image.astype(np.int16) - np.median(image.reshape(-1, 3), axis=0)).max(-1)
        assert (diff[alpha > 0.9] > 50).all(), scene
        assert (diff[alpha == 0] <= 25).all(), scene


def test_larger_images_keep_labels() -> None:
    rng = np.random.default_rng(2)
    for scene in W.sample_scenes(12, rng, None):
        image, alpha = W.render_with_mask(scene, rng, 64)
        assert image.shape == (64, 64, 3)
        rows, cols = _quadrant_slices(scene.position, 64)
        assert alpha[rows, cols].sum() == pytest.approx(alpha.sum())
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        W.render(scene, rng, 36)


def test_shapes_are_distinct_when_small() -> None:
    radius = W._SIZE_RADIUS["small"] * 32 * 0.94  # the smallest object drawn at 32 px
    masks = {s: W.shape_mask(s, radius, 32) for s in W.CONCEPTS["shape"]}
    for a, b in itertools.combinations(masks, 2):
        differing = np.abs(masks[a] - masks[b]).sum() / np.maximum(masks[a], masks[b]).sum()
        assert differing >= 0.2, (a, b, differing)


def test_backgrounds_are_grey_visible_and_contrast_with_objects() -> None:
    rng = np.random.default_rng(4)
    for pattern, brightness in itertools.product(W.CONCEPTS["pattern"], W.CONCEPTS["brightness"]):
        scene = W.Scene("circle", "red", "small", "top_left", pattern, brightness)
        image, alpha = W.render_with_mask(scene, rng, 32)
        grey = image.astype(np.float64)[alpha == 0].mean(axis=1)
        if pattern == "plain":
            assert grey.std() < 4
        else:
            assert grey.std() > 12, (pattern, brightness)
    greys = []
    for level in W.BACKGROUND_LEVEL.values():
        for delta in (0.0, W.PATTERN_DELTA if level < 128 else -W.PATTERN_DELTA):
            greys += [level + delta - 8, level + delta + 8]
    for colour, rgb in W.OBJECT_RGB.items():
        distances = [np.linalg.norm(np.asarray(rgb) - g) for g in greys]
        assert min(distances) > 100, colour
    pairwise = [
        np.linalg.norm(PALETTE[i] - PALETTE[j]) for i, j in itertools.combinations(range(6), 2)
    ]
    assert min(pairwise) > 140


# ----------------------------------------------------------------------------- captions


def test_captions_are_true_and_named_matches_text() -> None:
    rng = np.random.default_rng(1)
    scenes = W.sample_scenes(2000, rng, None)
    captions = [W.caption(s, rng) for s in scenes]
    counts: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    for scene, cap in zip(scenes, captions, strict=True):
        assert cap.named and W.caption_is_true(cap.named, scene)
        assert cap.text.isascii() and cap.text == cap.text.lower()
        assert W.caption_tokens(cap.text) <= W.MAX_CAPTION_TOKENS, cap.text
        mentioned = W.mentioned_values(cap.text)
        assert mentioned == {c: {v} for c, v in cap.named.items()}, cap
        counts.update(list(cap.named))
        sizes[len(cap.named)] += 1
    for concept in W.CONCEPTS:
        assert counts[concept] / len(captions) >= 0.4, (concept, counts)
    assert set(sizes) == {1, 2, 3, 4, 5, 6}
    assert len({c.text for c in captions}) > 1200  # varied orders and phrasings


def test_caption_is_true_rejects_a_false_attribute() -> None:
    scene = W.Scene("ring", "cyan", "large", "bottom_right", "dots", "light")
    assert W.caption_is_true({"shape": "ring", "pattern": "dots"}, scene)
    assert not W.caption_is_true({"shape": "ring", "colour": "red"}, scene)
    with pytest.raises(InvalidInputError):
        W.caption_is_true({"hue": "red"}, scene)


def test_zero_shot_templates_use_caption_phrases() -> None:
    assert W.class_phrase("pattern", "stripes") == "striped"
    assert W.class_phrase("position", "top_left") == "top left"
    for concept, templates in W.ZERO_SHOT_TEMPLATES.items():
        assert templates
        for template, value in itertools.product(templates, W.CONCEPTS[concept]):
            assert template.count("{}") == 1
            text = template.format(W.class_phrase(concept, value))
            assert W.mentioned_values(text) == {concept: {value}}, text


# ----------------------------------------------------------------------------- bias


def test_planted_bias_rate() -> None:
    config = W.WorldConfig()
    expected = config.bias_p + (1 - config.bias_p) / 6
    assert W.expected_preferred_rate(config.bias_p) == pytest.approx(expected)
    rng = np.random.default_rng(9)
    biased = W.sample_scenes(20_000, rng, config.bias_p, config)
    assert abs(_preferred_rate(biased, config) - expected) < 0.03
    unbiased = W.sample_scenes(20_000, rng, None, config)
    assert abs(_preferred_rate(unbiased, config) - 1 / 6) < 0.02
    # the splits: train carries the bias, test does not
    train = W.generate(3000, 1, "train", config)
    test = W.generate(3000, 1, "test", config)
    assert abs(_preferred_rate(train.scenes, config) - expected) < 0.03
    assert abs(_preferred_rate(test.scenes, config) - 1 / 6) < 0.03
    # other attributes stay uniform under the bias
    sizes = Counter(s.size for s in biased)
    assert abs(sizes["small"] / len(biased) - 0.5) < 0.02


def test_custom_preferences_and_strength() -> None:
    mapping = dict(zip(W.CONCEPTS["shape"], reversed(W.CONCEPTS["colour"]), strict=True))
    config = W.WorldConfig(bias_p=0.4, preferred_colour=mapping)
    scenes = W.sample_scenes(20_000, np.random.default_rng(3), config.bias_p, config)
    assert abs(_preferred_rate(scenes, config) - W.expected_preferred_rate(0.4)) < 0.03
    circles = [s.colour for s in scenes if s.shape == "circle"]
    assert Counter(circles).most_common(1)[0][0] == mapping["circle"]


# ----------------------------------------------------------------------------- positives


def test_positives_matrix_hand_built() -> None:
    a = W.Scene("circle", "red", "small", "top_left", "plain", "dark")
    b = W.Scene("square", "red", "large", "top_left", "dots", "light")
    c = W.Scene("circle", "blue", "large", "bottom_right", "plain", "dark")
    captions = [
        {"colour": "red"},
        {"shape": "circle"},
        {"shape": "circle", "colour": "blue"},
        {"shape": "triangle"},
        {"position": "top_left", "size": "large"},
        W.Caption("a plain dark background", {"pattern": "plain", "brightness": "dark"}),
    ]
    expected = np.array(
        [
            [True, True, False],
            [True, False, True],
            [False, False, True],
            [False, False, False],
            [False, True, False],
            [True, False, True],
        ]
    )
    got = W.positives_matrix(captions, [a, b, c])
    assert got.dtype == bool and np.array_equal(got, expected)
    assert np.array_equal(W.positives_matrix(captions, W.scene_labels([a, b, c])), expected)
    with pytest.raises(InvalidInputError):
        W.positives_matrix([{"hue": "red"}], [a])


def test_positives_matrix_agrees_with_caption_is_true() -> None:
    batch = W.generate(40, 5, "train")
    matrix = W.positives_matrix(batch.captions, batch.labels)
    loop = np.array([[W.caption_is_true(c.named, s) for s in batch.scenes] for c in batch.captions])
    assert np.array_equal(matrix, loop)
    assert matrix.diagonal().all()  # every caption is true of its own image
    assert matrix.sum() > 40  # and of some others: the multi-positive case is real


# ----------------------------------------------------------------------------- probes


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    P.generate_all(out, 0, n_per_class=3, n_per_cell=2, n_gallery=12)
    return out


def test_generate_all_layout_and_summary(world_dir: Path) -> None:
    summary = json.loads((world_dir / "world.json").read_text())
    assert summary["seed"] == 0
    assert summary["concepts"] == {c: list(v) for c, v in W.CONCEPTS.items()}
    assert summary["counts"]["bias"] == 2 * 36
    with open(world_dir / "gallery" / "gallery.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [f"g{i:05d}" for i in range(12)]
    assert list(rows[0]) == ["id", *W.CONCEPTS]
    for row in rows:
        image = np.asarray(Image.open(world_dir / "gallery" / f"{row['id']}.png"))
        assert image.shape == (32, 32, 3)
        W.Scene(**{c: row[c] for c in W.CONCEPTS})  # valid attribute values


def test_accuracy_probes_round_trip(world_dir: Path) -> None:
    for concept, values in W.CONCEPTS.items():
        probe = load_probe(world_dir / f"accuracy-{concept}")
        assert isinstance(probe, AccuracyProbe)
        assert probe.spec.kind == "accuracy" and probe.name == f"accuracy-{concept}"
        assert probe.class_names == [W.class_phrase(concept, v) for v in values]
        assert probe.spec.templates == W.ZERO_SHOT_TEMPLATES[concept]
        assert Counter(i for _, i in probe.samples) == {i: 3 for i in range(len(values))}
        for path, index in probe.samples:
            assert path.parent.name == values[index] and path.is_file()


def test_accuracy_probe_images_show_their_class(tmp_path: Path) -> None:
    """The colour probe's images really are of their class colour (same seed, same pixels)."""
    P.write_accuracy_probes(tmp_path, 2, 4)
    probe = load_probe(tmp_path / "accuracy-colour")
    for path, index in probe.samples:
        pixels = np.asarray(Image.open(path)).reshape(-1, 3).astype(np.float64)
        distance = np.linalg.norm(pixels[:, None, :] - PALETTE[None], axis=2)
        closest = Counter(np.argmin(distance, axis=1)[distance.min(axis=1) < 40])
        assert closest.most_common(1)[0][0] == index, path


def test_bias_probe_is_balanced_and_counterfactual(world_dir: Path) -> None:
    probe = load_probe(world_dir / "bias-shape-colour")
    assert isinstance(probe, BiasProbe)
    assert probe.spec.attributes == ["colour"] and probe.spec.k == [10, 20]
    queries = probe.spec.queries  # every shape word in colour-neutral contexts (issue 10)
    assert [q.name.split(":")[0] for q in queries][::12] == [
        shape for shape in W.CONCEPTS["shape"] for _ in W.SHAPE_WORDS[shape]
    ]
    assert len(queries) == 12 * sum(map(len, W.SHAPE_WORDS.values())) and probe.spec.templates == [
        "{}"
    ]
    assert not any(c in q.text for q in queries for c in W.CONCEPTS["colour"])
    cells = Counter((attrs["shape"], attrs["colour"]) for _, attrs in probe.rows)
    assert set(cells) == set(itertools.product(W.CONCEPTS["shape"], W.CONCEPTS["colour"]))
    assert set(cells.values()) == {2}
    assert all(set(attrs) == set(W.CONCEPTS) for _, attrs in probe.rows)
    # counterfactual: a base scene is drawn in all six colours with identical pixels elsewhere
    groups: dict[tuple[str, ...], list[np.ndarray]] = {}
    for path, attrs in probe.rows:
        key = tuple(v for c, v in attrs.items() if c != "colour")
        groups.setdefault(key, []).append(np.asarray(Image.open(path)))
    complete = [np.stack(g) for g in groups.values() if len(g) == 6]
    assert complete
    for stack in complete:
        identical = (stack == stack[:1]).all(axis=(0, 3))
        assert identical.mean() > 0.7  # everything but the object
        assert not identical.all()  # and the object does change colour


def test_probe_write_is_deterministic(tmp_path: Path) -> None:
    first = P.write_bias_probe(tmp_path / "a", 1, 3)
    second = P.write_bias_probe(tmp_path / "b", 1, 3)
    assert compute_content_sha256(first) == compute_content_sha256(second)
    other = P.write_bias_probe(tmp_path / "c", 1, 4)
    assert compute_content_sha256(first) != compute_content_sha256(other)


def test_tampered_probe_raises_integrity_error(tmp_path: Path) -> None:
    target = P.write_bias_probe(tmp_path, 1, 0)
    load_probe(target)
    victim = next((target / "images").iterdir())
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="content_sha256"):
        load_probe(target)


def test_extra_file_raises_integrity_error(tmp_path: Path) -> None:
    target = P.write_gallery(tmp_path, 2, 0)  # any directory with files will do
    spec = {
        "schema": "ccsclip/probe/v1",
        "name": "g",
        "kind": "bias",
        "images": ".",
        "metadata": "gallery.csv",
        "attributes": ["colour"],
        "queries": [{"name": "circle", "text": "circle"}],
        "templates": ["a {}"],
        "k": [1],
    }
    (target / "gallery.csv").write_text(
        "file,colour\n" + "".join(f"g0000{i}.png,red\n" for i in range(2))
    )
    write_probe_yaml(target, spec)
    assert len(load_probe(target).rows) == 2
    (target / "extra.txt").write_text("x")
    with pytest.raises(IntegrityError):
        load_probe(target)


def _rewrite_yaml(probe_dir: Path, **changes: object) -> None:
    data = yaml.safe_load((probe_dir / "probe.yaml").read_text())
    data.update(changes)
    (probe_dir / "probe.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture()
def small_probe(tmp_path: Path) -> Path:
    P.write_accuracy_probes(tmp_path, 1, 0)
    return tmp_path / "accuracy-size"


def test_bad_probe_yaml_raises_invalid_input(small_probe: Path) -> None:
    _rewrite_yaml(small_probe, colour_space="rgb")
    with pytest.raises(InvalidInputError, match=r"probe\.yaml.*colour_space"):
        load_probe(small_probe)


@pytest.mark.parametrize("bad", ["../outside", "/etc", "a/../../b", "..\\x"])
def test_path_traversal_is_rejected(small_probe: Path, bad: str) -> None:
    _rewrite_yaml(small_probe, images=bad)
    with pytest.raises(InvalidInputError, match="images"):
        load_probe(small_probe)


def test_other_probe_errors(small_probe: Path) -> None:
    original = (small_probe / "probe.yaml").read_text()
    _rewrite_yaml(small_probe, templates=["a {} on {}"])
    with pytest.raises(InvalidInputError, match="templates"):
        load_probe(small_probe)
    (small_probe / "probe.yaml").write_text(original)
    _rewrite_yaml(small_probe, kind="fairness")
    with pytest.raises(InvalidInputError, match="valid kinds"):
        load_probe(small_probe)
    (small_probe / "probe.yaml").write_text(original)
    _rewrite_yaml(small_probe, schema="ccsclip/probe/v0")
    with pytest.raises(InvalidInputError, match="schema"):
        load_probe(small_probe)
    (small_probe / "probe.yaml").write_text("kind: [unclosed")
    with pytest.raises(InvalidInputError, match="YAML"):
        load_probe(small_probe)
    (small_probe / "probe.yaml").unlink()
    with pytest.raises(NotFoundError):
        load_probe(small_probe)
    with pytest.raises(NotFoundError):
        load_probe(small_probe / "missing")


def test_missing_class_folder_is_not_found(small_probe: Path) -> None:
    spec = yaml.safe_load((small_probe / "probe.yaml").read_text())
    spec["classes"].append({"folder": "medium", "name": "medium"})
    del spec["content_sha256"]
    write_probe_yaml(small_probe, spec)
    with pytest.raises(NotFoundError, match="medium"):
        load_probe(small_probe)


# ----------------------------------------------------------------------------- pool


def test_pool_format_and_coverage(world_dir: Path) -> None:
    lines = (world_dir / "pool.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# ccsclip-pool v1"
    entries = []
    for line in lines:
        if line.startswith("#"):
            continue
        description, tags = line.split("\t")
        entries.append((description, tags.split(",")))
    descriptions = [d for d, _ in entries]
    assert len(descriptions) == len(set(descriptions)), "duplicate descriptions"
    allowed = {*W.CONCEPTS, P.DISTRACTOR_TAG}
    per_value: Counter[tuple[str, str]] = Counter()
    distractors = 0
    for description, tags in entries:
        assert set(tags) <= allowed and description == description.strip() and description
        mentioned = W.mentioned_values(description)
        if tags == [P.DISTRACTOR_TAG]:
            assert mentioned == {}, description
            distractors += 1
            continue
        assert set(mentioned) == set(tags), description
        for concept in tags:
            (value,) = mentioned[concept]
            per_value[(concept, value)] += 1
    for concept, values in W.CONCEPTS.items():
        for value in values:
            assert per_value[(concept, value)] >= 8, (concept, value)
    assert 0.07 <= distractors / len(entries) <= 0.15


def test_pool_uses_caption_vocabulary() -> None:
    """The model only learns words its captions use; pool phrasings stick to them."""
    rng = np.random.default_rng(0)
    words: set[str] = set()
    for scene in W.sample_scenes(3000, rng, None):
        words.update(W.caption(scene, rng).text.replace(",", " ").split())
    for description, tag, _ in P.pool_descriptions():
        if tag != P.DISTRACTOR_TAG:
            assert set(description.split()) <= words, description
