"""open_clip's validation image transform with PIL + numpy (no torch, no torchvision).

open_clip's transform receives a PIL image, and torchvision's `Resize` on a PIL image calls
`PIL.Image.resize(size, resample)` (PIL's own antialiased filter; torchvision's `antialias` flag
only concerns tensors). So this module makes the same PIL calls in the same order, on the image
in its original mode, and only then converts to RGB:

* `shortest`, square target S: resize the short side to S, the long side to
  `int(S * long / short)` (torchvision's rule, truncating), with the configured filter; skipped
  when the size already matches. Then torchvision's center crop (`round` of half the excess,
  zero padding if the image is smaller).
* `shortest`, non-square target: open_clip's `ResizeKeepRatio` (sizes `round(x / ratio)`), which
  ignores the configured filter and always uses bicubic; the exporter writes the filter that
  really runs, so the config says 'bicubic' there. Then the center crop.
* `longest`: `ResizeKeepRatio(longest=1)` with the configured filter, then center crop-or-pad
  with `fill_color`.
* `squash`: resize to exactly (H, W).

Then `convert('RGB')`, /255 and `(x - mean) / std` in float32, like `to_tensor` + `Normalize`.
PIL itself switches palette and bilevel images to nearest-neighbour and resizes RGBA/LA
premultiplied: the same calls give the same behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ccsclip.errors import InvalidInputError

INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
RESIZE_MODES = ("shortest", "longest", "squash")
CROPS = {"shortest": "center", "longest": "center_or_pad", "squash": "none"}
_FIELDS = ("size", "resize_mode", "crop", "interpolation", "mean", "std", "fill_color", "mode")


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise InvalidInputError(
            f"preprocess field 'size' must be a positive integer or [height, width], got {value!r}"
        )
    return int(value[0]), int(value[1])


def _channels(name: str, value: Any) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise InvalidInputError(
            f"preprocess field {name!r} must be 3 numbers (R, G, B), got {value!r}"
        )
    try:
        array = np.asarray([float(v) for v in value], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"preprocess field {name!r} must be numbers, got {value!r}"
        ) from exc
    if not np.isfinite(array).all() or (name == "std" and (array == 0).any()):
        raise InvalidInputError(
            f"preprocess field {name!r} must be finite{' and non-zero' if name == 'std' else ''}, "
            f"got {value!r}"
        )
    return [float(v) for v in value]


class ImagePreprocessor:
    """PIL images -> float32 [N, 3, H, W], equal to open_clip's val transform (module doc).

    `cfg` is the dict written by `ccsclip.export.preprocess.preprocess_config`. Fields this class
    cannot reproduce are refused with an InvalidInputError that names them.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        if not isinstance(cfg, Mapping):
            raise InvalidInputError(
                f"preprocess config must be a mapping, got {type(cfg).__name__}"
            )
        unknown = sorted(set(cfg) - set(_FIELDS))
        if unknown:
            raise InvalidInputError(
                f"preprocess fields {unknown} are not supported; known fields: {list(_FIELDS)}"
            )
        for field in ("size", "mean", "std"):
            if field not in cfg:
                raise InvalidInputError(f"preprocess config lacks the field {field!r}")
        self.size = _size(cfg["size"])
        self.resize_mode = cfg.get("resize_mode", "shortest")
        if self.resize_mode not in RESIZE_MODES:
            raise InvalidInputError(
                f"preprocess field 'resize_mode' {self.resize_mode!r} is not supported; "
                f"choose one of {list(RESIZE_MODES)}"
            )
        crop = cfg.get("crop", CROPS[self.resize_mode])
        if crop != CROPS[self.resize_mode]:
            raise InvalidInputError(
                f"preprocess field 'crop' {crop!r} does not go with resize_mode "
                f"{self.resize_mode!r}, which crops {CROPS[self.resize_mode]!r}"
            )
        interpolation = cfg.get("interpolation", "bicubic")
        if interpolation not in INTERPOLATIONS:
            raise InvalidInputError(
                f"preprocess field 'interpolation' {interpolation!r} is not supported; "
                f"choose one of {sorted(INTERPOLATIONS)}"
            )
        self.interpolation = interpolation
        self._resample = INTERPOLATIONS[interpolation]
        mode = cfg.get("mode", "RGB")
        if mode != "RGB":
            raise InvalidInputError(f"preprocess field 'mode' {mode!r} is not supported; use 'RGB'")
        fill = cfg.get("fill_color", 0)
        if not isinstance(fill, int) or isinstance(fill, bool):
            raise InvalidInputError(
                f"preprocess field 'fill_color' must be an integer, got {fill!r}"
            )
        self.fill_color = fill
        self.mean = _channels("mean", cfg["mean"])
        self.std = _channels("std", cfg["std"])
        # float32 like torchvision's Normalize, which builds its tensors from these floats
        self._mean = np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1)

    def _resize(self, image: Image.Image) -> Image.Image:
        height, width = self.size
        w, h = image.size
        if self.resize_mode == "squash":
            target = (height, width)
        elif self.resize_mode == "shortest" and height == width:
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = height, int(height * long / short)
            target = (new_long, new_short) if w <= h else (new_short, new_long)
        else:  # open_clip's ResizeKeepRatio; always bicubic for non-square 'shortest' (see doc)
            longest = 1.0 if self.resize_mode == "longest" else 0.0
            ratio_h, ratio_w = h / height, w / width
            ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
            target = (round(h * 1.0 / ratio), round(w * 1.0 / ratio))
        if target == (h, w):
            return image
        return image.resize((target[1], target[0]), self._resample)

    @staticmethod
    def _pad(image: Image.Image, ltrb: tuple[int, int, int, int], fill: int) -> Image.Image:
        """torchvision's PIL constant padding (fill per band, palette kept)."""
        bands = len(image.getbands())
        value: int | float | tuple[int | float, ...] = fill
        if bands > 1:
            value = (fill,) * bands
        if image.mode != "F":
            value = tuple(int(v) for v in value) if isinstance(value, tuple) else int(value)
        if image.mode == "P":
            palette = image.getpalette()
            padded = ImageOps.expand(image, border=ltrb, fill=value)
            padded.putpalette(palette)
            return padded
        return ImageOps.expand(image, border=ltrb, fill=value)

    def _crop(self, image: Image.Image, fill: int) -> Image.Image:
        """torchvision's center_crop (fill 0) and open_clip's center_crop_or_pad (fill_color)."""
        crop_h, crop_w = self.size
        w, h = image.size
        if crop_w > w or crop_h > h:
            ltrb = (
                (crop_w - w) // 2 if crop_w > w else 0,
                (crop_h - h) // 2 if crop_h > h else 0,
                (crop_w - w + 1) // 2 if crop_w > w else 0,
                (crop_h - h + 1) // 2 if crop_h > h else 0,
            )
            image = self._pad(image, ltrb, fill)
            w, h = image.size
            if (crop_w, crop_h) == (w, h):
                return image
        top = int(round((h - crop_h) / 2.0))
        left = int(round((w - crop_w) / 2.0))
        return image.crop((left, top, left + crop_w, top + crop_h))

    def transform(self, image: Image.Image) -> np.ndarray:
        """One image -> float32 [3, H, W]."""
        image = self._resize(image)
        if self.resize_mode == "shortest":
            image = self._crop(image, 0)
        elif self.resize_mode == "longest":
            image = self._crop(image, self.fill_color)
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
        chw = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        return (chw - self._mean) / self._std

    def __call__(self, images: Image.Image | Sequence[Image.Image]) -> np.ndarray:
        """PIL images (any mode and size) -> float32 [N, 3, H, W]."""
        if isinstance(images, Image.Image):
            images = [images]
        height, width = self.size
        out = np.empty((len(images), 3, height, width), dtype=np.float32)
        for index, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise InvalidInputError(
                    f"images[{index}] is a {type(image).__name__}, expected a PIL image"
                )
            if image.width < 1 or image.height < 1:
                raise InvalidInputError(f"images[{index}] has an empty size {image.size}")
            out[index] = self.transform(image)
        return out

    def config(self) -> dict[str, Any]:
        """The normalised config this preprocessor runs (JSON-able)."""
        return {
            "size": list(self.size),
            "resize_mode": self.resize_mode,
            "crop": CROPS[self.resize_mode],
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "fill_color": self.fill_color,
            "mode": "RGB",
        }
