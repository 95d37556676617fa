"""ONNX export of the image and text towers, and parity against torch (docs/design.md §6, §7).

Both towers return the *projected, not normalised* embeddings (`encode_image` / `encode_text`
with `normalize=False`): normalising is the caller's job (the engine does it in numpy), so the
file also serves uses that need the raw projection.
Inputs: `pixel_values` float32 [batch, 3, S, S] and `input_ids` int64 [batch, context]; output
`embeddings` float32 [batch, E]; the batch axis is dynamic and named `batch`.

Text towers that trim exactly (`ccsclip.models.text`: causal mask, pooling at the end-of-text
token) are exported with a dynamic sequence axis too (`sequence`, 1..context): the graph slices
the positional embedding and the causal mask to the input's length, so the engine feeds ids cut
after the batch's last end-of-text token and gets the full-context embeddings at a fraction of
the cost. Other towers keep the static [batch, context] input.

Exporter: the TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`). With torch
2.14 here both paths give the same parity, but the legacy one exports ViT-B-32's image tower in
~10 s against ~24 s for the dynamo exporter on two cores, needs no onnxscript optimisation pass
and names the dynamic axis directly; it traces the text tower's argmax pooling (eot = max id)
over int64 ids into ArgMax + Gather. It is deprecated upstream but present in the pinned torch;
moving to `dynamo=True` only needs `dynamic_shapes` instead of `dynamic_axes`.

Opset 17: the first with a native LayerNormalization op (one node, fused by onnxruntime instead
of a chain of ReduceMean/Sub/Pow), well inside what the legacy exporter supports and what both
onnxruntime 1.32 (CPU) and onnxruntime-gpu 1.31 run.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ccsclip.errors import InvalidInputError
from ccsclip.fileio import atomic_path

OPSET = 17
BATCH_AXIS = "batch"
SEQUENCE_AXIS = "sequence"
IMAGE_INPUT = "pixel_values"
TEXT_INPUT = "input_ids"
OUTPUT = "embeddings"

__all__ = [
    "OPSET",
    "ImageTower",
    "TextTower",
    "export_image_tower",
    "export_text_tower",
    "onnx_metadata",
    "onnx_parity",
]


class ImageTower(nn.Module):
    """`model.encode_image(pixel_values)`: projected, not normalised, embeddings [B, E]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values, normalize=False)


class TextTower(nn.Module):
    """`model.encode_text(input_ids)`: projected, not normalised, embeddings [B, E].

    `dynamic_length`: run at the input's own length (positional embedding and causal mask sliced
    to it), for towers where that is exact (`ccsclip.models.text.trim_unsupported` is None).
    """

    def __init__(self, model: nn.Module, dynamic_length: bool = False) -> None:
        super().__init__()
        self.model = model
        self.dynamic_length = dynamic_length

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.dynamic_length:
            from ccsclip.models.text import encode_text_prefix

            return encode_text_prefix(self.model, input_ids)
        return self.model.encode_text(input_ids, normalize=False)


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise InvalidInputError(
            f"ONNX metadata keys and values must be strings; not so for {bad}: "
            "serialise lists and numbers (e.g. json.dumps) first"
        )
    return dict(metadata)


def _export(
    wrapper: nn.Module,
    dummy: torch.Tensor,
    input_name: str,
    path: str | os.PathLike[str],
    metadata: Mapping[str, str],
    opset: int,
    dynamic: Mapping[int, str] | None = None,
) -> Path:
    """Trace, attach metadata, save with weights inside, check, and rename into place.

    `dynamic`: the input's dynamic axes (default: the batch axis only)."""
    props = _check_metadata(metadata)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # Shape assertions in nn.functional become constants under tracing (the shapes are fixed
        # except batch), and argmax/arange indices are never negative: these warnings are moot.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*advanced indexing.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            wrapper.eval(),
            (dummy,),
            buffer,
            input_names=[input_name],
            output_names=[OUTPUT],
            dynamic_axes={input_name: dict(dynamic or {0: BATCH_AXIS}), OUTPUT: {0: BATCH_AXIS}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    del buffer
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    target = Path(path)
    with atomic_path(target) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp))
    return target


