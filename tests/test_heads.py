"""Head-resolved attention, soft ablation and the exact decomposition, on real architectures."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ccsclip.heads import Ablation, ablated, decompose, hook_points, hook_z_name, resolve_heads
from ccsclip.models import load_model


def _images(spec, count=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, spec.image_size, spec.image_size, generator=generator)


@pytest.mark.parametrize("fixture", ["tiny", "vit_b32", "vit_b16"])
def test_swap_keeps_outputs_and_parameters(request, fixture):
    loaded = request.getfixturevalue(fixture)
    stock = load_model(loaded.spec.name)  # a fresh, never-swapped copy with the same seed
    images = _images(loaded.spec)
    with torch.no_grad():
        expected = stock.model.encode_image(images, normalize=True)
        resolve_heads(loaded.model)
        got = loaded.model.encode_image(images, normalize=True)
    assert (got - expected).abs().max().item() <= 1e-5
    assert list(loaded.model.state_dict()) == list(stock.model.state_dict())


@pytest.mark.parametrize("fixture", ["tiny", "vit_b32", "vit_b16"])
def test_terms_sum_to_embedding_float32(request, fixture):
    loaded = request.getfixturevalue(fixture)
    spec = loaded.spec
    images = _images(spec, count=2)
    with torch.no_grad():
        decomposition = decompose(loaded.model, images, range(max(0, spec.layers - 4), spec.layers))
        reference = loaded.model.encode_image(images, normalize=True)
    total = decomposition.total()
    assert ((total - reference).norm(dim=-1) / reference.norm(dim=-1)).max() <= 1e-5
    assert decomposition.heads.shape == (2, min(4, spec.layers), spec.heads, spec.embed_dim)


@pytest.mark.parametrize("name", ["ccsclip-tiny", "ViT-B-32"])
def test_terms_sum_to_embedding_float64(name):
    loaded = load_model(name)
    model = loaded.model.double()
    images = _images(loaded.spec, count=2).double()
    with torch.no_grad():
        decomposition = decompose(model, images, range(loaded.spec.layers))
        reference = model.encode_image(images, normalize=True)
    relative = (decomposition.total() - reference).norm(dim=-1) / reference.norm(dim=-1)
    assert relative.max().item() <= 1e-10
    expected_terms = {"embed", "ln_post.bias"} | {
        f"L{layer}.{kind}" for layer in range(loaded.spec.layers) for kind in ("mlp", "attn.bias")
    }
    assert set(decomposition.terms) == expected_terms


def test_unanalysed_layers_are_whole_terms(tiny):
    with torch.no_grad():
        decomposition = decompose(tiny.model, _images(tiny.spec), [2])
    assert "L0.attn" in decomposition.terms and "L2.attn" not in decomposition.terms
    assert decomposition.layers == (2,)


@pytest.mark.parametrize("fixture", ["tiny", "vit_b32"])
def test_zero_ablation_equals_zeroed_out_proj_columns(request, fixture):
    loaded = request.getfixturevalue(fixture)
    spec = loaded.spec
    heads = [(spec.layers - 1, 0), (spec.layers - 1, spec.heads - 1), (0, 1)]
    reference = copy.deepcopy(load_model(spec.name).model)
    d = spec.head_width
    with torch.no_grad():
        for layer, head in heads:
            reference.visual.transformer.resblocks[layer].attn.out_proj.weight[
                :, head * d : (head + 1) * d
            ] = 0
        images = _images(spec)
        expected = reference.encode_image(images, normalize=True)
        with ablated(loaded.model, Ablation.of(heads, "zero")):
            got = loaded.model.encode_image(images, normalize=True)
        plain = loaded.model.encode_image(images, normalize=True)
    assert (got - expected).abs().max().item() <= 1e-5
    assert (plain - expected).abs().max().item() > 1e-4  # the ablation did change something


def _manual_forward(model, images, replace):
    """Independent reference: the ViT written out by hand, with z[l][:, :, h] replaced."""
    visual = model.visual
    x = visual._embeds(images)
    for layer, block in enumerate(visual.transformer.resblocks):
        attn = block.attn
        heads, width = attn.num_heads, attn.embed_dim
        d = width // heads
        h = block.ln_1(x)
        q, k, v = (h @ attn.in_proj_weight.T + attn.in_proj_bias).split(width, dim=-1)
        q, k, v = (t.view(*t.shape[:2], heads, d).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
        z = (weights @ v).transpose(1, 2).clone()  # [B, T, H, d]
        for head, value in replace.get(layer, {}).items():
            z[:, :, head] = value
        x = x + block.ls_1(z.flatten(-2) @ attn.out_proj.weight.T + attn.out_proj.bias)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return F.normalize(visual.ln_post(x[:, 0]) @ visual.proj, dim=-1)


def test_mean_ablation_replaces_z_by_means_everywhere(tiny):
    spec = tiny.spec
    generator = torch.Generator().manual_seed(3)
    means = torch.randn(
        spec.layers, spec.n_tokens, spec.heads, spec.head_width, generator=generator
    )
    heads = [(1, 2), (2, 0), (2, 3)]
    images = _images(spec)
    seen = {}
    point = hook_points(tiny.model)[hook_z_name(2)] if resolve_heads(tiny.model) else None
    handle = point.register_forward_hook(lambda _m, _i, z: seen.update(z=z.clone()))
    try:
        with torch.no_grad(), ablated(tiny.model, Ablation.of(heads, "mean", means)):
            got = tiny.model.encode_image(images, normalize=True)
    finally:
        handle.remove()
    z = seen["z"]
    for head in (0, 3):
        assert torch.equal(z[:, :, head], means[2, :, head].expand_as(z[:, :, head]))
    assert not torch.allclose(z[:, :, 1], means[2, :, 1].expand_as(z[:, :, 1]))
    replace = {layer: {} for layer, _ in heads}
    for layer, head in heads:
        replace[layer][head] = means[layer, :, head]
    with torch.no_grad():
        expected = _manual_forward(tiny.model, images, replace)
        unablated = _manual_forward(tiny.model, images, {})
        plain = tiny.model.encode_image(images, normalize=True)
    assert (got - expected).abs().max().item() <= 1e-5
    assert (plain - unablated).abs().max().item() <= 1e-5
    assert (got - plain).abs().max().item() > 1e-4


def test_ablation_is_cleared_and_validated(tiny):
    from ccsclip.errors import InvalidInputError

    images = _images(tiny.spec)
    with torch.no_grad():
        before = tiny.model.encode_image(images)
        with ablated(tiny.model, Ablation.of([(0, 0)], "zero")):
            pass
        after = tiny.model.encode_image(images)
    assert torch.equal(before, after)
    with pytest.raises(InvalidInputError, match="L3H0 does not exist"):
        with ablated(tiny.model, Ablation.of([(3, 0)], "zero")):
            pass
    with pytest.raises(InvalidInputError, match="needs ablation means"):
        with ablated(tiny.model, Ablation.of([(0, 0)], "mean")):
            pass


def test_all_heads_of_a_layer_zeroed_leaves_only_bias(tiny):
    spec = tiny.spec
    heads = [(1, h) for h in range(spec.heads)]
    captured = {}
    block = tiny.model.visual.transformer.resblocks[1]
    handle = block.attn.register_forward_hook(lambda _m, _i, out: captured.update(a=out[0]))
    try:
        with torch.no_grad(), ablated(tiny.model, Ablation.of(heads, "zero")):
            tiny.model.encode_image(_images(spec))
    finally:
        handle.remove()
    bias = block.attn.out_proj.bias
    assert torch.allclose(captured["a"], bias.expand_as(captured["a"]))


def test_residual_walk_is_the_forward_and_names_its_hook_points(tiny):
    """The one walk (heads/walk.py) reproduces the tower; its named points are what flows."""
    from ccsclip.heads import run_with_cache

    model, spec = tiny.model, tiny.spec
    images = _images(spec, count=2, seed=3)
    seen = {}
    handle = resolve_heads(model)[1].hook_z.register_forward_hook(
        lambda _m, _i, z: seen.setdefault("z", z)
    )
    try:
        with torch.no_grad():
            final, cache = run_with_cache(model, images)
            reference = model.encode_image(images, normalize=True)
    finally:
        handle.remove()
    visual = model.visual
    with torch.no_grad():
        embedding = F.normalize(visual.ln_post(final[:, 0]) @ visual.proj, dim=-1)
    assert (embedding - reference).abs().max().item() <= 1e-5
    assert torch.equal(cache["blocks.1.attn.hook_z"], seen["z"])  # hook_z fires inside the walk
    assert torch.equal(cache["resid_final"], final)
    last = spec.layers - 1
    assert torch.allclose(cache[f"blocks.{last}.hook_resid_post"], final) and torch.allclose(
        cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"],
        cache["blocks.0.hook_resid_mid"],
    )
    _, only = run_with_cache(model, images, names=["blocks.0.hook_mlp_out"])
    assert list(only) == ["blocks.0.hook_mlp_out"]
