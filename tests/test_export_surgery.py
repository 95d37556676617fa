"""Head surgery and ONNX export: soft pruning == baked == ONNX file (docs/design.md §6, §7)."""

from __future__ import annotations

import copy
import dataclasses

import onnx
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ccsclip.errors import InvalidInputError
from ccsclip.export.onnx_export import (
    OPSET,
    export_image_tower,
    export_text_tower,
    onnx_metadata,
    onnx_parity,
)
from ccsclip.export.surgery import (
    ConstantAttention,
    PrunedSelfAttention,
    bake,
    flops_per_image,
    layer_norm_flops,
    predicted_parameter_count,
    qkv_rows_to_keep,
    slice_in_proj,
    slice_out_proj_columns,
)
from ccsclip.heads import Ablation, ablated
from ccsclip.heads.resolve import image_blocks

TINY_PROFILES = {
    "none": [],
    "few": [(1, 2), (2, 0)],
    "whole-layer": [(0, 0), (0, 1), (0, 2), (0, 3)],
    "several-layers": [(0, 1), (1, 0), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)],
}
# ~12 heads in the last layers of ViT-B-32 (12 layers x 12 heads).
VIT_PROFILE = [(9, 1), (9, 7), (10, 0), (10, 4), (10, 5), (10, 11)] + [(11, h) for h in range(6)]


