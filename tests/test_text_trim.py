"""Trimmed-context text encoding equals the full context (float32), and falls back where it must."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F

from ccsclip.models.text import (
    encode_text_trimmed,
    encode_texts_batched,
    pooled_positions,
    trim_unsupported,
)

TOL = 2e-5  # float32 rounding of a 12-layer tower on unit-norm embeddings


def texts_of_all_lengths(context: int) -> list[str]:
    """'' up to exactly `context` tokens (EOT in the last slot) and beyond (truncated)."""
    words = ["a", "photo", "of", "the", "striped", "red", "circle", "dog", "on", "grass"]
    texts = ["", "dog", "a photo of a dog.", "A RED circle, on a green & striped background!"]
    texts += [" ".join(words[i % len(words)] for i in range(n)) for n in range(1, context + 6, 3)]
    texts += ["a " * (context - 2), "a " * (context - 3), "x " * (context * 2)]
    return texts


def _check_model(loaded, texts):
    model, tokenizer = loaded.model, loaded.tokenizer
    context = model.context_length
    tokens = tokenizer(texts)
    positions = pooled_positions(model, tokens)
    assert int(positions.max()) == context - 1  # the longest allowed is in there
    assert int(positions.min()) == 1  # and the empty text
    with torch.inference_mode():
        full = model.encode_text(tokens, normalize=True)
        # every text alone (trimmed to its own length) and the whole mixed batch
        alone = torch.cat(
            [encode_text_trimmed(model, tokens[i : i + 1], True) for i in range(len(texts))]
        )
        mixed = encode_text_trimmed(model, tokens, normalize=True)
        short = encode_text_trimmed(model, tokens[positions < 8], normalize=True)
    assert torch.allclose(alone, full, atol=TOL, rtol=0), (alone - full).abs().max()
    assert torch.allclose(mixed, full, atol=TOL, rtol=0), (mixed - full).abs().max()
    assert torch.allclose(short, full[positions < 8], atol=TOL, rtol=0)
    batched = encode_texts_batched(model, tokenizer, texts, batch_size=5)
    assert torch.allclose(batched, F.normalize(full.float(), dim=-1), atol=TOL, rtol=0)
    return (mixed - full).abs().max().item()


def test_trimmed_equals_full_context_vit_b32(vit_b32):
    assert trim_unsupported(vit_b32.model) is None
    texts = texts_of_all_lengths(vit_b32.model.context_length)
    assert vit_b32.tokenizer(texts)[-3, -1] == vit_b32.tokenizer(["a"])[0].max()  # EOT last
    _check_model(vit_b32, texts)


def test_trimmed_equals_full_context_organism():
    from ccsclip.models import load_model

    organism = load_model("ccsclip-organism", pretrained="embedded")
    assert trim_unsupported(organism.model) is None
    _check_model(organism, texts_of_all_lengths(organism.model.context_length))


def test_trimmed_really_trims(tiny):
    """The short batch runs on its own length: the positional embedding is only read that far."""
    model = copy.deepcopy(tiny.model)
    tokens = tiny.tokenizer(["a dog", "a cat"])
    length = int(tokens.argmax(-1).max()) + 1
    with torch.no_grad():
        model.positional_embedding[length:] = float("nan")
        out = encode_text_trimmed(model, tokens)
        assert torch.isfinite(out).all()
        assert torch.isnan(model.encode_text(tokens)).all()


def test_gradients_flow(tiny):
    model = copy.deepcopy(tiny.model)
    tokens = tiny.tokenizer(["a dog", "a red striped cat"])
    encode_text_trimmed(model, tokens).sum().backward()
    assert model.token_embedding.weight.grad is not None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: setattr(m, "text_pool_type", "last"), "pools text with 'last'"),
        (lambda m: setattr(m, "attn_mask", None), "bidirectional"),
        (lambda m: setattr(m, "attn_mask", torch.zeros_like(m.attn_mask)), "not the causal"),
    ],
)
def test_falls_back_to_full_context_and_says_so(tiny, caplog, change, reason):
    model = copy.deepcopy(tiny.model)
    change(model)
    assert reason in trim_unsupported(model)
    tokens = tiny.tokenizer(["a dog", "a red striped cat on grass"])
    with caplog.at_level(logging.WARNING, logger="ccsclip.models.text"), torch.inference_mode():
        got = encode_text_trimmed(model, tokens)
        again = encode_text_trimmed(model, tokens)
        expected = model.encode_text(tokens)
    assert torch.equal(got, expected) and torch.equal(again, expected)
    warnings = [r for r in caplog.records if "full context" in r.getMessage()]
    assert len(warnings) == 1 and reason in warnings[0].getMessage()  # once per model
