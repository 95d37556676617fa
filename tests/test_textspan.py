"""TextSpan from moments equals TextSpan's per-image algorithm, on random data and a real model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccsclip.errors import InvalidInputError
from ccsclip.heads import decompose
from ccsclip.profiles.rank.textspan import textspan_from_moments


def per_image_textspan(data: np.ndarray, texts: np.ndarray, m: int, rank: int) -> list[int]:
    """The straightforward per-image algorithm (TextSpan's): project texts onto the top-r right
    singular vectors of the data, then m times pick the text with the largest std of projections,
    remove its direction from the data and orthogonalise the remaining texts against it."""
    _, _, vh = np.linalg.svd(data, full_matrices=False)
    basis = vh[:rank]
    texts = texts @ basis.T @ basis
    data = data - data.mean(0, keepdims=True)
    picks = []
    for _ in range(m):
        best = int(np.argmax((data @ texts.T).std(0)))
        picks.append(best)
        t = texts[best]
        norm2 = t @ t
        data = data - np.outer(data @ t / norm2, t)
        texts = texts - np.outer(texts @ t / norm2, t)
    return picks


def _moments(data: np.ndarray):
    d = torch.from_numpy(data)
    return d.shape[0], d.sum(0), d.T @ d


@pytest.mark.parametrize(("seed", "rank"), [(0, 80), (1, 10), (2, 5)])
def test_moments_equal_per_image_on_random_data(seed, rank):
    rng = np.random.default_rng(seed)
    n, e, m = 400, 48, 250
    data = rng.normal(size=(n, e)) @ rng.normal(size=(e, e)) * 0.1 + rng.normal(size=e)
    texts = rng.normal(size=(m, e))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    picks = textspan_from_moments(*_moments(data), torch.from_numpy(texts), m=5, rank=rank)
    assert [p.index for p in picks] == per_image_textspan(data, texts, 5, rank)
    shares = [p.share for p in picks]
    assert all(0 < s <= 1 for s in shares) and sum(shares) <= 1 + 1e-9


def test_moments_equal_per_image_on_a_real_model(tiny):
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(96, 3, 32, 32, generator=generator)
    with torch.no_grad():
        heads = decompose(tiny.model, images, [2]).heads[:, 0].double().numpy()  # [N, H, E]
        tokens = tiny.tokenizer([f"a photo of thing number {i}" for i in range(60)])
        texts = torch.nn.functional.normalize(tiny.model.encode_text(tokens), dim=-1).double()
    for head in range(tiny.spec.heads):
        data = heads[:, head]
        picks = textspan_from_moments(*_moments(data), texts, m=5, rank=80)
        assert [p.index for p in picks] == per_image_textspan(data, texts.numpy(), 5, 80)


def test_rank_below_m_stops_when_the_span_is_used_up():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(200, 16))
    texts = rng.normal(size=(40, 16))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    picks = textspan_from_moments(*_moments(data), torch.from_numpy(texts), m=5, rank=3)
    assert [p.index for p in picks] == per_image_textspan(data, texts, 3, 3)


def test_wrong_dimension_and_bad_m_are_refused():
    data = np.random.default_rng(0).normal(size=(10, 8))
    with pytest.raises(InvalidInputError, match="same model"):
        textspan_from_moments(*_moments(data), torch.randn(5, 9), m=2)
    with pytest.raises(InvalidInputError, match="m=6"):
        textspan_from_moments(*_moments(data), torch.randn(5, 8), m=6)


def test_batched_spaces_and_rotated_heads_equal_the_direct_computation():
    """head_spaces over several heads at once = one at a time; a head rotated by q (the null) =
    TextSpan of the rotated moments q s, q S q^T, computed without their eigendecomposition."""
    from ccsclip.profiles.rank.ccs import _random_rotation
    from ccsclip.profiles.rank.textspan import head_spaces, span_in_space

    rng = np.random.default_rng(7)
    e, heads = 32, 3
    data = [rng.normal(size=(300, e)) @ rng.normal(size=(e, e)) * 0.2 for _ in range(heads)]
    moments = [_moments(d) for d in data]
    texts = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(200, e))), dim=-1)
    n = moments[0][0]
    spaces = head_spaces(
        n, torch.stack([m[1] for m in moments]), torch.stack([m[2] for m in moments]), rank=20
    )
    generator = torch.Generator().manual_seed(0)
    for (_, s, S), space in zip(moments, spaces, strict=True):
        direct = textspan_from_moments(n, s, S, texts, m=5, rank=20)
        batched = span_in_space(space, texts, m=5)
        assert [p.index for p in batched] == [p.index for p in direct]
        assert [p.std for p in batched] == pytest.approx([p.std for p in direct], rel=1e-9)
        for _ in range(3):
            q = _random_rotation(e, generator)
            rotated = textspan_from_moments(n, q @ s, q @ S @ q.T, texts, m=5, rank=20)
            fast = span_in_space(space, texts, m=5, rotation=q)
            assert [p.index for p in fast] == [p.index for p in rotated]
            assert [p.share for p in fast] == pytest.approx([p.share for p in rotated], rel=1e-7)
