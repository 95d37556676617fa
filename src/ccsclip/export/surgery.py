"""Head surgery: bake an ablation into a physically smaller image tower (docs/design.md §6).

Soft pruning (`ccsclip.heads.ablated`) replaces head outputs in the forward pass but still computes
every head. Baking removes the ablated heads' parameters, so the exported model does less work.
For layer l with removed heads R and kept heads K (W_O[:, h] is head h's [D, d] column block):

    attn_out = sum_{h in K} z_h @ W_O[:, h]^T + sum_{h in R} z_h @ W_O[:, h]^T + b_O

In `zero` mode z_h = 0 for h in R, so the second sum vanishes: keep only K's rows of the q, k and v
blocks of W_in, b_in and K's columns of W_O; b_O stays. In `mean` mode z_h[t] = mu[l, t, h], a
constant per token that does not depend on the image, so the second sum is the constant

    G_l[t, :] = sum_{h in R} mu[l, t, h] @ W_O[:, h]^T            # [T, D]

added to the attention output (before layer scale). K's own outputs are unchanged: softmax
attention mixes tokens within a head, never across heads. If K is empty the whole attention
output is the constant b_O + G_l, so neither ln_1 nor any projection is computed.

The slicing helpers follow Hugging Face's `prune_linear_layer`: pure functions that return new
tensors and leave their inputs alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ccsclip.errors import InvalidInputError
from ccsclip.headref import Head
from ccsclip.heads.ablation import Ablation
from ccsclip.heads.resolve import image_blocks
from ccsclip.models.spec import ModelSpec

__all__ = [
    "ConstantAttention",
    "PrunedSelfAttention",
    "bake",
    "flops_per_image",
    "head_columns",
    "mean_constant",
    "predicted_parameter_count",
    "qkv_rows_to_keep",
    "slice_in_proj",
    "slice_out_proj_columns",
]


# --------------------------------------------------------------------------- slicing helpers


def _check_heads(heads: Sequence[int], n_heads: int) -> list[int]:
    heads = [int(h) for h in heads]
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise InvalidInputError(f"heads {bad} do not exist: valid heads are 0..{n_heads - 1}")
    if len(set(heads)) != len(heads):
        raise InvalidInputError(f"heads {heads} contain duplicates")
    return heads


def head_columns(heads_kept: Sequence[int], n_heads: int, head_dim: int) -> torch.Tensor:
    """Indices of the out_proj input columns (= concatenated z features) of `heads_kept`.

    The order of `heads_kept` is the order of the result; use the same list for the rows.
    """
    heads = _check_heads(heads_kept, n_heads)
    offsets = torch.arange(head_dim, dtype=torch.long)
    if not heads:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([h * head_dim + offsets for h in heads])


def qkv_rows_to_keep(heads_kept: Sequence[int], n_heads: int, head_dim: int) -> torch.Tensor:
    """Rows of the packed in_proj ([q; k; v], each H*d rows) that belong to `heads_kept`."""
    cols = head_columns(heads_kept, n_heads, head_dim)
    block = n_heads * head_dim
    return torch.cat([part * block + cols for part in range(3)])


def slice_in_proj(
    weight: torch.Tensor, bias: torch.Tensor | None, keep_rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """New (weight[keep_rows], bias[keep_rows]); the bias may be None."""
    keep_rows = keep_rows.to(weight.device)
    new_weight = weight.detach().index_select(0, keep_rows).clone()
    new_bias = None if bias is None else bias.detach().index_select(0, keep_rows).clone()
    return new_weight, new_bias


def slice_out_proj_columns(weight: torch.Tensor, keep_cols: torch.Tensor) -> torch.Tensor:
    """New weight[:, keep_cols]: the out_proj columns that read the kept heads' outputs."""
    return weight.detach().index_select(1, keep_cols.to(weight.device)).clone()


def mean_constant(
    means_layer: torch.Tensor, out_weight: torch.Tensor, removed: Sequence[int]
) -> torch.Tensor:
    """G[t, :] = sum_{h in removed} mu[t, h] @ W_O[:, h]^T, computed in float64; [T, D].

    `means_layer` is [T, H, d] (one layer of the ablation means), `out_weight` is W_O [D, H*d].
    """
    tokens, n_heads, head_dim = means_layer.shape
    removed = _check_heads(removed, n_heads)
    width = out_weight.shape[0]
    blocks = out_weight.detach().double().view(width, n_heads, head_dim)[:, removed]  # [D, R, d]
    mu = means_layer.detach().to(out_weight.device).double()[:, removed]  # [T, R, d]
    return torch.einsum("trd,erd->te", mu, blocks).to(out_weight.dtype)


# --------------------------------------------------------------------------- modules


