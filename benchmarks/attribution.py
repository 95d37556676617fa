"""Cost of attributing every component against one true ablation per component.

Attribution (float64 decomposition of every image, gaps of every component, bootstrap) runs
once; a true ablation is a forward pass with one head mean-ablated over the same images plus its
gaps. Both are timed side by side in one process on the same images; the goal is that the whole
attribution costs less than five true ablations.

    python benchmarks/attribution.py --probe runs/demo/world/bias-shape-colour \
        --means runs/demo/rank/stats/means.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from ccsclip.heads.ablation import Ablation, ablated
from ccsclip.heads.stats import load_means
from ccsclip.models import load_model
from ccsclip.probeset import load_probe
from ccsclip.profiles.attribute.gaps import bootstrap_shares, point_estimate
from ccsclip.profiles.attribute.parts import compute_parts
from ccsclip.profiles.attribute.run import AttributionOptions, compute
from ccsclip.profiles.probe_eval import load_image_tensor
from ccsclip.zeroshot import encode_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ccsclip-organism")
    parser.add_argument("--pretrained", default="embedded")
    parser.add_argument("--probe", type=Path, required=True, help="bias probe folder")
    parser.add_argument("--attribute", default="colour")
    parser.add_argument("--means", type=Path, required=True)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--ablations", type=int, default=6, help="true ablations to time")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = parser.parse_args()

    loaded = load_model(args.model, args.pretrained)
    means = load_means(args.means)
    options = AttributionOptions(args.probe, args.attribute, means=args.means, replicates=20)
    data, context = compute(loaded, options)  # warm-up; also gives texts and cells
    probe = load_probe(args.probe)
    images = load_image_tensor([path for path, _ in probe.rows], loaded.preprocess)
    cells, texts = context.cells, data.texts
    heads = [(layer, head) for layer in range(loaded.spec.layers) for head in range(2)]
    ablation_times = []

    def ablate(head) -> None:
        start = time.perf_counter()
        with ablated(loaded.model, Ablation.of([head], "mean", means)):
            embeddings = encode_images(loaded.model, images)
        point_estimate(embeddings.double().unsqueeze(1), texts, cells)
        ablation_times.append(time.perf_counter() - start)

    half = args.ablations // 2  # half before and half after: a changing load hits both alike
    for head in heads[:half]:
        ablate(head)
    start = time.perf_counter()
    parts = compute_parts(loaded.model, images, means, dtype=getattr(torch, args.dtype))
    decompose_s = time.perf_counter() - start
    start = time.perf_counter()
    point_estimate(parts.terms, texts, cells)
    gaps_s = time.perf_counter() - start
    start = time.perf_counter()
    bootstrap_shares(parts.terms, texts, cells, args.bootstrap, 0)
    bootstrap_s = time.perf_counter() - start
    attribution_s = decompose_s + gaps_s + bootstrap_s

    for head in heads[half : args.ablations]:
        ablate(head)
    ablation_s = sum(ablation_times) / len(ablation_times)
    n_components = len(parts.names) - 3  # heads and MLPs: the ones an ablation could remove
    report = {
        "images": images.shape[0],
        "components": n_components,
        "bootstrap": args.bootstrap,
        "dtype": args.dtype,
        "attribution_s": round(attribution_s, 2),
        "decompose_s": round(decompose_s, 2),
        "gaps_s": round(gaps_s, 3),
        "bootstrap_s": round(bootstrap_s, 2),
        "one_true_ablation_s": round(ablation_s, 2),
        "attribution_in_true_ablations": round(attribution_s / ablation_s, 2),
        "goal_below_five": attribution_s < 5 * ablation_s,
        "all_true_ablations_s": round(ablation_s * n_components, 1),
        "torch_threads": torch.get_num_threads(),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
