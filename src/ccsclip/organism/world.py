"""The synthetic concept world: scenes with six concepts, their images and their captions.

A scene is one coloured shape of some size in one quadrant of a grey, patterned background.
Everything here is numpy only (no torch), deterministic for a seed, and cheap enough to render
training data on the fly (docs/design.md §10: generating 300k images at once needed 15 GB).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ccsclip.errors import InvalidInputError

# --------------------------------------------------------------------------------------------
# Concepts, values and the words that name them
# --------------------------------------------------------------------------------------------

CONCEPTS: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "cross", "diamond", "ring"),
    "colour": ("red", "green", "blue", "yellow", "magenta", "cyan"),
    "size": ("small", "large"),
    "position": ("top_left", "top_right", "bottom_left", "bottom_right"),
    "pattern": ("plain", "stripes", "dots", "checker"),
    "brightness": ("dark", "light"),
}
CONCEPT_NAMES: tuple[str, ...] = tuple(CONCEPTS)
OBJECT_CONCEPTS: tuple[str, ...] = ("shape", "colour", "size", "position")
BACKGROUND_CONCEPTS: tuple[str, ...] = ("pattern", "brightness")

_VALUE_INDEX: dict[str, dict[str, int]] = {
    concept: {value: i for i, value in enumerate(values)} for concept, values in CONCEPTS.items()
}

# Words for each value; the first is the canonical one (class_phrase, zero-shot templates).
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus"),
    "ring": ("ring", "donut"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in CONCEPTS["colour"]}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big", "huge"),
}
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "top_left": ("top left", "upper left"),
    "top_right": ("top right", "upper right"),
    "bottom_left": ("bottom left", "lower left"),
    "bottom_right": ("bottom right", "lower right"),
}
PATTERN_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "blank", "uniform"),
    "stripes": ("striped",),
    "dots": ("dotted", "spotted", "polka dot"),
    "checker": ("checkered", "checkerboard", "chequered"),
}
PATTERN_NOUNS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "stripes": ("stripes",),
    "dots": ("dots", "polka dots", "spots"),
    "checker": ("checks",),
}
BRIGHTNESS_WORDS: dict[str, tuple[str, ...]] = {
    "dark": ("dark", "dim", "black"),
    "light": ("light", "bright", "pale", "white"),
}

VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": SHAPE_WORDS,
    "colour": COLOUR_WORDS,
    "size": SIZE_WORDS,
    "position": POSITION_WORDS,
    "pattern": {v: PATTERN_ADJECTIVES[v] + PATTERN_NOUNS[v] for v in CONCEPTS["pattern"]},
    "brightness": BRIGHTNESS_WORDS,
}
"""Every word or phrase a caption may use to name each value (tests and the pool check text)."""

# Zero-shot templates, phrased like the captions; `class_phrase` fills the placeholder.
ZERO_SHOT_TEMPLATES: dict[str, list[str]] = {
    "shape": ["a {}", "a photo of a {}", "an image of a {}", "a picture of a {}"],
    "colour": ["a {} object", "a {} shape", "a photo of a {} shape", "something {}"],
    "size": ["a {} shape", "a {} object", "a photo of a {} shape", "something {}"],
    "position": [
        "a shape in the {}",
        "an object in the {}",
        "a shape in the {} corner",
        "a photo of a shape in the {}",
    ],
    "pattern": [
        "a shape on a {} background",
        "an object on a {} background",
        "a {} background",
        "a photo of a shape on a {} background",
    ],
    "brightness": [
        "a shape on a {} background",
        "an object on a {} background",
        "a {} background",
        "a photo of a shape on a {} background",
    ],
}

MAX_CAPTION_TOKENS = 22
"""The tiny model's context is 24 tokens including start and end (docs/design.md §10)."""

