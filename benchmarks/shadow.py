"""CPU cost of shadow agreement: the same request load on gRPC servers with the shadow off, at
the default rate, and at rate 1 (every request shadowed), side by side.

Three `ccsclip serve-grpc` servers over one bundle (default: the demo's, /work/ref-demo/bundle
or `--bundle DIR`) differ only in CCSCLIP_SHADOW_RATE. One client sends each server, in turn,
the same block of requests served by a pruned profile (`--profile`, default `search`):
zero-shot (one image, six labels) and /embed_images (one image), alternating; the blocks
rotate over the servers for `--rounds` rounds, so load on the shared machine hits all three
alike. Each server's CPU time (user + system, all threads) over its blocks is read from
/proc (psutil). Printed: CPU ms per request per server, the ratio on/off at the default rate
(goal <= 1.05), and at rate 1 the share of a request's CPU that the baseline tower adds, from
which the highest rate within 5 % follows (0.05 / that share).

    python benchmarks/shadow.py [--bundle DIR] [--rounds 6] [--block 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from serve import start_one  # noqa: E402

from ccsclip.service.settings import ServiceSettings  # noqa: E402

DEFAULT_BUNDLE = Path("/work/ref-demo/bundle")
LABELS = ["circle", "square", "triangle", "cross", "diamond", "star"]


def images(bundle: Path, n: int = 16) -> list[bytes]:
    """PNG images of the demo's world when present, else drawn here."""
    world = bundle.parent / "world"
    found = sorted(world.glob("accuracy-shape/**/*.png"))[:n]
    if found:
        return [p.read_bytes() for p in found]
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def cpu_seconds(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def block(stub: Any, pb: Any, data: list[bytes], profile: str, n: int) -> None:
    for i in range(n):
        image = data[i % len(data)]
        if i % 2 == 0:
            stub.ZeroShot(pb.ZeroShotRequest(images=[image], labels=LABELS, profile=profile))
        else:
            item = pb.ImageItem(image=image, profile=profile)
            stub.EmbedImages(pb.EmbedImagesRequest(items=[item]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--profile", default="search")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--block", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import grpc

    from ccsclip.v1 import ccsclip_pb2 as pb
    from ccsclip.v1 import ccsclip_pb2_grpc as pb_grpc

    default_rate = ServiceSettings.model_fields["shadow_rate"].default
    rates = {"off": 0.0, "default": default_rate, "all": 1.0}
    data = images(args.bundle)
    servers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ccsclip-shadow-") as tmp:
        try:
            for name, rate in rates.items():
                root = Path(tmp) / name
                root.mkdir()
                extra = {"CCSCLIP_SHADOW_RATE": str(rate), "CCSCLIP_SHADOW_SEED": "0"}
                server, port = start_one("grpc", args.bundle, root, extra)
                channel = grpc.insecure_channel(f"127.0.0.1:{port}")
                stub = pb_grpc.CCSClipStub(channel)
                block(stub, pb, data, args.profile, 8)  # warm: sessions, text cache
                servers[name] = {"server": server, "stub": stub, "channel": channel, "cpu": 0.0}
            for _ in range(args.rounds):
                for entry in servers.values():
                    pid = entry["server"].process.pid
                    before = cpu_seconds(pid)
                    block(entry["stub"], pb, data, args.profile, args.block)
                    entry["cpu"] += cpu_seconds(pid) - before
        finally:
            for entry in servers.values():
                entry["channel"].close()
                entry["server"].stop()
    requests = args.rounds * args.block
    per_request = {name: 1000 * e["cpu"] / requests for name, e in servers.items()}
    share = per_request["all"] / per_request["off"] - 1
    result = {
        "bundle": str(args.bundle),
        "profile": args.profile,
        "requests_per_server": requests,
        "cpu_ms_per_request": per_request,
        "default_rate": default_rate,
        "ratio_default_over_off": per_request["default"] / per_request["off"],
        "ratio_all_over_off": per_request["all"] / per_request["off"],
        "highest_rate_within_5pct": min(1.0, 0.05 / share) if share > 0 else 1.0,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, ms in per_request.items():
            print(f"shadow {name:8s} (rate {rates[name]:.2f}): {ms:7.2f} CPU ms / request")
        print(
            f"default rate {default_rate}: CPU ratio on/off {result['ratio_default_over_off']:.3f}"
        )
        print(f"rate 1: CPU ratio {result['ratio_all_over_off']:.3f} -> highest rate within 5 %: "
              f"{result['highest_rate_within_5pct']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