def _with_random_biases(loaded, seed: int = 2):
    """A copy whose biases and norm gains are not 0 and 1, as in trained CLIPs.

    Random initialisation zeroes every attention bias, which would hide a lost b_O or b_in.
    """
    model = copy.deepcopy(loaded.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name.endswith("ln_1.weight"):
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return dataclasses.replace(loaded, model=model)


@pytest.fixture(scope="module")
def tiny_b(tiny):
    return _with_random_biases(tiny)


def _images(spec, count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, spec.image_size, spec.image_size, generator=generator)


def _means(spec, seed: int = 1, tokens: int | None = None) -> torch.Tensor:
    """Random stand-ins for means.safetensors: [L, T, H, d]."""
    generator = torch.Generator().manual_seed(seed)
    shape = (spec.layers, tokens or spec.n_tokens, spec.heads, spec.head_width)
    return torch.randn(shape, generator=generator)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _soft_and_baked(loaded, ablation, images):
    with torch.no_grad():
        with ablated(loaded.model, ablation):
            soft = loaded.model.encode_image(images, normalize=True)
        baked = bake(loaded.model, ablation)
        hard = baked.encode_image(images, normalize=True)
    return soft, hard, baked


# --------------------------------------------------------------------------- slicing


def test_slicing_helpers_pick_the_kept_heads_rows_and_columns():
    n_heads, d, width = 3, 2, 5
    rows = qkv_rows_to_keep([0, 2], n_heads, d)
    assert rows.tolist() == [0, 1, 4, 5, 6, 7, 10, 11, 12, 13, 16, 17]
    weight = torch.arange(3 * n_heads * d * width, dtype=torch.float32).view(-1, width)
    bias = torch.arange(3 * n_heads * d, dtype=torch.float32)
    before = weight.clone()
    new_w, new_b = slice_in_proj(weight, bias, rows)
    assert torch.equal(new_w, weight[rows]) and torch.equal(new_b, bias[rows])
    assert slice_in_proj(weight, None, rows)[1] is None
    out_w = torch.arange(width * n_heads * d, dtype=torch.float32).view(width, -1)
    cols = torch.tensor([0, 1, 4, 5])
    assert torch.equal(slice_out_proj_columns(out_w, cols), out_w[:, [0, 1, 4, 5]])
    new_w[0, 0] = -1.0  # results are copies: the source weights stay as they were
    assert torch.equal(weight, before)
    with pytest.raises(InvalidInputError, match="do not exist"):
        qkv_rows_to_keep([3], n_heads, d)


# --------------------------------------------------------------------------- bake (tiny_b)


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("profile", list(TINY_PROFILES))
def test_baked_equals_soft_pruning_tiny(tiny_b, mode, profile):
    spec = tiny_b.spec
    heads = TINY_PROFILES[profile]
    ablation = Ablation.of(heads, mode, _means(spec))
    soft, hard, baked = _soft_and_baked(tiny_b, ablation, _images(spec, 5))
    assert (soft - hard).abs().max().item() <= 1e-5
    assert _n_params(baked.visual) == predicted_parameter_count(spec, heads)
    removed = ablation.by_layer()
    for layer, block in enumerate(image_blocks(baked)):
        gone = removed.get(layer, [])
        if len(gone) == spec.heads:
            assert isinstance(block.attn, ConstantAttention)
            assert isinstance(block.ln_1, torch.nn.Identity)
            continue
        assert isinstance(block.attn, PrunedSelfAttention)
        kept = spec.heads - len(gone)
        assert block.attn.in_proj_weight.shape == (3 * kept * spec.head_width, spec.width)
        assert block.attn.out_proj.weight.shape == (spec.width, kept * spec.head_width)
        assert (block.attn.constant is not None) == (mode == "mean" and bool(gone))


def test_bake_without_heads_keeps_every_weight(tiny_b):
    baked = bake(tiny_b.model, Ablation.of([]))
    original = tiny_b.model.state_dict()
    state = baked.state_dict()
    assert list(state) == list(original)
    assert all(torch.equal(state[key], original[key]) for key in original)


def test_bake_never_mutates_its_input(tiny_b):
    spec = tiny_b.spec
    model = tiny_b.model
    before = {key: value.clone() for key, value in model.state_dict().items()}
    kinds = [type(module).__name__ for module in model.modules()]
    images = _images(spec, 2)
    with torch.no_grad():
        reference = model.encode_image(images)
        ablation = Ablation.of(TINY_PROFILES["several-layers"] + [(1, 1)], "mean", _means(spec))
        baked = bake(model, ablation)
        after = model.encode_image(images)
    assert baked is not model
    assert [type(module).__name__ for module in model.modules()] == kinds
    state = model.state_dict()
    assert list(state) == list(before)
    assert all(torch.equal(state[key], before[key]) for key in before)
    assert torch.equal(after, reference)
    assert not any(
        p.data_ptr() == q.data_ptr() for p in baked.parameters() for q in model.parameters()
    )


def test_bake_refuses_bad_means_and_heads(tiny_b):
    spec = tiny_b.spec
    wrong_tokens = Ablation.of([(1, 0)], "mean", _means(spec, tokens=spec.n_tokens + 1))
    with pytest.raises(InvalidInputError, match="tokens"):
        bake(tiny_b.model, wrong_tokens)
    with pytest.raises(InvalidInputError, match="needs ablation means"):
        bake(tiny_b.model, Ablation.of([(1, 0)], "mean", None))
    with pytest.raises(InvalidInputError, match="L3H0 does not exist"):
        bake(tiny_b.model, Ablation.of([(3, 0)]))


def test_flops_match_a_flop_counter_and_the_per_head_saving(tiny_b):
    spec = tiny_b.spec
    heads = TINY_PROFILES["whole-layer"] + [(2, 1)]
    baked = bake(tiny_b.model, Ablation.of(heads))
    # The math backend runs attention as matmuls, which the counter sees (2 FLOPs per MAC).
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        baked.visual(_images(spec, 1))
    counted = flops_per_image(spec, heads) - layer_norm_flops(spec, heads)
    assert counter.get_total_flops() == 2 * counted
    t, d, width = spec.n_tokens, spec.head_width, spec.width
    per_head = 3 * t * width * d + 2 * t * t * d + t * d * width
    assert flops_per_image(spec, []) - flops_per_image(spec, [(1, 3)]) == per_head
    assert predicted_parameter_count(spec, []) == _n_params(tiny_b.model.visual)


# --------------------------------------------------------------------------- ONNX (tiny_b)


def test_onnx_image_tower_matches_baked_tiny(tiny_b, tmp_path):
    spec = tiny_b.spec
    heads = TINY_PROFILES["several-layers"]
    baked = bake(tiny_b.model, Ablation.of(heads, "mean", _means(spec)))
    metadata = {"profile": "tiny_b-several", "profile_sha256": "ab" * 32, "removed_heads": "L0H1"}
    path = export_image_tower(baked, tmp_path / "image-tiny_b.onnx", spec.image_size, metadata)
    assert [p.name for p in tmp_path.iterdir()] == [
        "image-tiny_b.onnx"
    ]  # no temp, no external data
    for batch in (1, 7):
        error = onnx_parity(path, baked.encode_image, _images(spec, batch, seed=batch))
        assert error <= 1e-4
    meta = onnx_metadata(path)
    assert {key: meta.get(key) for key in metadata} == metadata
    graph = onnx.load(str(path)).graph
    (given,) = graph.input
    dims = [dim.dim_param or dim.dim_value for dim in given.type.tensor_type.shape.dim]
    assert given.name == "pixel_values" and dims == ["batch", 3, spec.image_size, spec.image_size]
    assert given.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [out.name for out in graph.output] == ["embeddings"]
    assert onnx.load(str(path)).opset_import[0].version == OPSET


def test_onnx_text_tower_matches_torch_tiny(tiny_b, tmp_path):
    spec = tiny_b.spec
    path = export_text_tower(tiny_b.model, tmp_path / "text.onnx", spec.context_length, {"m": "t"})
    texts = ["a photo of a red circle", "", " ".join(["a very long caption"] * 20)]
    ids = tiny_b.tokenizer(texts + ["a cat"] * 4)
    assert ids.dtype == torch.int64 and ids.shape == (7, spec.context_length)
    assert ids[2, -1] == ids[2].max()  # the long text was truncated, ending in the eot token
    for batch in (ids[:1], ids):
        assert onnx_parity(path, tiny_b.model.encode_text, batch) <= 1e-4
    (given,) = onnx.load(str(path)).graph.input
    assert given.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert onnx_metadata(path)["m"] == "t"
    with pytest.raises(InvalidInputError, match="context_length"):
        export_text_tower(tiny_b.model, tmp_path / "bad.onnx", spec.context_length + 1, {})
    with pytest.raises(InvalidInputError, match="strings"):
        export_text_tower(tiny_b.model, tmp_path / "bad.onnx", spec.context_length, {"n": 3})
    assert not (tmp_path / "bad.onnx").exists()


# --------------------------------------------------------------------------- ViT-B-32


def test_vit_b32_pruned_profile_bakes_and_exports(vit_b32, tmp_path):
    vit = _with_random_biases(vit_b32)
    spec = vit.spec
    ablation = Ablation.of(VIT_PROFILE, "mean", _means(spec))
    soft, hard, baked = _soft_and_baked(vit, ablation, _images(spec, 2))
    assert (soft - hard).abs().max().item() <= 1e-5
    n_params = _n_params(baked.visual)
    assert n_params == predicted_parameter_count(spec, VIT_PROFILE)
    assert n_params == _n_params(vit.model.visual) - 12 * (4 * spec.width * 64 + 3 * 64)
    metadata = {"profile": "vit-b32-last", "removed_heads": ",".join(map(str, VIT_PROFILE))}
    path = export_image_tower(baked, tmp_path / "image.onnx", spec.image_size, metadata)
    for batch in (1, 7):
        error = onnx_parity(path, baked.encode_image, _images(spec, batch, seed=batch))
        assert error <= 1e-4
    assert onnx_metadata(path)["profile"] == "vit-b32-last"
    # Weights are inside the file: float32 parameters plus the three [T, D] mean constants.
    expected_bytes = 4 * (n_params + 3 * spec.n_tokens * spec.width)
    assert abs(path.stat().st_size - expected_bytes) / expected_bytes < 0.01