def _to_batch_first(x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    return x if batch_first else x.transpose(0, 1)


class PrunedSelfAttention(nn.Module):
    """Self-attention over the kept heads only, plus an optional per-token constant.

    Parameter names match `nn.MultiheadAttention` (`in_proj_weight`, `in_proj_bias`, `out_proj`),
    so a baked state_dict reads like a stock one with fewer rows and columns. The call signature
    is the one open_clip's `ResidualAttentionBlock.attention` uses, returning (out, None).
    """

    def __init__(
        self,
        in_proj_weight: torch.Tensor,
        in_proj_bias: torch.Tensor | None,
        out_proj: nn.Linear,
        n_heads_kept: int,
        head_dim: int,
        constant: torch.Tensor | None = None,
        batch_first: bool = True,
        kept_heads: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if n_heads_kept < 1:
            raise InvalidInputError(
                "PrunedSelfAttention needs at least one head: use ConstantAttention"
            )
        rows = 3 * n_heads_kept * head_dim
        if in_proj_weight.shape[0] != rows or out_proj.in_features != n_heads_kept * head_dim:
            raise InvalidInputError(
                f"in_proj has {in_proj_weight.shape[0]} rows and out_proj {out_proj.in_features} "
                f"inputs; {n_heads_kept} heads of width {head_dim} need {rows} and "
                f"{n_heads_kept * head_dim}"
            )
        self.num_heads = n_heads_kept
        self.head_dim = head_dim
        self.embed_dim = out_proj.out_features
        self.batch_first = batch_first
        self.kept_heads = tuple(kept_heads) if kept_heads is not None else None
        self.in_proj_weight = nn.Parameter(in_proj_weight.detach().clone())
        self.in_proj_bias = (
            None if in_proj_bias is None else nn.Parameter(in_proj_bias.detach().clone())
        )
        self.out_proj = out_proj
        if constant is not None:
            self.register_buffer("constant", constant.detach().clone())
        else:
            self.constant = None

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        **_: object,
    ) -> tuple[torch.Tensor, None]:
        """Self-attention only (key and value, if given, must be the query)."""
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise InvalidInputError("PrunedSelfAttention supports self-attention only")
        x = _to_batch_first(query, self.batch_first)
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        out = self.out_proj(z.transpose(1, 2).flatten(-2))  # [B, T, D]
        if self.constant is not None:
            out = out + self.constant
        return _to_batch_first(out, self.batch_first), None


class ConstantAttention(nn.Module):
    """The attention of a layer whose heads are all removed: b_O + G_l, whatever the input."""

    def __init__(self, constant: torch.Tensor, batch_first: bool = True) -> None:
        super().__init__()
        if constant.dim() != 2:
            raise InvalidInputError(
                f"constant must be [T, D] or [1, D], got {tuple(constant.shape)}"
            )
        self.batch_first = batch_first
        self.register_buffer("constant", constant.detach().clone())

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        **_: object,
    ) -> tuple[torch.Tensor, None]:
        """Broadcast the [T, D] constant to the query's shape; nothing is computed."""
        constant = self.constant if self.batch_first else self.constant.unsqueeze(1)
        return constant.expand_as(query), None


# --------------------------------------------------------------------------- bake


def _attn_params(attn: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, nn.Linear, int]:
    weight = getattr(attn, "in_proj_weight", None)
    if weight is None or not hasattr(attn, "out_proj") or not hasattr(attn, "num_heads"):
        raise InvalidInputError(
            f"cannot bake a {type(attn).__name__}: expected nn.MultiheadAttention or "
            "HeadResolvedAttention with packed in_proj_weight"
        )
    return weight, attn.in_proj_bias, attn.out_proj, int(attn.num_heads)


def bake(model: nn.Module, ablation: Ablation) -> nn.Module:
    """A new model (deep copy) whose image tower no longer contains the ablated heads.

    The input model is never modified. Every image-tower layer gets a `PrunedSelfAttention`
    (all heads kept where none are removed) or, if all its heads go, a `ConstantAttention` and
    an identity `ln_1`. The result equals the soft-pruned forward up to float32 rounding.
    """
    if hasattr(model, "visual"):
        from ccsclip.models.checks import check_decomposable

        check_decomposable(model, type(model).__name__)
    blocks = image_blocks(model)
    weight, _, _, n_heads = _attn_params(blocks[0].attn)
    width = weight.shape[1]
    head_dim = width // n_heads
    ablation.check_for(model)

    baked = copy.deepcopy(model)
    removed_by_layer = ablation.by_layer()
    with torch.no_grad():
        for layer, block in enumerate(image_blocks(baked)):
            in_w, in_b, out_proj, _ = _attn_params(block.attn)
            batch_first = bool(getattr(block.attn, "batch_first", True))
            removed = sorted(removed_by_layer.get(layer, []))
            kept = [h for h in range(n_heads) if h not in removed]
            constant = None
            if ablation.mode == "mean" and removed:
                constant = mean_constant(ablation.means[layer], out_proj.weight, removed)
            if not kept:
                bias = out_proj.bias
                bias = torch.zeros(width) if bias is None else bias.detach()
                bias = bias.to(out_proj.weight).view(1, width)
                block.attn = ConstantAttention(
                    bias if constant is None else constant + bias, batch_first=batch_first
                )
                block.ln_1 = nn.Identity()
                continue
            new_w, new_b = slice_in_proj(in_w, in_b, qkv_rows_to_keep(kept, n_heads, head_dim))
            new_out = nn.Linear(
                len(kept) * head_dim,
                width,
                bias=out_proj.bias is not None,
                device=out_proj.weight.device,
                dtype=out_proj.weight.dtype,
            )
            cols = head_columns(kept, n_heads, head_dim)
            new_out.weight.copy_(slice_out_proj_columns(out_proj.weight, cols))
            if out_proj.bias is not None:
                new_out.bias.copy_(out_proj.bias)
            block.attn = PrunedSelfAttention(
                new_w, new_b, new_out, len(kept), head_dim, constant, batch_first, kept
            )
    return baked


