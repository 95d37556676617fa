"""What the background probes cost: full results once, then a canary per interval.

Builds the two-profile organism bundle of benchmarks/serve.py and the organism's probe sets at
their default sizes (`generate_all`: accuracy probes and the 3,600-image bias probe), then runs
the service's ProbeRunner in this process, as a server does (its own low-priority thread):

1. the first round with an empty probe cache: every probe's full result per profile (the cost
   each round had before results were stored);
2. `--rounds` periodic rounds at `--interval` seconds (short, to see several): only the canary
   subsample is re-embedded. The process CPU time over those rounds, per round, divided by the
   default interval (300 s) is the share of one core the probes take in service (goal <= 2 %);
3. a restart on the same cache: what a new server pays before its gauges are live.

    nice python benchmarks/probes.py [--interval 2] [--rounds 5] [--canary 32] [--json]
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
from serve import build_bundle  # noqa: E402

DEFAULT_INTERVAL_S = 300.0


def runner(engine, dirs, cache_dir: Path, interval: float, canary: int):
    from prometheus_client import CollectorRegistry

    from ccsclip.service.metrics import Metrics
    from ccsclip.service.probe_cache import ProbeCache
    from ccsclip.service.probes import ProbeRunner

    metrics = Metrics(CollectorRegistry())
    probes = ProbeRunner(
        engine, dirs, metrics, interval_s=interval, cache=ProbeCache(cache_dir), canary_size=canary
    )
    return probes, metrics


def wait_rounds(probes, rounds: int, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while probes.response().runs < rounds:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{rounds} probe rounds not done in {timeout} s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between rounds")
    parser.add_argument("--rounds", type=int, default=5, help="canary rounds measured")
    parser.add_argument("--canary", type=int, default=32, help="canary images per probe")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ccsclip.engine.engine import Engine
    from ccsclip.organism.probes import generate_all

    out: dict[str, float | int | str] = {"load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="ccsclip-probes-bench-") as tmp:
        root = Path(tmp)
        bundle, _ = build_bundle(root)
        generate_all(root / "world", 0, n_gallery=16, n_calibration=1)
        dirs = sorted(p.parent for p in (root / "world").glob("*/probe.yaml"))
        engine = Engine.load(bundle, intra_op_threads=1)
        profiles = engine.available_profiles()

        # 1. full results (empty cache); interval 0: one round, the thread then ends
        probes, metrics = runner(engine, dirs, root / "cache", 0, args.canary)
        cpu, wall = time.process_time(), time.perf_counter()
        probes.start()
        probes.join()
        out["full_round_cpu_s"] = time.process_time() - cpu
        out["full_round_wall_s"] = time.perf_counter() - wall
        results = probes.response().results
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        out["images_per_round_full"] = sum(r.n_images or 0 for r in results)

        # 3. a restart on the stored results (first round: load + one canary); a new engine, so
        # the probes' text side and content hashes are computed again, as in a new server
        engine = Engine.load(bundle, intra_op_threads=1)
        probes, metrics = runner(engine, dirs, root / "cache", args.interval, args.canary)
        cpu, wall = time.process_time(), time.perf_counter()
        probes.start()
        wait_rounds(probes, 1)
        out["restart_round_cpu_s"] = time.process_time() - cpu
        out["restart_round_wall_s"] = time.perf_counter() - wall

        # 2. the periodic rounds: canary only
        cpu, wall = time.process_time(), time.perf_counter()
        wait_rounds(probes, 1 + args.rounds)
        probes.stop()
        canary_cpu = (time.process_time() - cpu) / args.rounds
        out["canary_round_cpu_s"] = canary_cpu
        out["canary_rounds"] = args.rounds
        out["canary_window_wall_s"] = time.perf_counter() - wall
        out["images_per_round_canary"] = args.canary * len(dirs) * len(profiles)
        out["share_of_core_full_each_round"] = out["full_round_cpu_s"] / DEFAULT_INTERVAL_S
        out["share_of_core_canary"] = canary_cpu / DEFAULT_INTERVAL_S
        out["probes"] = len(dirs)
        out["profiles"] = len(profiles)
    out["load_after"] = os.getloadavg()[0]

    print(f"probes {out['probes']} x profiles {out['profiles']}, load {out['load']:.2f}")
    print(
        f"full round (before: every interval): {out['images_per_round_full']} images, "
        f"{out['full_round_cpu_s']:.2f} s CPU, {out['full_round_wall_s']:.2f} s wall "
        f"= {100 * out['share_of_core_full_each_round']:.2f} % of a core at 300 s"
    )
    print(
        f"restart on stored results: {out['restart_round_cpu_s']:.2f} s CPU, "
        f"{out['restart_round_wall_s']:.2f} s wall"
    )
    print(
        f"canary round ({out['images_per_round_canary']} images): "
        f"{out['canary_round_cpu_s']:.3f} s CPU (mean of {args.rounds} at {args.interval} s) "
        f"= {100 * out['share_of_core_canary']:.3f} % of a core at 300 s (goal <= 2 %)"
    )
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