def export_image_tower(
    model: nn.Module,
    path: str | os.PathLike[str],
    image_size: int,
    metadata: Mapping[str, str],
    opset: int = OPSET,
) -> Path:
    """Write the image tower (e.g. a baked model) to `path`: pixel_values -> embeddings."""
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    if int(size) != image_size:
        raise InvalidInputError(f"image_size {image_size} does not match the model's {size}")
    param = next(visual.parameters())
    dummy = torch.randn(2, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    return _export(ImageTower(model), dummy, IMAGE_INPUT, path, metadata, opset)


def export_text_tower(
    model: nn.Module,
    path: str | os.PathLike[str],
    context_length: int,
    metadata: Mapping[str, str],
    opset: int = OPSET,
    dynamic_length: bool = False,
) -> Path:
    """Write the text tower to `path`: int64 input_ids [batch, context] -> embeddings.

    The tower pools at the argmax of the ids (the end-of-text token has the highest id), so the
    ids must come from the model's own tokenizer, padded to `context_length`; with
    `dynamic_length` (only for towers where trimming is exact) they may also be cut to any length
    that keeps every row's end-of-text token.
    """
    if dynamic_length:
        from ccsclip.models.text import trim_unsupported

        reason = trim_unsupported(model)
        if reason is not None:
            raise InvalidInputError(f"no dynamic-length text tower for this model: {reason}")
    if int(model.context_length) != context_length:
        raise InvalidInputError(
            f"context_length {context_length} does not match the model's {model.context_length}"
        )
    device = next(model.parameters()).device
    dummy = torch.zeros(2, context_length, dtype=torch.long, device=device)
    dummy[:, 0], dummy[:, 1] = 1, 2  # a start token then the (highest) end token
    axes = {0: BATCH_AXIS, 1: SEQUENCE_AXIS} if dynamic_length else None
    tower = TextTower(model, dynamic_length)
    swap = _traceable_text_attention(model) if dynamic_length else contextlib.nullcontext()
    with swap:
        return _export(tower, dummy, TEXT_INPUT, path, metadata, opset, axes)


@contextlib.contextmanager
def _traceable_text_attention(model: nn.Module) -> Iterator[None]:
    """Swap the text blocks' `nn.MultiheadAttention` for the head-resolved module (same
    parameters, same function) while tracing: torch's MHA reads the key length as `k.shape[0]`,
    which the tracer records as a constant, so the sequence axis would not stay dynamic."""
    from ccsclip.heads.attention import HeadResolvedAttention

    blocks = list(model.transformer.resblocks)
    stock = [block.attn for block in blocks]
    try:
        for block, attn in zip(blocks, stock, strict=True):
            if isinstance(attn, nn.MultiheadAttention):
                block.attn = HeadResolvedAttention(attn)
        yield
    finally:
        for block, attn in zip(blocks, stock, strict=True):
            block.attn = attn


def onnx_metadata(onnx_path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata_props of an ONNX file, as onnxruntime reads them."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def onnx_parity(
    onnx_path: str | os.PathLike[str],
    torch_fn: Callable[..., torch.Tensor],
    inputs: torch.Tensor | Mapping[str, torch.Tensor],
) -> float:
    """Max |onnxruntime(CPU) - torch_fn| over the first output's elements, same inputs.

    A single tensor feeds the model's only input; a mapping feeds inputs by name, and torch_fn
    receives the tensors positionally in the mapping's order.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if isinstance(inputs, torch.Tensor):
        if len(names) != 1:
            raise InvalidInputError(f"{onnx_path} has inputs {names}: pass a mapping")
        inputs = {names[0]: inputs}
    missing = sorted(set(names) - set(inputs))
    if missing:
        raise InvalidInputError(f"inputs {missing} missing: {onnx_path} needs {names}")
    feed = {name: inputs[name].detach().cpu().numpy() for name in names}
    got = session.run(None, feed)[0]
    with torch.no_grad():
        expected = torch_fn(*inputs.values()).detach().cpu().numpy()
    if got.shape != expected.shape:
        raise InvalidInputError(f"ONNX output {got.shape} vs torch {expected.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
