"""Save a trained organism as fp16 safetensors with its training card beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ccsclip.fileio import atomic_path, atomic_write_json, sha256_file
from ccsclip.models import LoadedModel, weights_sha256


def save_trained(
    loaded: LoadedModel, card: dict[str, Any], out_dir: str | Path
) -> tuple[Path, Path]:
    """Write `<model>.safetensors` (fp16) and `<model>.card.json`, which names the file's hash."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = loaded.spec.name
    weights = out / f"{name}.safetensors"
    state = {
        k: v.detach().to(torch.float16).contiguous() for k, v in loaded.model.state_dict().items()
    }
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"model": name, "format": "open_clip state_dict, fp16"})
    rounded = loaded.model.float()
    rounded.load_state_dict({k: v.float() for k, v in state.items()})
    card = {
        **card,
        "file": weights.name,
        "file_sha256": sha256_file(weights),
        "weights_sha256": weights_sha256(rounded),
    }
    card_path = out / f"{name}.card.json"
    atomic_write_json(card_path, card)
    return weights, card_path
