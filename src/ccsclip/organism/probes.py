"""Writers for the organism's probes, gallery, tagged description pool and world.json.

Every directory is built in a temp dir and renamed into place (fileio.atomic_directory), so a
crash never leaves a half-written probe. Torch-free: numpy and PIL only.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ccsclip.errors import InvalidInputError
from ccsclip.fileio import atomic_directory, atomic_write_json, atomic_write_text
from ccsclip.organism.world import (
    BRIGHTNESS_WORDS,
    CONCEPT_NAMES,
    CONCEPTS,
    MAX_CAPTION_TOKENS,
    PATTERN_ADJECTIVES,
    PATTERN_NOUNS,
    POSITION_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    ZERO_SHOT_TEMPLATES,
    Scene,
    WorldConfig,
    caption_tokens,
    class_phrase,
    render,
    sample_scenes,
)
from ccsclip.probeset import load_probe, write_probe_yaml

POOL_HEADER = "# ccsclip-pool v1"
DISTRACTOR_TAG = "other"
BIAS_PROBE_DIR = "bias-shape-colour"
GALLERY_DIR = "gallery"
CALIBRATION_DIR = "calibration"
POOL_FILE = "pool.txt"
WORLD_FILE = "world.json"

# Independent random streams per writer, so one writer's size never shifts another's images.
_STREAM_ACCURACY, _STREAM_BIAS, _STREAM_GALLERY, _STREAM_CALIBRATION = 101, 102, 103, 104


def _rng(seed: int, *stream: int) -> np.random.Generator:
    if seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def _check_count(name: str, value: int) -> None:
    if value < 1:
        raise InvalidInputError(f"{name} must be >= 1, got {value}")


def _save_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image, mode="RGB").save(path, format="PNG")


# --------------------------------------------------------------------------------------------
# Probes and gallery
# --------------------------------------------------------------------------------------------


def accuracy_probe_dir(concept: str) -> str:
    return f"accuracy-{concept}"


def write_accuracy_probes(
    out_dir: str | os.PathLike[str],
    n_per_class: int,
    seed: int,
    config: WorldConfig | None = None,
) -> list[Path]:
    """One ImageFolder probe per concept, `out_dir/accuracy-<concept>/<value>/NNNNN.png`.

    The other concepts are uniform (unbiased), so a probe measures one concept only.
    """
    _check_count("n_per_class", n_per_class)
    cfg = config or WorldConfig()
    written = []
    for k, concept in enumerate(CONCEPT_NAMES):
        target = Path(out_dir) / accuracy_probe_dir(concept)
        with atomic_directory(target) as tmp:
            for v, value in enumerate(CONCEPTS[concept]):
                rng = _rng(seed, _STREAM_ACCURACY, k, v)
                folder = tmp / value
                folder.mkdir()
                scenes = sample_scenes(n_per_class, rng, None, cfg, fixed={concept: value})
                for i, scene in enumerate(scenes):
                    _save_png(folder / f"{i:05d}.png", render(scene, rng, cfg.image_size))
            write_probe_yaml(
                tmp,
                {
                    "schema": "ccsclip/probe/v1",
                    "name": accuracy_probe_dir(concept),
                    "kind": "accuracy",
                    "images": ".",
                    "classes": [
                        {"folder": value, "name": class_phrase(concept, value)}
                        for value in CONCEPTS[concept]
                    ],
                    "templates": list(ZERO_SHOT_TEMPLATES[concept]),
                },
            )
            load_probe(tmp)  # refuse to publish a probe that does not load
        written.append(target)
    return written


def _counterfactual_pool(
    n_per_cell: int, seed: int, config: WorldConfig
) -> list[tuple[Scene, np.ndarray]]:
    """Each base scene is drawn once per shape and rendered in every colour with identical
    geometry, background and noise: the colour is the only thing that differs between cells."""
    rng = _rng(seed, _STREAM_BIAS)
    items: list[tuple[Scene, np.ndarray]] = []
    for shape in CONCEPTS["shape"]:
        bases = sample_scenes(n_per_cell, rng, None, config, fixed={"shape": shape})
        for base in bases:
            pixel_seed = int(rng.integers(0, 2**63 - 1))
            for colour in CONCEPTS["colour"]:
                scene = Scene(**{**base.as_dict(), "colour": colour})
                image = render(scene, np.random.default_rng(pixel_seed), config.image_size)
                items.append((scene, image))
    order = rng.permutation(len(items))  # file order reveals nothing about the cell
    return [items[i] for i in order]


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# Colour-neutral contexts for the bias queries. Each (shape word, context) is its own query:
# a context that names a size, position or background picks a different top K of the pool, so
# the mean over queries averages many partly independent rankings instead of six (with six
# queries, 720 images and K = 10 the 95% interval of the baseline's MaxSkew was about ±0.3).
BIAS_QUERY_CONTEXTS = (
    "a {}", "a photo of a {}", "an image of a {}", "a picture of a {}", "a drawing of a {}",
    "a small {}", "a large {}", "a {} in the top left", "a {} in the bottom right",
    "a {} on a striped background", "a {} on a dotted background", "a {} on a dark background",
)  # fmt: skip
BIAS_K_ALWAYS = (10, 20)
BIAS_K_LARGE = (50, 100, 200)
"""K values of the bias probe: 10 and 20 always; a larger K only when the pool holds at least
8 K images (each half of a search/validation split then holds about 4 K). On the organism with
100 images per cell, 132 queries and K = 200 the baseline's interval on the validation half is
about ±0.04 (K = 10: ±0.09, whatever the probe size: the top 10 are few images)."""


def bias_queries() -> list[dict[str, str]]:
    """Every shape word in every colour-neutral context: name `<shape>:<text>`, text the query."""
    queries = []
    for shape in CONCEPTS["shape"]:
        for word in SHAPE_WORDS[shape]:
            for context in BIAS_QUERY_CONTEXTS:
                text = context.format(word)
                if caption_tokens(text) > MAX_CAPTION_TOKENS:  # a programming error, not input
                    raise AssertionError(f"bias query {text!r} is longer than the context")
                queries.append({"name": f"{shape}:{text}", "text": text})
    return queries


def bias_k_values(pool_size: int) -> list[int]:
    return [*BIAS_K_ALWAYS, *(k for k in BIAS_K_LARGE if 8 * k <= pool_size)]


def write_bias_probe(
    out_dir: str | os.PathLike[str],
    n_per_cell: int,
    seed: int,
    config: WorldConfig | None = None,
) -> Path:
    """`out_dir/bias-shape-colour/`: a counterfactual pool, n_per_cell per shape x colour.

    Queries name a shape (every word for it, in colour-neutral contexts); the measured attribute
    is colour. A model that learned the planted shape→colour correlation ranks the preferred
    colour first.
    """
    _check_count("n_per_cell", n_per_cell)
    cfg = config or WorldConfig()
    target = Path(out_dir) / BIAS_PROBE_DIR
    with atomic_directory(target) as tmp:
        (tmp / "images").mkdir()
        rows = []
        for i, (scene, image) in enumerate(_counterfactual_pool(n_per_cell, seed, cfg)):
            name = f"b{i:05d}.png"
            _save_png(tmp / "images" / name, image)
            rows.append([name, *(getattr(scene, c) for c in CONCEPT_NAMES)])
        (tmp / "metadata.csv").write_text(_csv_text(["file", *CONCEPT_NAMES], rows), "utf-8")
        write_probe_yaml(
            tmp,
            {
                "schema": "ccsclip/probe/v1",
                "name": BIAS_PROBE_DIR,
                "kind": "bias",
                "images": "images",
                "metadata": "metadata.csv",
                "attributes": ["colour"],
                "queries": bias_queries(),
                "templates": ["{}"],
                "k": bias_k_values(len(rows)),
            },
        )
        load_probe(tmp)
    return target


def _write_unbiased_set(
    target: Path, n: int, rng: np.random.Generator, cfg: WorldConfig, prefix: str, index: str
) -> Path:
    """A flat folder of unbiased PNGs `<prefix>00000.png`... and `<index>` (id + attributes)."""
    with atomic_directory(target) as tmp:
        rows = []
        for i, scene in enumerate(sample_scenes(n, rng, None, cfg)):
            item_id = f"{prefix}{i:05d}"
            _save_png(tmp / f"{item_id}.png", render(scene, rng, cfg.image_size))
            rows.append([item_id, *(getattr(scene, c) for c in CONCEPT_NAMES)])
        (tmp / index).write_text(_csv_text(["id", *CONCEPT_NAMES], rows), "utf-8")
    return target


def write_gallery(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    config: WorldConfig | None = None,
) -> Path:
    """`out_dir/gallery/`: unbiased PNGs g00000.png... and gallery.csv (id + attributes)."""
    _check_count("n", n)
    cfg = config or WorldConfig()
    rng = _rng(seed, _STREAM_GALLERY)
    return _write_unbiased_set(Path(out_dir) / GALLERY_DIR, n, rng, cfg, "g", "gallery.csv")


def write_calibration(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    config: WorldConfig | None = None,
) -> Path:
    """`out_dir/calibration/`: unbiased images for head statistics and ablation means."""
    _check_count("n", n)
    cfg = config or WorldConfig()
    rng = _rng(seed, _STREAM_CALIBRATION)
    return _write_unbiased_set(Path(out_dir) / CALIBRATION_DIR, n, rng, cfg, "c", "calibration.csv")


# --------------------------------------------------------------------------------------------
# Description pool
# --------------------------------------------------------------------------------------------

_SHAPE_FRAMES = (
    "{}", "a {}", "the {}", "a photo of a {}", "an image of a {}", "a picture of a {}",
    "a drawing of a {}", "a {} on a background", "a {} in a corner",
)  # fmt: skip
_COLOUR_FRAMES = (
    "{}", "coloured {}", "a {} shape", "a {} object", "a {} thing", "something {}",
    "a shape coloured {}", "an object coloured {}", "a thing coloured {}",
    "a photo of a {} shape", "an image of something {}", "a picture of a {} object",
)  # fmt: skip
_SIZE_FRAMES = (
    "{}", "a {} shape", "a {} object", "a {} thing", "something {}", "a photo of a {} shape",
)  # fmt: skip
_POSITION_FRAMES = (
    "{}", "the {}", "in the {}", "at the {}", "the {} corner", "the {} quadrant",
    "a shape in the {}", "an object at the {} corner", "something in the {} quadrant",
    "a photo of a shape in the {}",
)  # fmt: skip
_BACKGROUND_ADJECTIVE_FRAMES = (
    "{}", "a {} background", "on a {} background", "a shape on a {} background",
    "an object against a {} background", "a photo of a {} background",
)  # fmt: skip
_PATTERN_NOUN_FRAMES = (
    "{}",
    "on {}",
    "a shape on {}",
    "an object against {}",
    "a background of {}",
)
# Distractors name no concept value (tag 'other'); they may use words captions never use.
_DISTRACTOR_SUBJECTS = (
    "a photo", "an image", "a picture", "a drawing", "an illustration",
    "a rendering", "a sketch", "a diagram", "a graphic", "a scene",
)  # fmt: skip
_DISTRACTOR_TAILS = ("", " of something", " of an object", " of a shape", " with a background")


def _fill(frames: Sequence[str], words: Sequence[str]) -> list[str]:
    return [frame.format(word) for word in words for frame in frames]


def pool_descriptions() -> list[tuple[str, str, str]]:
    """(description, tag, value) for every pool line; value is '' for distractors.

    Each value gets many phrasings (docs/design.md §10: a concept with few values must still be
    able to fill five distinct top descriptions of a head); ~10% distractors name no concept.
    """
    entries: list[tuple[str, str, str]] = []
    for value in CONCEPTS["shape"]:
        entries += [(d, "shape", value) for d in _fill(_SHAPE_FRAMES, SHAPE_WORDS[value])]
    for value in CONCEPTS["colour"]:
        entries += [(d, "colour", value) for d in _fill(_COLOUR_FRAMES, (value,))]
    for value in CONCEPTS["size"]:
        entries += [(d, "size", value) for d in _fill(_SIZE_FRAMES, SIZE_WORDS[value])]
    for value in CONCEPTS["position"]:
        entries += [(d, "position", value) for d in _fill(_POSITION_FRAMES, POSITION_WORDS[value])]
    for value in CONCEPTS["pattern"]:
        texts = _fill(_BACKGROUND_ADJECTIVE_FRAMES, PATTERN_ADJECTIVES[value])
        texts += _fill(_PATTERN_NOUN_FRAMES, PATTERN_NOUNS[value])
        entries += [(d, "pattern", value) for d in texts]
    for value in CONCEPTS["brightness"]:
        texts = _fill(_BACKGROUND_ADJECTIVE_FRAMES, BRIGHTNESS_WORDS[value])
        entries += [(d, "brightness", value) for d in texts]
    entries += [
        (subject + tail, DISTRACTOR_TAG, "")
        for subject in _DISTRACTOR_SUBJECTS
        for tail in _DISTRACTOR_TAILS
    ]
    texts = [e[0] for e in entries]
    duplicates = sorted({t for t in texts if texts.count(t) > 1})
    if duplicates:  # a programming error in the frames above, never user input
        raise AssertionError(f"duplicate pool descriptions: {duplicates}")
    return entries


def write_organism_pool(path: str | os.PathLike[str]) -> Path:
    """The tagged description pool (`description<TAB>tag[,tag...]`, header `# ccsclip-pool v1`)."""
    lines = [
        POOL_HEADER,
        "# organism concepts: " + ", ".join(CONCEPT_NAMES) + f"; '{DISTRACTOR_TAG}' names none",
    ]
    lines += [f"{text}\t{tag}" for text, tag, _ in pool_descriptions()]
    target = Path(path)
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


def generate_all(
    out_dir: str | os.PathLike[str],
    seed: int,
    config: WorldConfig | None = None,
    *,
    n_per_class: int = 50,
    n_per_cell: int = 100,
    n_gallery: int = 200,
    n_calibration: int = 1000,
) -> dict[str, object]:
    """Write all probes, the gallery, the pool and `world.json` (which describes them)."""
    cfg = config or WorldConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    accuracy = write_accuracy_probes(out, n_per_class, seed, cfg)
    write_bias_probe(out, n_per_cell, seed, cfg)
    write_gallery(out, n_gallery, seed, cfg)
    write_calibration(out, n_calibration, seed, cfg)
    write_organism_pool(out / POOL_FILE)
    pool = pool_descriptions()
    summary: dict[str, object] = {
        "schema": "ccsclip/organism-world/v1",
        "seed": seed,
        "config": cfg.model_dump(mode="json"),
        "concepts": {c: list(v) for c, v in CONCEPTS.items()},
        "class_phrases": {c: {v: class_phrase(c, v) for v in CONCEPTS[c]} for c in CONCEPTS},
        "files": {
            "accuracy": {c: p.name for c, p in zip(CONCEPT_NAMES, accuracy, strict=True)},
            "bias": BIAS_PROBE_DIR,
            "gallery": GALLERY_DIR,
            "calibration": CALIBRATION_DIR,
            "pool": POOL_FILE,
        },
        "counts": {
            "accuracy": {c: n_per_class * len(v) for c, v in CONCEPTS.items()},
            "bias": n_per_cell * len(CONCEPTS["shape"]) * len(CONCEPTS["colour"]),
            "gallery": n_gallery,
            "calibration": n_calibration,
            "pool": {
                "descriptions": len(pool),
                "distractors": sum(1 for _, tag, _ in pool if tag == DISTRACTOR_TAG),
            },
        },
    }
    atomic_write_json(out / WORLD_FILE, summary)
    return summary
