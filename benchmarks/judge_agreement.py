"""Agreement of the `embedding` judge with the exact `tags` judge on the tagged general pool.

Draws synthetic "heads" of five descriptions from the pool (k of them from one concept, the rest
from others, k = 1..5, as real heads mix), judges each with both judges and prints: label
agreement, per-description consistency agreement, CCS agreement and mean |CCS difference|, plus
the per-description concept accuracy of the embedding judge (its nearest concept vs the tag).

    python benchmarks/judge_agreement.py [--encoder minilm|clip] [--model ccsclip-organism]
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from ccsclip.profiles.rank.judges.base import Description
from ccsclip.profiles.rank.judges.embedding import EmbeddingJudge, load_vocabulary, minilm_encoder
from ccsclip.profiles.rank.judges.tags import TagsJudge
from ccsclip.profiles.rank.pool import load_pool


def synthetic_heads(pool, count: int, seed: int) -> list[list[Description]]:
    rng = random.Random(seed)
    by_tag: dict[str, list[int]] = {}
    for index, tags in enumerate(pool.tags):
        if len(tags) == 1:
            by_tag.setdefault(next(iter(tags)), []).append(index)
    concepts = sorted(by_tag)
    heads = []
    for i in range(count):
        main = rng.choice(concepts)
        k = 1 + i % 5
        picks = rng.sample(by_tag[main], k)
        while len(picks) < 5:
            other = rng.choice([c for c in concepts if c != main])
            picks.append(rng.choice(by_tag[other]))
        rng.shuffle(picks)
        heads.append([Description(pool.descriptions[j], pool.tags[j]) for j in picks])
    return heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm", choices=["minilm", "clip"])
    parser.add_argument("--model", default="ccsclip-organism")
    parser.add_argument("--pretrained", default="embedded")
    parser.add_argument("--heads", type=int, default=500)
    args = parser.parse_args()
    pool = load_pool("general")
    if args.encoder == "minilm":
        encoder, name = minilm_encoder(), "all-MiniLM-L6-v2"
    else:
        from ccsclip.models import load_model
        from ccsclip.profiles.rank.embed import clip_text_encoder

        encoder, name = clip_text_encoder(load_model(args.model, args.pretrained)), args.model
    vocabulary = {c: d for c, d in load_vocabulary().items() if c in set(pool.concepts)}
    embedding, tags = EmbeddingJudge(encoder, vocabulary, name), TagsJudge()
    heads = synthetic_heads(pool, args.heads, seed=0)
    a, b = embedding.judge_many(heads), tags.judge_many(heads)
    label = np.mean([x.concept == y.concept for x, y in zip(a, b, strict=True)])
    flags = np.mean(
        [
            f == g
            for x, y in zip(a, b, strict=True)
            for f, g in zip(x.consistent, y.consistent, strict=True)
        ]
    )
    ccs_equal = np.mean([x.ccs == y.ccs for x, y in zip(a, b, strict=True)])
    ccs_diff = np.mean([abs(x.ccs - y.ccs) for x, y in zip(a, b, strict=True)])
    singles = [(d, t) for d, t in zip(pool.descriptions, pool.tags, strict=True) if len(t) == 1]
    sims = encoder([d for d, _ in singles]) @ embedding.concept_embeddings.T
    nearest = [embedding.concepts[i] for i in sims.argmax(1)]
    accuracy = np.mean([n in t for n, (_, t) in zip(nearest, singles, strict=True)])
    print(f"encoder {name}: {args.heads} synthetic heads, {len(vocabulary)} concepts")
    print(f"label agreement          {label:.3f}")
    print(f"consistency agreement    {flags:.3f}")
    print(f"CCS exact agreement      {ccs_equal:.3f}")
    print(f"mean |CCS difference|    {ccs_diff:.2f}")
    print(f"description accuracy     {accuracy:.3f} (nearest concept = tag, {len(singles)} lines)")


if __name__ == "__main__":
    main()