# --------------------------------------------------------------------------- cost model


def _kept_per_layer(spec: ModelSpec, removed_heads: Iterable[Head]) -> list[int]:
    removed: dict[int, set[int]] = {}
    for layer, head in removed_heads:
        spec.check_head(int(layer), int(head))
        removed.setdefault(int(layer), set()).add(int(head))
    return [spec.heads - len(removed.get(layer, ())) for layer in range(spec.layers)]


def predicted_parameter_count(
    spec: ModelSpec,
    removed_heads: Iterable[Head],
    *,
    mlp_ratio: float = 4.0,
    layer_scale: bool = False,
) -> int:
    """Learnable parameters of the baked image tower (`model.visual.parameters()`).

    Counts conv1 (no bias), class and positional embeddings, ln_pre, per layer ln_1, the kept
    rows of in_proj (+ bias), the kept columns of out_proj (+ bias), optional layer scales, ln_2,
    the MLP, then ln_post and proj. A layer with no kept head has no ln_1 and no projections;
    its b_O lives in the constant. Mean-mode constants are buffers, not parameters: they add
    T*D numbers to the file per layer with removed heads but are not counted here.
    `mlp_ratio` and `layer_scale` are not in the spec: pass them for non-default configs.
    """
    width, d, tokens = spec.width, spec.head_width, spec.n_tokens
    mlp = int(width * mlp_ratio)
    total = width * 3 * spec.patch_size**2  # conv1
    total += width + tokens * width + 2 * width  # class emb, pos emb, ln_pre
    for kept in _kept_per_layer(spec, removed_heads):
        if kept:
            total += 2 * width  # ln_1
            total += 3 * kept * d * width + 3 * kept * d  # in_proj
            total += width * kept * d + width  # out_proj
        total += 2 * width  # ln_2
        total += width * mlp + mlp + mlp * width + width  # MLP
        total += 2 * width if layer_scale else 0  # ls_1, ls_2
    total += 2 * width + width * spec.embed_dim  # ln_post, proj
    return total


def layer_norm_flops(spec: ModelSpec, removed_heads: Iterable[Head]) -> int:
    """Multiply-adds charged to LayerNorms: 2 per element (normalise, then scale and shift)."""
    norms = 2 + sum(2 if kept else 1 for kept in _kept_per_layer(spec, removed_heads))
    return 2 * norms * spec.n_tokens * spec.width


def flops_per_image(
    spec: ModelSpec, removed_heads: Iterable[Head], *, mlp_ratio: float = 4.0
) -> int:
    """Multiply-adds of the (baked) image tower for one image.

    Counted: patch embedding ((T-1) * D * 3 * p^2); per kept head 3*T*D*d (q, k, v),
    2*T^2*d (scores and the weighted sum of values) and T*d*D (out_proj); the MLP (2*T*D*M);
    every LayerNorm actually run (ln_pre, ln_1 where a layer keeps heads, ln_2, ln_post on all T
    tokens as open_clip does) at 2*T*D; the final projection of the class token (D*E).
    Not counted: biases, residual adds, softmax, GELU, layer scale, the mean-mode constants.
    """
    removed_heads = list(removed_heads)
    width, d, tokens = spec.width, spec.head_width, spec.n_tokens
    mlp = int(width * mlp_ratio)
    total = (tokens - 1) * width * 3 * spec.patch_size**2
    for kept in _kept_per_layer(spec, removed_heads):
        total += kept * (3 * tokens * width * d + 2 * tokens**2 * d + tokens * d * width)
        total += 2 * tokens * width * mlp
    total += width * spec.embed_dim
    return total + layer_norm_flops(spec, removed_heads)
