"""Load open_clip CLIPs by registry name + tag, `hf-hub:`, `local-dir:` or checkpoint file.

This module (with `checks`) is the only place that knows open_clip's factory. It registers the
project's own configs (`ccsclip-tiny`, `ccsclip-organism`) and the embedded default's weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.factory import get_model_config

from ccsclip.errors import CcsclipError, InvalidInputError, NotFoundError
from ccsclip.models.checks import check_decomposable
from ccsclip.models.spec import ModelSpec

SCHEMAS = ("hf-hub:", "local-dir:")
EMBEDDED_TAG = "embedded"
_PACKAGE_CONFIGS = resources.files("ccsclip.models") / "configs"
_PACKAGE_WEIGHTS = resources.files("ccsclip.models") / "weights"
_registered = False


def register_project_configs() -> None:
    """Add the project's model configs to open_clip's registry (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(Path(str(_PACKAGE_CONFIGS)))
        _registered = True


def project_models() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in Path(str(_PACKAGE_CONFIGS)).glob("*.json"))


def embedded_weights_path(name: str) -> Path:
    """Path of the weights shipped in the package for one of the project's own models."""
    path = Path(str(_PACKAGE_WEIGHTS)) / f"{name}.safetensors"
    if not path.is_file():
        raise NotFoundError(
            f"no embedded weights for {name!r}: shipped weights exist for "
            f"{sorted(p.stem for p in Path(str(_PACKAGE_WEIGHTS)).glob('*.safetensors'))}"
        )
    return path


@dataclass
class LoadedModel:
    """An open_clip CLIP in eval mode plus its spec, image transform and tokenizer."""

    model: torch.nn.Module
    spec: ModelSpec
    preprocess: Any
    tokenizer: Any
    preprocess_cfg: dict[str, Any]


def _is_checkpoint_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith((".safetensors", ".pt", ".pth", ".bin"))


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint without unpickling code: safetensors, or torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or unsafe files: say which and why
        raise InvalidInputError(
            f"cannot read checkpoint {str(path)!r}: {exc}. Use a safetensors file or a plain "
            "state_dict saved with torch.save (pickled code is refused)."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(f"checkpoint {str(path)!r} is not a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_checkpoint_into(model: torch.nn.Module, path: str, name: str) -> None:
    from open_clip.factory import convert_state_dict

    state = convert_state_dict(model, read_state_dict(path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise InvalidInputError(
            f"checkpoint {path!r} does not fit model {name!r}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}. Pass the --model the "
            "checkpoint was trained as."
        )
    model.load_state_dict(state, strict=True)


def weights_sha256(model: torch.nn.Module) -> str:
    """Hash of the weights in memory (names, dtypes, shapes, bytes), whatever their source."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs random initialisation as a root-logger warning; here it is intended."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _create(
    name: str, pretrained: str | None, seed: int
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    register_project_configs()
    if not name.startswith(SCHEMAS) and get_model_config(name) is None:
        known = sorted(open_clip.list_models())
        raise NotFoundError(
            f"unknown model {name!r}: use an open_clip name (e.g. ViT-B-32), one of the project's "
            f"{project_models()}, 'hf-hub:ORG/REPO' or 'local-dir:PATH' ({len(known)} names known)"
        )
    file_weights = None
    tag = pretrained
    if pretrained == EMBEDDED_TAG:
        file_weights, tag = str(embedded_weights_path(name)), None
    elif pretrained and _is_checkpoint_path(pretrained):
        file_weights, tag = pretrained, None
    try:
        with torch.random.fork_rng(), _quiet_open_clip():  # seeded; caller's RNG untouched
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=tag, weights_only=True, load_weights=True
            )
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        raise CcsclipError(
            f"open_clip could not create {name!r} (pretrained={pretrained!r}): {exc}"
        ) from exc
    if file_weights is not None:
        _load_checkpoint_into(model, file_weights, name)
    cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    return model.eval(), preprocess, cfg


def load_model(
    name: str, pretrained: str | None = None, device: str = "cpu", seed: int = 0
) -> LoadedModel:
    """Load a CLIP and check that its image tower decomposes exactly into heads.

    `pretrained` is an open_clip tag ('openai', 'laion2b_s34b_b79k'), a checkpoint path
    (.safetensors, or a state_dict for torch.load(weights_only=True)), 'embedded' for the
    weights shipped with the project's own models, or None for random initialisation (seeded).
    """
    model, preprocess, cfg = _create(name, pretrained, seed)
    check_decomposable(model, name)
    model = model.to(device)
    tokenizer = open_clip.get_tokenizer(name)
    spec = build_spec(model, name, pretrained)
    return LoadedModel(
        model=model, spec=spec, preprocess=preprocess, tokenizer=tokenizer, preprocess_cfg=cfg
    )


def build_spec(model: torch.nn.Module, name: str, pretrained: str | None) -> ModelSpec:
    visual = model.visual
    block = visual.transformer.resblocks[0]
    width = visual.transformer.width
    heads = block.attn.num_heads
    image_size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    patch = visual.patch_size[0] if isinstance(visual.patch_size, tuple) else visual.patch_size
    grid = visual.grid_size[0] * visual.grid_size[1]
    return ModelSpec(
        name=name,
        pretrained=pretrained,
        weights_sha256=weights_sha256(model),
        layers=len(visual.transformer.resblocks),
        heads=heads,
        head_width=width // heads,
        width=width,
        embed_dim=visual.proj.shape[1],
        image_size=int(image_size),
        patch_size=int(patch),
        n_tokens=grid + 1,
        context_length=int(model.context_length),
    )
