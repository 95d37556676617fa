"""Throughput of exported bundles: open_clip eager vs onnxruntime, baseline vs pruned profiles.

For each model a bundle is exported (`export_bundle`, parity-checked) with a baseline and two
zero-mode profiles whose heads are spread evenly over the last four layers (where CCS profiles
prune): ViT-B-32 (random init) 12 and 24 heads, the organism 8 and 16 (`embedded` weights when
they are shipped, else random init). Then, at batch 1 and 16 with the same thread count for both
runtimes (torch.set_num_threads(N), onnxruntime intra_op_num_threads=N):

* images/s of open_clip eager (`encode_image` under inference_mode), onnxruntime baseline and
  each pruned profile, and their ratio to eager;
* each pruned profile's measured speedup over the onnxruntime baseline against the speedup its
  FLOP count predicts (`flops_per_image` of the baked tower);
* achieved GFLOP/s (2 x multiply-adds per image x images/s) against this machine's fp32 matmul
  rate, measured in the same run (torch, 2048 x 2048, N threads).

Timings are best-of-several, interleaved per model: this machine is shared and noisy, so compare
ratios rather than absolute rates. OMP_WAIT_POLICY defaults to PASSIVE here (set before torch
loads): with libgomp's default policy on a busy 2-core machine, every torch parallel region
intermittently stalls for a scheduler slice (~7.5 ms per op, eager 100x slower), which would
measure the machine's load, not the runtime. onnxruntime keeps its own (spinning) thread pool.

    python benchmarks/export.py [--threads 2] [--seconds 2] [--quick] [--models ViT-B-32,organism]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp: module doc

import numpy as np  # noqa: E402
import torch  # noqa: E402

LAST_LAYERS = 4
PRUNED = {"ViT-B-32": (12, 24), "ccsclip-organism": (8, 16)}


def spread_heads(layers: int, heads: int, count: int) -> list[tuple[int, int]]:
    """`count` heads spread evenly over the last four layers, lowest head indices first."""
    chosen = list(range(max(0, layers - LAST_LAYERS), layers))
    per_layer, extra = divmod(count, len(chosen))
    out = []
    for index, layer in enumerate(reversed(chosen)):  # the remainder goes to the last layers
        n = per_layer + (1 if index < extra else 0)
        if n > heads:
            raise ValueError(f"cannot remove {count} heads from the last {len(chosen)} layers")
        out += [(layer, head) for head in range(n)]
    return sorted(out)


def load(name: str):
    from ccsclip.errors import NotFoundError
    from ccsclip.models import load_model
    from ccsclip.models.loading import embedded_weights_path

    pretrained = None
    if name == "ccsclip-organism":
        try:
            embedded_weights_path(name)
            pretrained = "embedded"
        except NotFoundError:  # no shipped weights yet: random init
            pretrained = None
    return load_model(name, pretrained)


def write_profiles(loaded, counts: tuple[int, ...], root: Path) -> list:
    from ccsclip.profiles.schema import (
        manual_profile,
        write_profile,
    )

    spec = loaded.spec
    out = []
    for count in (0, *counts):
        name = "baseline" if count == 0 else f"pruned-{count}"
        heads = spread_heads(spec.layers, spec.heads, count) if count else []
        profile = manual_profile(spec, name, heads)
        out.append((profile, write_profile(root / f"{name}.yaml", profile)))
    return out


def best_rates(
    fns: dict[str, Callable[[], None]], batch: int, seconds: float, rounds: int = 5
) -> dict[str, float]:
    """Images/s of each engine's fastest call, engines interleaved over `rounds` rounds.

    Each round gives every engine `seconds / rounds` (at least one call): on a shared machine a
    quiet moment then benefits every engine, not only the one that happened to be running.
    """
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for label, fn in fns.items():
            start = time.perf_counter()
            while True:
                tick = time.perf_counter()
                fn()
                best[label] = min(best[label], time.perf_counter() - tick)
                if time.perf_counter() - start >= seconds / rounds:
                    break
    return {label: batch / t for label, t in best.items()}


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - tick)
    return 2 * size**3 / best / 1e9


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_model(name: str, threads: int, seconds: float, batches: tuple[int, ...]) -> list[dict]:
    from ccsclip.export.bundle import export_bundle

    torch.set_num_threads(threads)
    loaded = load(name)
    eager = copy.deepcopy(loaded.model).eval()  # export swaps in head-resolved attention
    spec = loaded.spec
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        profiles = write_profiles(loaded, PRUNED[name], Path(tmp))
        tick = time.perf_counter()
        manifest = export_bundle(loaded, profiles, Path(tmp) / "bundle", progress=False)
        export_s = time.perf_counter() - tick
        del loaded
        sessions = {
            p.name: session(Path(tmp) / "bundle" / manifest.profiles[p.name].file, threads)
            for p, _ in profiles
        }
        for batch in batches:
            x = torch.randn(batch, 3, spec.image_size, spec.image_size)
            feed = {"pixel_values": x.numpy()}

            def run_eager(x=x) -> None:
                with torch.inference_mode():
                    eager.encode_image(x)

            fns = {"eager": run_eager}
            for pname, sess in sessions.items():
                fns[pname] = lambda s=sess, f=feed: s.run(None, f)
            rates = best_rates(fns, batch, seconds)
            base_flops = manifest.profiles["baseline"].flops_per_image
            for label, rate in rates.items():
                entry = manifest.profiles.get(label, manifest.profiles["baseline"])
                rows.append(
                    {
                        "model": f"{name}{'' if spec.pretrained else ' (random)'}",
                        "batch": batch,
                        "engine": "torch eager" if label == "eager" else f"ort {label}",
                        "heads": len(entry.heads_removed),
                        "ips": rate,
                        "x_eager": rate / rates["eager"],
                        "speedup": None if label == "eager" else rate / rates["baseline"],
                        "predicted": None
                        if label == "eager"
                        else base_flops / entry.flops_per_image,
                        "gflops": 2 * entry.flops_per_image * rate / 1e9,
                        "parity": None if label == "eager" else entry.parity_max_abs,
                        "export_s": export_s,
                    }
                )
    return rows


def print_table(rows: list[dict], peak: float, threads: int) -> None:
    policy = os.environ.get("OMP_WAIT_POLICY")
    print(f"\nthreads={threads}, OMP_WAIT_POLICY={policy}; fp32 matmul 2048^2: {peak:.1f} GFLOP/s")
    header = (
        f"{'model':<28} {'batch':>5} {'engine':<16} {'heads':>5} {'img/s':>9} {'x eager':>8} "
        f"{'speedup':>8} {'pred.':>6} {'GFLOP/s':>8} {'% mm':>5} {'parity':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        speed = "" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        pred = "" if r["predicted"] is None else f"{r['predicted']:.2f}x"
        parity = "" if r["parity"] is None else f"{r['parity']:.1e}"
        print(
            f"{r['model']:<28} {r['batch']:>5} {r['engine']:<16} {r['heads']:>5} "
            f"{r['ips']:>9.1f} {r['x_eager']:>7.2f}x {speed:>8} {pred:>6} "
            f"{r['gflops']:>8.1f} {100 * r['gflops'] / peak:>4.0f}% {parity:>8}"
        )
    exports = {r["model"]: r["export_s"] for r in rows}
    print(
        "export (3 profiles + text, parity-checked): "
        + ", ".join(f"{m} {s:.0f} s" for m, s in exports.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per cell")
    parser.add_argument("--models", default="ViT-B-32,ccsclip-organism")
    parser.add_argument("--quick", action="store_true", help="0.5 s per cell")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else args.seconds
    np.random.seed(0)
    torch.manual_seed(0)
    peak = matmul_gflops(args.threads)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name.strip(), args.threads, seconds, (1, 16))
    peak = max(peak, matmul_gflops(args.threads))  # again after: the machine is shared
    print_table(rows, peak, args.threads)


if __name__ == "__main__":
    main()