# Caption words that open_clip's BPE splits into several tokens (measured with its
# SimpleTokenizer; every other caption word, and a comma, is one token).
_EXTRA_TOKENS: dict[str, int] = {
    "checkerboard": 2,
    "checkered": 1,
    "chequered": 1,
    "cyan": 1,
    "quadrant": 1,
    "rhombus": 2,
}

_SPLIT_CODES: dict[str, int] = {"train": 0, "test": 1}


def _check_concept(concept: str) -> None:
    if concept not in CONCEPTS:
        raise InvalidInputError(
            f"unknown concept {concept!r}; valid concepts: {', '.join(CONCEPT_NAMES)}"
        )


def _check_value(concept: str, value: str) -> None:
    _check_concept(concept)
    if value not in _VALUE_INDEX[concept]:
        raise InvalidInputError(
            f"unknown {concept} value {value!r}; valid values: {', '.join(CONCEPTS[concept])}"
        )


def class_phrase(concept: str, value: str) -> str:
    """The canonical word(s) for a value as they go into ZERO_SHOT_TEMPLATES (captions use them)."""
    _check_value(concept, value)
    return VOCABULARY[concept][value][0]


# --------------------------------------------------------------------------------------------
# Scenes, configuration and sampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """One image's ground truth: a value for every concept."""

    shape: str
    colour: str
    size: str
    position: str
    pattern: str
    brightness: str

    def __post_init__(self) -> None:
        for concept in CONCEPT_NAMES:
            _check_value(concept, getattr(self, concept))

    def as_dict(self) -> dict[str, str]:
        return {concept: getattr(self, concept) for concept in CONCEPT_NAMES}


assert tuple(f.name for f in fields(Scene)) == CONCEPT_NAMES


class WorldConfig(BaseModel):
    """How the world is drawn: image size and the planted shape→colour correlation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(default=32, ge=32, le=128)
    bias_p: float = Field(default=0.7, ge=0.0, le=1.0)
    preferred_colour: dict[str, str] = Field(
        default_factory=lambda: dict(zip(CONCEPTS["shape"], CONCEPTS["colour"], strict=True))
    )

    @field_validator("image_size")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"image_size {value} is not a multiple of 8 (patches are 8 px)")
        return value

    @model_validator(mode="after")
    def _valid_preferences(self) -> WorldConfig:
        shapes, colours = set(CONCEPTS["shape"]), set(CONCEPTS["colour"])
        if set(self.preferred_colour) != shapes:
            raise ValueError(
                f"preferred_colour must map every shape exactly once; got keys "
                f"{sorted(self.preferred_colour)}, expected {sorted(shapes)}"
            )
        bad = {s: c for s, c in self.preferred_colour.items() if c not in colours}
        if bad:
            raise ValueError(
                f"unknown colours {bad}; valid colours: {', '.join(CONCEPTS['colour'])}"
            )
        return self


def make_config(**kwargs: object) -> WorldConfig:
    """Build a WorldConfig, turning pydantic errors into the project's InvalidInputError."""
    try:
        return WorldConfig(**kwargs)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InvalidInputError(f"invalid world config: {exc}") from exc


