"""The image preprocessing config of a bundle, from a loaded open_clip model.

It records what open_clip's validation transform really does, not only what its config says:
'random' interpolation means bicubic at inference, and a non-square 'shortest' transform always
resizes bicubic (open_clip does not pass its interpolation to `ResizeKeepRatio` there). The
engine's `ImagePreprocessor` runs the result; it is checked here so that an export never writes a
config the engine would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccsclip.engine.preprocess import CROPS, ImagePreprocessor
from ccsclip.errors import InvalidInputError

PREPROCESS_DEFAULTS = {
    "size": 224,
    "mode": "RGB",
    "mean": (0.48145466, 0.4578275, 0.40821073),
    "std": (0.26862954, 0.26130258, 0.27577711),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}


def preprocess_config(loaded_or_cfg: Any) -> dict[str, Any]:
    """JSON-able preprocess config (size [H, W], resize_mode, crop, interpolation, mean, std,
    fill_color, mode) of a LoadedModel, or of an open_clip preprocess_cfg dict."""
    raw = getattr(loaded_or_cfg, "preprocess_cfg", loaded_or_cfg)
    if not isinstance(raw, Mapping):
        raise InvalidInputError(
            f"expected a LoadedModel or a preprocess_cfg mapping, got {type(raw).__name__}"
        )
    cfg = {**PREPROCESS_DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
    size = cfg["size"]
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mean, std = cfg["mean"], cfg["std"]
    mean = [float(mean)] * 3 if isinstance(mean, (int, float)) else [float(v) for v in mean]
    std = [float(std)] * 3 if isinstance(std, (int, float)) else [float(v) for v in std]
    resize_mode = cfg["resize_mode"]
    interpolation = cfg["interpolation"]
    if interpolation == "random":  # open_clip: ignored for inference, bicubic
        interpolation = "bicubic"
    if resize_mode == "shortest" and height != width:
        interpolation = "bicubic"
    out = {
        "size": [height, width],
        "resize_mode": resize_mode,
        "crop": CROPS.get(resize_mode, "unknown"),
        "interpolation": interpolation,
        "mean": mean,
        "std": std,
        "fill_color": int(cfg["fill_color"]),
        "mode": cfg["mode"],
    }
    ImagePreprocessor(out)  # refuses what the engine cannot run, naming the field
    return out
