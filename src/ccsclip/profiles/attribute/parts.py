"""Per-component parts of each image embedding: heads, MLPs, embeddings, constant, remainder.

With the final LayerNorm's scale and the embedding's norm frozen per image, the unit-norm image
embedding is a sum of direct terms (`ccsclip.heads.decompose`): every head's output at the class
token, every MLP's, the class token's embedding, the biases. Each component c is centred on a
mean m_c (for heads the ablation mean at the class token when `means` are given, else the mean
over the attributed images), scaled by the image's own frozen factor s(x):

    part_c(x)   = term_c(x) - s(x) * G(mu_c)        (G: centre, x gamma, @ proj)
    constant(x) = biases(x) + sum_c s(x) * G(mu_c)  (varies only through s(x))
    remainder   = embedding - sum of all terms (float error; the decomposition is exact)

so the parts sum to the true embedding, and (to first order, scales frozen) mean-ablating c
removes exactly part_c. What a component does through later layers is in those layers' parts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ccsclip.headref import Head
from ccsclip.heads.attention import out_proj_blocks
from ccsclip.heads.decompose import decompose
from ccsclip.heads.resolve import resolve_heads

KINDS = ("head", "mlp", "embed", "constant", "remainder")


@dataclass
class Parts:
    """terms [N, C, E]: component c's part of image n's unit embedding; sums to `embedding`."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    layers: tuple[int | None, ...]
    terms: torch.Tensor
    embedding: torch.Tensor
    centring: dict[str, str]

    def index(self, name: str) -> int:
        return self.names.index(name)


def component_names(n_layers: int, n_heads: int) -> list[tuple[str, str, int | None]]:
    """(name, kind, layer) of every component, in the order of `Parts.terms`."""
    out: list[tuple[str, str, int | None]] = []
    for layer in range(n_layers):
        out += [(Head(layer, head).label, "head", layer) for head in range(n_heads)]
        out.append((f"L{layer}.mlp", "mlp", layer))
    out += [("embed", "embed", None), ("constant", "constant", None)]
    out.append(("remainder", "remainder", None))
    return out


def _post_map(visual: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """G(u) = (gamma * (u - mean u)) @ proj: the frozen-scale map without the per-image factor."""
    centred = u - u.mean(dim=-1, keepdim=True)
    return (visual.ln_post.weight * centred) @ visual.proj


@torch.inference_mode()
def _batch(visual: nn.Module, images: torch.Tensor, n_layers: int):
    """Raw terms [B, C-1, E] (constant holds only the biases), per-image factor s [B], truth."""
    captured: dict[str, torch.Tensor] = {}
    hook = visual.ln_post.register_forward_pre_hook(
        lambda _module, args: captured.setdefault("r", args[0])
    )
    try:
        dec = decompose(visual, images, range(n_layers))
    finally:
        hook.remove()
    residual = captured["r"]
    ln = visual.ln_post
    inv_sigma = torch.rsqrt(residual.var(dim=-1, unbiased=False) + ln.eps)
    scale = inv_sigma / (ln(residual) @ visual.proj).norm(dim=-1)
    columns = []
    for layer in range(n_layers):
        columns += list(dec.heads[:, layer].unbind(1))
        columns.append(dec.terms[f"L{layer}.mlp"])
    columns.append(dec.terms["embed"])
    biases = dec.terms["ln_post.bias"] + sum(
        dec.terms[f"L{lay}.attn.bias"] for lay in range(n_layers)
    )
    columns.append(biases)
    truth = dec.embedding  # the tower's own forward (ln_post, proj, normalise) in this dtype
    columns.append(truth - dec.total())
    return torch.stack(columns, dim=1), scale, truth


def compute_parts(
    model: nn.Module,
    images: torch.Tensor,
    means: torch.Tensor | None = None,
    batch_size: int = 128,
    dtype: torch.dtype = torch.float64,
) -> Parts:
    """Parts of every image [N, 3, S, S]; `means` [L, T, H, d] centre heads on ablation means.

    Runs on a copy of the image tower in `dtype` (float64: parts sum to the score to ~1e-12).
    """
    visual = copy.deepcopy(getattr(model, "visual", model)).to(dtype).eval()
    attns = resolve_heads(visual)
    blocks = visual.transformer.resblocks
    n_layers, n_heads = len(blocks), attns[0].num_heads
    specs = component_names(n_layers, n_heads)
    raw, scales, truths = [], [], []
    for start in range(0, images.shape[0], batch_size):
        terms, scale, truth = _batch(visual, images[start : start + batch_size].to(dtype), n_layers)
        raw.append(terms)
        scales.append(scale)
        truths.append(truth)
    terms, scale = torch.cat(raw), torch.cat(scales)
    constant = len(specs) - 2
    # centring constants G(mu_c): data means for every component, ablation means for heads
    centres = (terms[:, :constant] / scale[:, None, None]).mean(dim=0)  # [C', E]
    head_centring = "mean over the attributed images"
    if means is not None:
        with torch.inference_mode():
            for layer in range(n_layers):
                mu = _head_means(attns[layer], blocks[layer], means.to(dtype)[layer, 0])  # [H, D]
                first = layer * (n_heads + 1)
                centres[first : first + n_heads] = _post_map(visual, mu)
        head_centring = "ablation means at the class token (means.safetensors)"
    shift = scale[:, None, None] * centres.unsqueeze(0)
    terms = terms.clone()
    terms[:, :constant] -= shift
    terms[:, constant] += shift.sum(dim=1)
    return Parts(
        names=tuple(s[0] for s in specs),
        kinds=tuple(s[1] for s in specs),
        layers=tuple(s[2] for s in specs),
        terms=terms,
        embedding=torch.cat(truths),
        centring={
            "heads": head_centring,
            "mlps_and_embed": "mean over the attributed images",
            "scale": "ln_post's 1/sigma and the embedding's 1/norm, frozen per image",
        },
    )


def _head_means(attn, block, mean_z: torch.Tensor) -> torch.Tensor:
    """Each head's ablation mean at the class token in residual space [H, D] (after layer scale)."""
    return block.ls_1(torch.einsum("hd,hDd->hD", mean_z, out_proj_blocks(attn)))