def sample_scenes(
    n: int,
    rng: np.random.Generator,
    bias_p: float | None,
    config: WorldConfig | None = None,
    *,
    fixed: Mapping[str, str] | None = None,
) -> list[Scene]:
    """Draw n scenes with uniform attributes, optionally with a planted shape→colour bias.

    With bias_p = p, a scene's colour is its shape's preferred colour with probability p and
    uniform over all six colours otherwise, so a shape co-occurs with its preferred colour at the
    rate p + (1 - p) / 6 (0.75 for p = 0.7). bias_p = None (held-out splits) is fully uniform.
    `fixed` pins concepts to one value (probe classes); the others stay as above.
    """
    cfg = config or WorldConfig()
    if n < 0:
        raise InvalidInputError(f"n must be >= 0, got {n}")
    if bias_p is not None and not 0.0 <= bias_p <= 1.0:
        raise InvalidInputError(f"bias_p must be in [0, 1] or None, got {bias_p}")
    pinned = dict(fixed or {})
    for concept, value in pinned.items():
        _check_value(concept, value)
    codes = {c: rng.integers(0, len(v), size=n) for c, v in CONCEPTS.items()}
    if bias_p is not None:
        preferred = np.array(
            [_VALUE_INDEX["colour"][cfg.preferred_colour[s]] for s in CONCEPTS["shape"]]
        )
        shape_codes = (
            np.full(n, _VALUE_INDEX["shape"][pinned["shape"]])
            if "shape" in pinned
            else codes["shape"]
        )
        use_preferred = rng.random(n) < bias_p
        codes["colour"] = np.where(use_preferred, preferred[shape_codes], codes["colour"])
    for concept, value in pinned.items():
        codes[concept] = np.full(n, _VALUE_INDEX[concept][value])
    return [Scene(**{c: CONCEPTS[c][int(codes[c][i])] for c in CONCEPT_NAMES}) for i in range(n)]


def scene_labels(scenes: Sequence[Scene]) -> np.ndarray:
    """int64 [n, n_concepts]: each scene's value index per concept, in CONCEPTS order."""
    out = np.empty((len(scenes), len(CONCEPT_NAMES)), dtype=np.int64)
    for i, scene in enumerate(scenes):
        for k, concept in enumerate(CONCEPT_NAMES):
            out[i, k] = _VALUE_INDEX[concept][getattr(scene, concept)]
    return out


def scene_from_labels(row: Sequence[int]) -> Scene:
    """Inverse of one row of scene_labels."""
    if len(row) != len(CONCEPT_NAMES):
        raise InvalidInputError(f"label row has {len(row)} entries, expected {len(CONCEPT_NAMES)}")
    return Scene(**{c: CONCEPTS[c][int(i)] for c, i in zip(CONCEPT_NAMES, row, strict=True)})


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

OBJECT_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 190, 40),
    "blue": (30, 60, 235),
    "yellow": (240, 220, 30),
    "magenta": (220, 40, 220),
    "cyan": (30, 210, 220),
}
"""Saturated object colours: far from each other and from every grey the background uses."""

BACKGROUND_LEVEL: dict[str, float] = {"dark": 50.0, "light": 200.0}
PATTERN_DELTA = 45.0
"""Pattern pixels move this far towards mid-grey: visible, but never a colour of their own."""

_SIZE_RADIUS: dict[str, float] = {"small": 0.13, "large": 0.21}  # half extent / image size
_COLOUR_JITTER = 12
_LEVEL_JITTER = 8.0
_NOISE = 3


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as a row [1, S] (x) and a column [S, 1] (y), for broadcasting."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    return coords[None, :], coords[:, None]


def _sdf_circle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return np.sqrt(x * x + y * y) - r


