"""What the background probes cost: full results once, then a canary per interval.

Builds the two-profile organism bundle of benchmarks/serve.py and the organism's probe sets at
their default sizes (`generate_all`: accuracy probes and the 3,600-image bias probe), then runs
the service's ProbeRunner in this process, as a server does (its own low-priority thread):

1. the first round with an empty probe cache: every probe's full result per profile (the cost
   each round had before results were stored);
2. a restart on the same cache: what a new server pays before its gauges are live;
3. `--rounds` periodic rounds at `--interval` seconds (default 300, the service's): only the
   canary is re-embedded, as many images as the CPU budget allows (`--budget`, default 2 % of a
   core) unless `--canary N` fixes the size. The process CPU time over the window of those rounds
   (waits included) divided by its wall time is the share of one core the probes take in
   service (goal <= 2 %); the runner's own account (`/v1/probes` budget) is printed beside it.
   CPU time, not wall time: the figure holds on a loaded machine.

`--model ViT-B-32`: the same on a ViT-B-32 bundle with random weights (benchmarks/serve.py
builds it; `--work DIR` keeps it between runs) and the organism's probes the demo serves
(accuracy-shape, accuracy-pattern, bias-shape-colour) at the sizes serve.py generates.

    nice python benchmarks/probes.py [--interval 300] [--rounds 3] [--canary N] [--budget 0.02]
                                     [--model ViT-B-32 --work DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve import build_bundle, build_vit_bundle  # noqa: E402

DEFAULT_INTERVAL_S = 300.0
DEMO_PROBES = ("accuracy-shape", "accuracy-pattern", "bias-shape-colour")


def runner(engine, dirs, cache_dir: Path, interval: float, canary: int | None, budget: float):
    from prometheus_client import CollectorRegistry

    from ccsclip.service.metrics import Metrics
    from ccsclip.service.probe_cache import ProbeCache
    from ccsclip.service.probes import ProbeRunner

    metrics = Metrics(CollectorRegistry())
    probes = ProbeRunner(
        engine,
        dirs,
        metrics,
        interval_s=interval,
        cache=ProbeCache(cache_dir),
        canary_size=canary,
        cpu_budget=budget,
    )
    return probes, metrics


def wait_rounds(probes, rounds: int, timeout: float = 3600, poll_s: float = 0.05) -> None:
    """Wait for `rounds` completed rounds; polling costs CPU too, so it is slow in a window."""
    deadline = time.monotonic() + timeout
    while probes.response().runs < rounds:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{rounds} probe rounds not done in {timeout} s")
        time.sleep(poll_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds")
    parser.add_argument("--rounds", type=int, default=3, help="canary rounds measured")
    parser.add_argument("--canary", type=int, default=None, help="fixed canary size (no budget)")
    parser.add_argument("--budget", type=float, default=0.02, help="canary CPU share of a core")
    parser.add_argument("--model", default="organism", choices=["organism", "ViT-B-32"])
    parser.add_argument("--work", type=Path, default=None, help="keep the bundle here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ccsclip.engine.engine import Engine
    from ccsclip.organism.probes import generate_all

    out: dict[str, float | int | str] = {"load": os.getloadavg()[0], "model": args.model}
    with tempfile.TemporaryDirectory(prefix="ccsclip-probes-bench-") as tmp:
        root = Path(tmp)
        if args.model == "ViT-B-32":
            work = args.work or root
            bundle, _, _ = build_vit_bundle(work, int8=False)
            dirs = [work / "world" / name for name in DEMO_PROBES]
        else:
            bundle, _ = build_bundle(root)
            generate_all(root / "world", 0, n_gallery=16, n_calibration=1)
            dirs = sorted(p.parent for p in (root / "world").glob("*/probe.yaml"))
        engine = Engine.load(bundle, intra_op_threads=1)
        profiles = engine.available_profiles()

        # 1. full results (empty cache; what baking costs at export); interval 0: one round
        probes, metrics = runner(engine, dirs, root / "cache", 0, args.canary, args.budget)
        cpu, wall = time.process_time(), time.perf_counter()
        probes.start()
        probes.join()
        out["full_round_cpu_s"] = time.process_time() - cpu
        out["full_round_wall_s"] = time.perf_counter() - wall
        results = probes.response().results
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        out["images_per_round_full"] = sum(r.n_images or 0 for r in results)

        # 2. a restart on the stored results (first round: load + one canary of the minimum
        # size); a new engine, so the probes' text side is computed again, as in a new server
        engine = Engine.load(bundle, intra_op_threads=1)
        probes, metrics = runner(
            engine, dirs, root / "cache", args.interval, args.canary, args.budget
        )
        cpu, wall = time.process_time(), time.perf_counter()
        probes.start()
        wait_rounds(probes, 1)
        out["restart_round_cpu_s"] = time.process_time() - cpu
        out["restart_round_wall_s"] = time.perf_counter() - wall

        # 3. the periodic rounds: canary only; the window runs from the end of round 1 to the
        # end of the last round, so it holds each measured round and the interval before it
        cpu, wall = time.process_time(), time.perf_counter()
        wait_rounds(probes, 1 + args.rounds, args.rounds * (args.interval + 600), poll_s=1.0)
        window_cpu, window_wall = time.process_time() - cpu, time.perf_counter() - wall
        response = probes.response()
        probes.stop()
        out["window_cpu_s"] = window_cpu
        out["window_wall_s"] = window_wall
        out["share_of_core_measured"] = window_cpu / window_wall
        budget = response.budget
        out["share_of_core_runner"] = budget.share_of_core if budget else float("nan")
        images = [r.canary.images for r in response.results if r.canary]
        out["canary_images_per_round"] = sum(images)
        out["canary_images_per_pair"] = ",".join(map(str, images))
        out["full_round_share_at_interval"] = out["full_round_cpu_s"] / args.interval
        out["probes"] = len(dirs)
        out["profiles"] = len(profiles)
    out["load_after"] = os.getloadavg()[0]

    print(
        f"{args.model}: probes {out['probes']} x profiles {out['profiles']}, "
        f"load {out['load']:.2f} -> {out['load_after']:.2f}"
    )
    print(
        f"full results (baked at export, else a first start): {out['images_per_round_full']} "
        f"images, {out['full_round_cpu_s']:.2f} s CPU, {out['full_round_wall_s']:.2f} s wall"
    )
    print(
        f"restart on stored results: {out['restart_round_cpu_s']:.2f} s CPU, "
        f"{out['restart_round_wall_s']:.2f} s wall"
    )
    print(
        f"canary, {args.rounds} rounds at {args.interval:g} s "
        f"({'budget ' + format(args.budget, '.1%') if args.canary is None else args.canary}): "
        f"{out['canary_images_per_round']} images per round ({out['canary_images_per_pair']}); "
        f"process CPU {out['window_cpu_s']:.2f} s over {out['window_wall_s']:.0f} s = "
        f"{100 * out['share_of_core_measured']:.2f} % of a core (runner's account "
        f"{100 * out['share_of_core_runner']:.2f} %; goal <= 2 %)"
    )
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
