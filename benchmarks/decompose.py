"""Decomposition + statistics pass against a plain forward, and memory against image count.

Prints, for ViT-B-32 (random init) at batch 16: images/s of a plain forward, images/s of the
decomposition + streaming-statistics pass, their ratio (goal <= 1.5x overhead), and the peak RSS
of the statistics pass over 256 vs 4,096 images (goal: flat). Timings are interleaved in one run:
this machine is noisy, only the ratios are meaningful.

    python benchmarks/decompose.py [--model ViT-B-32] [--batch 16] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def throughput(model_name: str, batch: int, repeats: int, batches: int) -> dict:
    from ccsclip.heads import HeadMeans, HeadMoments, accumulate
    from ccsclip.models import load_model

    loaded = load_model(model_name)
    spec = loaded.spec
    layers = tuple(range(spec.layers - 4, spec.layers))
    images = [torch.randn(batch, 3, spec.image_size, spec.image_size) for _ in range(batches)]

    def plain() -> None:
        with torch.inference_mode():
            for x in images:
                loaded.model.encode_image(x)

    def stats() -> None:
        moments = HeadMoments.zeros(layers, spec.heads, spec.embed_dim)
        means = HeadMeans.zeros(spec.layers, spec.n_tokens, spec.heads, spec.head_width)
        accumulate(loaded.model, images, layers, moments, means)

    plain()
    stats()  # warm-up both paths
    t_plain, t_stats = [], []
    for _ in range(repeats):  # interleaved, so drift hits both
        t_plain.append(_time(plain, 1))
        t_stats.append(_time(stats, 1))
    n = batch * batches
    return {"plain": n / min(t_plain), "stats": n / min(t_stats)}


def peak_rss_child(model_name: str, count: int, batch: int) -> float:
    """Peak RSS (MiB) of a fresh process that streams `count` images through the stats pass."""
    code = f"""
import resource, torch
from ccsclip.heads import HeadMeans, HeadMoments, accumulate
from ccsclip.models import load_model
loaded = load_model({model_name!r}); spec = loaded.spec
layers = tuple(range(spec.layers - 4, spec.layers))
moments = HeadMoments.zeros(layers, spec.heads, spec.embed_dim)
means = HeadMeans.zeros(spec.layers, spec.n_tokens, spec.heads, spec.head_width)
def batches():
    for _ in range({count} // {batch}):
        yield torch.randn({batch}, 3, spec.image_size, spec.image_size)
accumulate(loaded.model, batches(), layers, moments, means)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and 1,024 images max")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    rates = throughput(args.model, args.batch, repeats, args.batches)
    small, large = 256, 1024 if args.quick else 4096
    rss_small = peak_rss_child(args.model, small, args.batch)
    rss_large = peak_rss_child(args.model, large, args.batch)
    rows = {
        "model": args.model,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "plain_forward_images_per_s": round(rates["plain"], 1),
        "decompose_stats_images_per_s": round(rates["stats"], 1),
        "overhead_ratio": round(rates["plain"] / rates["stats"], 2),
        f"peak_rss_mib_{small}": round(rss_small),
        f"peak_rss_mib_{large}": round(rss_large),
        "rss_ratio": round(rss_large / rss_small, 3),
    }
    if args.json:
        print(json.dumps(rows))
        return
    width = max(len(k) for k in rows)
    print(f"{'metric':<{width}}  value  (goals: overhead_ratio <= 1.5, rss_ratio ~ 1.0)")
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