def _sdf_square(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return np.maximum(np.abs(x), np.abs(y)) - 0.82 * r


def _sdf_triangle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Equilateral, pointing up, its bounding box centred on the object centre."""
    inradius = 0.6 * r  # width 2.08 r, height 1.8 r: about as large as the other shapes
    yc = y - 0.5 * inradius  # centroid sits below the bounding-box centre
    ax = 0.8660254 * np.abs(x)
    return np.maximum(yc, ax - 0.5 * yc) - inradius


def _sdf_cross(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(x), np.abs(y)
    arm, half_width = 0.95 * r, 0.33 * r
    horizontal = np.maximum(ax - arm, ay - half_width)
    vertical = np.maximum(ax - half_width, ay - arm)
    return np.minimum(horizontal, vertical)


def _sdf_diamond(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return (np.abs(x) + np.abs(y) - r) * 0.70710677


def _sdf_ring(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """An annulus whose hole (half the outer radius) stays visible at the small size."""
    return np.abs(np.sqrt(x * x + y * y) - 0.75 * r) - 0.25 * r


_SDF: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "circle": _sdf_circle,
    "square": _sdf_square,
    "triangle": _sdf_triangle,
    "cross": _sdf_cross,
    "diamond": _sdf_diamond,
    "ring": _sdf_ring,
}
assert tuple(_SDF) == CONCEPTS["shape"]


def _coverage(sdf: np.ndarray, grow: float = 0.5) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (px): 1 inside, 0 beyond `grow` outside."""
    out = grow - sdf
    np.maximum(out, 0.0, out=out)
    np.minimum(out, 1.0, out=out)
    return out


def shape_mask(shape: str, radius: float, image_size: int = 32) -> np.ndarray:
    """Anti-aliased coverage [S, S] of a shape centred in the image (distinctness checks)."""
    _check_value("shape", shape)
    gx, gy = _grid(image_size)
    centre = image_size / 2
    return _coverage(_SDF[shape](gx - centre, gy - centre, radius))


def _pattern_mask(pattern: str, size: int, rng: np.random.Generator) -> np.ndarray | None:
    """Coverage of the lighter/darker pattern pixels, with a random phase; None for plain."""
    if pattern == "plain":
        return None
    gx, gy = _grid(size)
    scale = size / 32
    if pattern == "stripes":  # diagonal, 3 px wide, period 6 px (at 32 px)
        period = 6.0 * scale
        u = (gx + gy) * 0.70710677 + rng.uniform(0, period)
        dist = np.abs(np.mod(u, period) - period / 2)
        return _coverage(dist, period / 4 + 0.5)
    if pattern == "dots":  # round dots of radius 1.2 px on a 5 px grid
        period, radius = 5.0 * scale, 1.2 * scale
        tx = np.mod(gx + rng.uniform(0, period), period) - period / 2
        ty = np.mod(gy + rng.uniform(0, period), period) - period / 2
        return _coverage(np.sqrt(tx * tx + ty * ty), radius + 0.5)
    cell = 4.0 * scale  # checker: 4 px cells
    cx = np.floor((gx + rng.uniform(0, 2 * cell)) / cell)
    cy = np.floor((gy + rng.uniform(0, 2 * cell)) / cell)
    return np.mod(cx + cy, 2.0).astype(np.float32)


def _background(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """Grey level [S, S] (float32): brightness with jitter, pattern towards mid-grey."""
    level = BACKGROUND_LEVEL[scene.brightness] + rng.uniform(-_LEVEL_JITTER, _LEVEL_JITTER)
    mask = _pattern_mask(scene.pattern, size, rng)
    if mask is None:
        return np.full((size, size), level, dtype=np.float32)
    delta = PATTERN_DELTA if scene.brightness == "dark" else -PATTERN_DELTA
    return (level + delta * mask).astype(np.float32)


def _object_alpha(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """Coverage [S, S] of the object: inside its quadrant with a small random offset."""
    radius = _SIZE_RADIUS[scene.size] * size * rng.uniform(0.94, 1.06)
    quarter = size / 4
    cx0 = quarter if scene.position.endswith("left") else 3 * quarter
    cy0 = quarter if scene.position.startswith("top") else 3 * quarter
    # Shapes reach at most 1.04 radius (the triangle's corners) and anti-aliasing 0.5 px more:
    # the whole object stays inside its quadrant, so it aligns with 8 px patches.
    max_offset = max(0.0, min(0.06 * size, quarter - 1.05 * radius - 0.5))
    cx = cx0 + rng.uniform(-max_offset, max_offset)
    cy = cy0 + rng.uniform(-max_offset, max_offset)
    gx, gy = _grid(size)
    return _coverage(_SDF[scene.shape](gx - cx, gy - cy, radius))


def render_with_mask(
    scene: Scene, rng: np.random.Generator, image_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Render a scene; also return the object's coverage [H, W] in [0, 1] (for tests and probes)."""
    if image_size < 32 or image_size > 128 or image_size % 8:
        raise InvalidInputError(f"image_size must be a multiple of 8 in 32..128, got {image_size}")
    background = _background(scene, image_size, rng)
    alpha = _object_alpha(scene, image_size, rng)
    rgb = np.asarray(OBJECT_RGB[scene.colour], dtype=np.float32) + rng.integers(
        -_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3
    ).astype(np.float32)
    grey = background[:, :, None]
    image = grey + alpha[:, :, None] * (rgb - grey)
    image += rng.integers(0, 2 * _NOISE + 1, size=image.shape, dtype=np.uint8)
    image += 0.5 - _NOISE  # centre the noise; +0.5 rounds in the cast below
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8), alpha


def render(scene: Scene, rng: np.random.Generator, image_size: int = 32) -> np.ndarray:
    """uint8 [H, W, 3] image of a scene (about 8k images/s at 32 px on one core)."""
    return render_with_mask(scene, rng, image_size)[0]


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    """A caption and exactly the concept values its text names (all true of its scene)."""

    text: str
    named: dict[str, str]


_NAME_PROBABILITY = 0.55  # per concept, independently; empty draws are redrawn (≈ 56% each)
_PREFIXES = ("a photo of ", "an image of ", "a picture of ", "a drawing of ")


def _pick(words: Sequence[str], rng: np.random.Generator, compact: bool) -> str:
    """The canonical (first) word 70% of the time, a synonym otherwise: robust, still anchored."""
    if compact or len(words) == 1 or rng.random() < 0.7:
        return words[0]
    return words[1 + int(rng.integers(0, len(words) - 1))]


def _choice(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(0, len(options)))]


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeio" else "a ") + phrase


def _object_phrase(scene: Scene, named: set[str], rng: np.random.Generator, compact: bool) -> str:
    """'a small red circle', 'a circle coloured red', 'something red', 'a shape'."""
    size = _pick(SIZE_WORDS[scene.size], rng, compact) if "size" in named else None
    colour = scene.colour if "colour" in named else None
    if "shape" in named:
        noun = _pick(SHAPE_WORDS[scene.shape], rng, compact)
    elif colour and not size and rng.random() < 0.2:
        return f"something {colour}"
    else:
        noun = "shape" if compact else _choice(("shape", "shape", "object", "thing"), rng)
    post_colour = bool(colour) and not compact and rng.random() < 0.15
    words = [w for w in (size, None if post_colour else colour, noun) if w]
    phrase = _with_article(" ".join(words))
    return f"{phrase} coloured {colour}" if post_colour else phrase


def _position_phrase(scene: Scene, rng: np.random.Generator, compact: bool) -> str:
    """'in the top left', 'at the upper left corner', 'in the bottom right quadrant'."""
    words = _pick(POSITION_WORDS[scene.position], rng, compact)
    if compact:
        return f"in the {words}"
    preposition = _choice(("in the", "in the", "at the"), rng)
    suffix = _choice(("", "", " corner", " quadrant"), rng)
    return f"{preposition} {words}{suffix}"


def _background_phrases(
    scene: Scene, named: set[str], rng: np.random.Generator, compact: bool
) -> tuple[str, str]:
    """(noun phrase, prepositional phrase): ('dark stripes', 'on dark stripes'), ..."""
    brightness = (
        _pick(BRIGHTNESS_WORDS[scene.brightness], rng, compact) if ("brightness" in named) else None
    )
    pattern_nouns = PATTERN_NOUNS[scene.pattern]
    noun_form = "pattern" in named and bool(pattern_nouns) and not compact and rng.random() < 0.35
    if noun_form:
        words = [w for w in (brightness, _pick(pattern_nouns, rng, compact)) if w]
        noun_phrase = " ".join(words)
    else:
        pattern = (
            _pick(PATTERN_ADJECTIVES[scene.pattern], rng, compact) if "pattern" in named else None
        )
        adjectives = [w for w in (brightness, pattern) if w]
        if len(adjectives) == 2 and rng.random() < 0.5:
            adjectives.reverse()
        noun_phrase = _with_article(" ".join([*adjectives, "background"]))
    preposition = "on" if compact else _choice(("on", "on", "against"), rng)
    return noun_phrase, f"{preposition} {noun_phrase}"


def _compose(scene: Scene, named: set[str], rng: np.random.Generator, compact: bool) -> str:
    has_object = bool(named & {"shape", "colour", "size"})
    has_position = "position" in named
    has_background = bool(named & set(BACKGROUND_CONCEPTS))
    obj = _object_phrase(scene, named, rng, compact)
    pos = _position_phrase(scene, rng, compact) if has_position else ""
    bg_noun, bg_on = _background_phrases(scene, named, rng, compact) if has_background else ("", "")
    prefix = "" if compact or rng.random() < 0.65 else _choice(_PREFIXES, rng)
    frame = rng.random()
    if has_background and not has_object and not has_position and frame < 0.5:
        parts = [prefix + bg_noun]  # "a photo of a dark striped background"
    elif has_position and frame < 0.2 and not compact:
        parts = [f"{pos},", obj, bg_on]  # "in the top left, a red circle on dots"
    elif has_background and frame < 0.4 and not compact:
        parts = [prefix + bg_noun, "with", obj, pos]  # "a striped background with a red circle"
    elif frame < 0.7:
        parts = [prefix + obj, pos, bg_on]
    else:
        parts = [prefix + obj, bg_on, pos]
    return " ".join(p for p in parts if p)


def _choose_named(rng: np.random.Generator) -> set[str]:
    while True:
        chosen = {c for c in CONCEPT_NAMES if rng.random() < _NAME_PROBABILITY}
        if chosen:
            return chosen


def caption(scene: Scene, rng: np.random.Generator) -> Caption:
    """A random true caption naming a random non-empty subset of the scene's concepts.

    Each concept is named with probability ≈ 0.56, so every concept appears in over half the
    captions (rare concepts were not learned in the feasibility run, docs/design.md §10).
    """
    named = _choose_named(rng)
    text = _compose(scene, named, rng, compact=False)
    if caption_tokens(text) > MAX_CAPTION_TOKENS:
        text = _compose(scene, named, rng, compact=True)
    return Caption(text=text, named={c: getattr(scene, c) for c in CONCEPT_NAMES if c in named})


def caption_tokens(text: str) -> int:
    """open_clip BPE tokens of a caption (without start/end), counted without a tokenizer."""
    words = text.replace(",", " ").split()
    return len(words) + text.count(",") + sum(_EXTRA_TOKENS.get(w, 0) for w in words)


def caption_is_true(named: Mapping[str, str], scene: Scene) -> bool:
    """A caption is true of a scene iff every attribute it names matches."""
    for concept, value in named.items():
        _check_value(concept, value)
        if getattr(scene, concept) != value:
            return False
    return True


def caption_codes(captions: Sequence[Caption | Mapping[str, str]]) -> np.ndarray:
    """int64 [n, n_concepts]: the value index each caption names per concept, -1 where unnamed."""
    out = np.full((len(captions), len(CONCEPT_NAMES)), -1, dtype=np.int64)
    for i, cap in enumerate(captions):
        named = cap.named if isinstance(cap, Caption) else cap
        for concept, value in named.items():
            _check_value(concept, value)
            out[i, CONCEPT_NAMES.index(concept)] = _VALUE_INDEX[concept][value]
    return out


def positives_matrix(
    captions: Sequence[Caption | Mapping[str, str]], scenes: Sequence[Scene] | np.ndarray
) -> np.ndarray:
    """bool [n_captions, n_images]: caption i is true of image j (multi-positive contrastive loss).

    `scenes` may also be the int label matrix of a WorldBatch ([n_images, n_concepts]).
    """
    codes = caption_codes(captions)
    labels = scenes if isinstance(scenes, np.ndarray) else scene_labels(scenes)
    if labels.ndim != 2 or labels.shape[1] != len(CONCEPT_NAMES):
        raise InvalidInputError(
            f"labels must have shape [n, {len(CONCEPT_NAMES)}], got {tuple(labels.shape)}"
        )
    named = codes[:, None, :]
    match = (named < 0) | (named == labels[None, :, :])
    return match.all(axis=2)


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


@dataclass
class WorldBatch:
    """Images, labels, scenes and captions of one draw (row i of each belongs together)."""

    images: np.ndarray  # uint8 [n, H, W, 3]
    labels: np.ndarray  # int64 [n, n_concepts], value index per concept in CONCEPTS order
    scenes: list[Scene]
    captions: list[Caption]

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.captions]

    def __len__(self) -> int:
        return len(self.scenes)


def _split_code(split: str) -> int:
    if split not in _SPLIT_CODES:
        raise InvalidInputError(f"unknown split {split!r}; valid splits: train, test")
    return _SPLIT_CODES[split]


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")


def _make_batch(
    n: int, seed_seq: np.random.SeedSequence, split: str, config: WorldConfig
) -> WorldBatch:
    """Independent streams for scenes, pixels and captions: changing one leaves the others."""
    scene_rng, image_rng, caption_rng = (np.random.default_rng(s) for s in seed_seq.spawn(3))
    bias_p = config.bias_p if split == "train" else None
    scenes = sample_scenes(n, scene_rng, bias_p, config)
    size = config.image_size
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        images[i] = render(scene, image_rng, size)
    captions = [caption(scene, caption_rng) for scene in scenes]
    return WorldBatch(images=images, labels=scene_labels(scenes), scenes=scenes, captions=captions)


def generate(
    n: int,
    seed: int,
    split: Literal["train", "test"],
    config: WorldConfig | None = None,
) -> WorldBatch:
    """n scenes with images and captions; train is biased (config.bias_p), test is unbiased.

    Deterministic for (seed, split, config); train and test of one seed never share a stream.
    """
    code = _split_code(split)
    _check_seed(seed)
    if n < 0:
        raise InvalidInputError(f"n must be >= 0, got {n}")
    return _make_batch(
        n, np.random.SeedSequence([int(seed), code, 0]), split, config or WorldConfig()
    )


def iter_batches(
    batch_size: int,
    seed: int,
    split: Literal["train", "test"],
    config: WorldConfig | None = None,
    *,
    start: int = 0,
    n_batches: int | None = None,
) -> Iterator[WorldBatch]:
    """Stream batches drawn on the fly (memory stays one batch); batch k depends only on k.

    `start` skips to batch `start` without drawing the earlier ones (resuming a run);
    `n_batches` = None streams forever.
    """
    code = _split_code(split)
    _check_seed(seed)
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    if start < 0 or (n_batches is not None and n_batches < 0):
        raise InvalidInputError(f"start and n_batches must be >= 0, got {start}, {n_batches}")
    cfg = config or WorldConfig()
    k = start
    while n_batches is None or k < start + n_batches:
        yield _make_batch(batch_size, np.random.SeedSequence([int(seed), code, 1, k]), split, cfg)
        k += 1


def mentioned_values(text: str) -> dict[str, set[str]]:
    """The values each concept's vocabulary names in a text (whole-word matches; for checks)."""
    found: dict[str, set[str]] = {}
    for concept, values in VOCABULARY.items():
        for value, words in values.items():
            if any(re.search(rf"\b{re.escape(w)}\b", text) for w in words):
                found.setdefault(concept, set()).add(value)
    return found


def expected_preferred_rate(bias_p: float, n_colours: int = len(CONCEPTS["colour"])) -> float:
    """The shape→preferred-colour co-occurrence rate that sample_scenes plants: p + (1-p)/n."""
    return bias_p + (1.0 - bias_p) / n_colours
