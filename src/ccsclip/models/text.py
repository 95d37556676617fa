"""Exact text encoding on the tokens up to the longest end-of-text token of a batch.

CLIP's text tower is causal and pools at the end-of-text (EOT) token: the output at position p
depends only on tokens 0..p. So running the tower on the first L = (last pooled position + 1)
tokens of a batch, with the positional embedding and the causal mask sliced to L, returns the
same embeddings as the full context (77 for CLIP) up to float rounding, at a fraction of the
cost: descriptions and prompts are about a dozen tokens.

That holds only for towers built that way: open_clip's `CLIP` with a causal mask, blocks that
mix positions only through that mask, and pooling at the EOT / argmax / first token. For any
other tower (bidirectional or padding masks, 'last' or mean pooling, `CustomTextCLIP` with an HF
or CoCa text tower) `encode_text_trimmed` runs the full context and logs why, once per model.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import (
    CustomResidualAttentionBlock,
    ResidualAttentionBlock,
    text_global_pool,
)

log = logging.getLogger(__name__)

_EXACT_POOLS = ("argmax", "eos", "first")
_reasons: weakref.WeakKeyDictionary[torch.nn.Module, str | None] = weakref.WeakKeyDictionary()
_warned: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def _reason(model: torch.nn.Module) -> str | None:
    if type(model) is not CLIP:
        return f"its text tower belongs to a {type(model).__name__}, not open_clip's CLIP"
    pool = getattr(model, "text_pool_type", None)
    if pool not in _EXACT_POOLS:
        return f"it pools text with {pool!r}, not at the end-of-text token"
    if pool == "eos" and getattr(model, "text_eos_id", None) is None:
        return "it pools at 'eos' without an eos token id"
    mask = getattr(model, "attn_mask", None)
    context = model.positional_embedding.shape[0]
    if mask is None:
        return "its text attention is bidirectional (no causal mask)"
    causal = torch.full((context, context), float("-inf")).triu_(1)
    if mask.shape != causal.shape or not torch.equal(mask.detach().cpu().float(), causal):
        return "its text attention mask is not the causal mask"
    for index, block in enumerate(model.transformer.resblocks):
        if type(block) not in (ResidualAttentionBlock, CustomResidualAttentionBlock):
            return f"text block {index} is a {type(block).__name__}"
        if hasattr(block, "ln_1_kv"):
            return f"text block {index} is a cross-attention block"
    return None


def trim_unsupported(model: torch.nn.Module) -> str | None:
    """Why trimming would not be exact for this model's text tower; None when it is exact."""
    if model not in _reasons:
        _reasons[model] = _reason(model)
    return _reasons[model]


def pooled_positions(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """[B]: the position each row's embedding is pooled at (the EOT token for CLIP)."""
    pool = model.text_pool_type
    if pool == "argmax":
        return tokens.argmax(dim=-1)
    if pool == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)


def _full(model: torch.nn.Module, tokens: torch.Tensor, normalize: bool) -> torch.Tensor:
    if model not in _warned:
        _warned.add(model)
        log.warning(
            "text encoding runs the full context of %d tokens: trimming it would not be exact "
            "because %s",
            tokens.shape[-1],
            trim_unsupported(model),
        )
    return model.encode_text(tokens, normalize=normalize)


def encode_text_trimmed(
    model: torch.nn.Module, tokens: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """`model.encode_text(tokens)` computed on tokens[:, :L], L = last pooled position + 1.

    Same result as the full context up to float rounding; falls back to it (logged once per
    model) where trimming would not be exact. Works with or without autograd.
    """
    if trim_unsupported(model) is not None:
        return _full(model, tokens, normalize)
    if tokens.shape[0] == 0:
        return model.encode_text(tokens, normalize=normalize)
    length = int(pooled_positions(model, tokens).max()) + 1
    return encode_text_prefix(model, tokens[:, :length], normalize)


def encode_text_prefix(
    model: torch.nn.Module, tokens: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """The text tower on `tokens` [B, L] at their own length L <= context (no trimming here).

    Equal to the full context when every row's pooled position is < L and the tower passes
    `trim_unsupported`; the callers (and the ONNX text tower with a dynamic length) ensure both.
    """
    # Positions 0..L-1 as a tensor computed from the input (not a Python int): gathers with it
    # stay dynamic when the ONNX exporter traces this, where a slice [:L] would become a constant.
    index = torch.ones_like(tokens[0]).cumsum(0) - 1
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast)
    x = x + model.positional_embedding.index_select(0, index).to(cast)
    mask = model.attn_mask.index_select(0, index).index_select(1, index)
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=model.text_eos_id)
    if model.text_projection is not None:
        if isinstance(model.text_projection, torch.nn.Linear):
            x = model.text_projection(x)
        else:
            x = x @ model.text_projection
    return F.normalize(x, dim=-1) if normalize else x


@torch.inference_mode()
def encode_texts_batched(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    texts: Sequence[str],
    batch_size: int = 256,
    on_batch: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Unit-norm float32 embeddings [N, E] of many texts, in the input order.

    Texts are tokenised at once and batched by length (the pooled position), so each batch is
    trimmed to about its own texts' length instead of the longest text overall.
    """
    device = next(model.parameters()).device
    tokens = tokenizer(list(texts))
    if not texts:
        return F.normalize(model.encode_text(tokens.to(device)).float().cpu(), dim=-1)
    exact = trim_unsupported(model) is None
    order = (
        torch.argsort(pooled_positions(model, tokens), stable=True)
        if exact
        else torch.arange(len(texts))
    )
    rows = torch.empty(0)
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        batch = encode_text_trimmed(model, tokens[index].to(device)).float().cpu()
        if rows.numel() == 0:
            rows = torch.empty(len(texts), batch.shape[-1])
        rows[index] = F.normalize(batch, dim=-1)
        if on_batch is not None:
            on_batch()
    return rows
