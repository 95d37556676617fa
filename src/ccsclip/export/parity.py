"""What writing and verifying a bundle both compute: parity inputs, embeddings, costs.

Parity is measured on L2-normalised embeddings (max |ONNX - torch| over elements): seeded
standard-normal pixels for image towers (far from natural images, so they stress every path),
texts of several lengths for the text tower.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ccsclip.export.surgery import flops_per_image, predicted_parameter_count
from ccsclip.heads.ablation import Ablation, ablated
from ccsclip.heads.resolve import image_blocks
from ccsclip.models import LoadedModel

TEXT_FILE = "text.onnx"
PARITY_BATCHES = (1, 7)
PARITY_SEED = 0
REDUCED_TOLERANCE = {"fp16": 1e-2, "int8": 5e-2}  # measured: ~2e-4 and ~5e-3 on three models
PARITY_TEXTS = ["a photo of a dog.", "a red circle on a striped background", "", "x " * 40]
LONG_TEXT = "a " * 80  # longer than any context: truncated, end-of-text in the last slot


def image_file(name: str) -> str:
    return f"image-{name}.onnx"


def open_session(path: Path) -> Any:
    """A CPU onnxruntime session, with `--threads` intra-op threads when the user gave it."""
    import onnxruntime as ort

    from ccsclip.cpu_threads import configured_threads

    options = ort.SessionOptions()
    threads = configured_threads()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def max_abs(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=True))


def parity_images(image_size: int, batches: Sequence[int] = PARITY_BATCHES) -> list[np.ndarray]:
    """Seeded standard-normal pixel tensors: far from natural images, so they stress every path."""
    generator = torch.Generator().manual_seed(PARITY_SEED)
    return [torch.randn(b, 3, image_size, image_size, generator=generator).numpy() for b in batches]


def onnx_embeddings(session: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    name = session.get_inputs()[0].name
    return [normalise(session.run(None, {name: x})[0]) for x in inputs]


@torch.inference_mode()
def torch_image_reference(
    model: nn.Module, ablation: Ablation, inputs: list[np.ndarray]
) -> list[np.ndarray]:
    """Normalised embeddings of the soft-pruned model (heads masked in the forward pass)."""
    device = next(model.parameters()).device
    with ablated(model.eval(), ablation):
        return [
            normalise(model.encode_image(torch.from_numpy(x).to(device), normalize=True).cpu())
            for x in inputs
        ]


def tower_config(model: nn.Module) -> tuple[float, bool]:
    """(mlp_ratio, layer_scale) of the image tower: the cost model needs them, specs lack them."""
    block = image_blocks(model)[0]
    fc = block.mlp.c_fc
    layer_scale = not isinstance(getattr(block, "ls_1", nn.Identity()), nn.Identity)
    return fc.out_features / fc.in_features, layer_scale


def costs(loaded: LoadedModel, heads: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(predicted parameters, predicted multiply-adds per image) of the baked image tower."""
    mlp_ratio, layer_scale = tower_config(loaded.model)
    spec = loaded.spec
    params = predicted_parameter_count(spec, heads, mlp_ratio=mlp_ratio, layer_scale=layer_scale)
    return params, flops_per_image(spec, heads, mlp_ratio=mlp_ratio)


def _trim(ids: np.ndarray) -> np.ndarray:
    return ids[:, : int(ids.argmax(axis=1).max()) + 1]


@torch.inference_mode()
def text_parity(loaded: LoadedModel, path: Path, dynamic_length: bool = False) -> float:
    """Max |ONNX - full-context torch| on normalised text embeddings.

    With `dynamic_length` the file is also run on the ids trimmed to each batch's last
    end-of-text token: the short texts alone, each text alone, and all together (full length).
    """
    texts = [*PARITY_TEXTS, LONG_TEXT]
    ids = loaded.tokenizer(texts, context_length=loaded.spec.context_length)
    device = next(loaded.model.parameters()).device
    expected = normalise(loaded.model.encode_text(ids.to(device), normalize=True).cpu())
    session = open_session(path)
    name = session.get_inputs()[0].name
    ids = ids.numpy()
    batches = [np.arange(len(texts))]
    if dynamic_length:
        batches += [np.arange(len(PARITY_TEXTS))] + [np.array([i]) for i in range(len(texts))]
    got, want = [], []
    for rows in batches:
        batch = _trim(ids[rows]) if dynamic_length and len(rows) < len(texts) else ids[rows]
        got.append(normalise(session.run(None, {name: batch})[0]))
        want.append(expected[rows])
    return max_abs(got, want)
