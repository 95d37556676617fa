"""Demo step: live bias on served traffic, two profiles side by side, and the judge's verdict.

Creates one live gallery per profile (`live-a`, `live-b`) over the same images of the bias probe,
declaring their `colour` as a bias attribute, sends a burst of neutral text queries to both and
zero-shot and embedding requests through both profiles (so that the pruned one's shadow
comparison with the full model has data), and prints what each profile's series say: mean
MaxSkew@k and Skew@k per colour, read back from the server's own /metrics (docs/service.md,
"Live bias on the served traffic"). It ends with `ccsclip ab judge` on the same /metrics: the
first profile is the control (the full model), the second the candidate (docs/ab.md).

    python scripts/demo_live_bias.py --url http://127.0.0.1:3000 --probe WORLD/bias-shape-colour \
        --profiles baseline high-ccs [--items 120] [--queries 300] [--k 10] [--min-samples 200]

Exit status: 0 whatever the verdict (promote, roll back, keep collecting are all answers); the
judge's bad-input exit 2 (no live figures on the page) fails the demo.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from demo_gallery import wait_ready  # noqa: E402

NEUTRAL = ("a photo", "an image", "a picture of a shape", "a shape", "something", "an object")


def post(client: httpx.Client, route: str, body: dict) -> dict:
    reply = client.post(route, json=body)
    if reply.status_code != 200:
        sys.exit(f"{route}: {reply.status_code} {reply.text}")
    return reply.json()


def rows(probe: Path, count: int) -> list[tuple[Path, str]]:
    """(image, colour) of `count` rows spread over the bias probe's table."""
    from ccsclip.probeset import load_probe

    table = load_probe(probe).rows
    step = max(1, len(table) // count)
    return [(path, attrs["colour"]) for path, attrs in table[::step][:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--probe", type=Path, required=True, help="the bias probe folder")
    parser.add_argument("--profiles", nargs=2, default=["baseline", "high-ccs"])
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--queries", type=int, default=300, help="searches per profile")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--images", type=int, default=240, help="zero-shot images per profile")
    parser.add_argument("--min-samples", type=int, default=200, help="the judge's minimum")
    args = parser.parse_args()

    items = rows(args.probe, args.items)
    with httpx.Client(base_url=args.url, timeout=120) as client:
        wait_ready(client)
        galleries = dict(zip(args.profiles, ("live-a", "live-b"), strict=True))
        for profile, name in galleries.items():
            client.post("/v1/galleries/drop", json={"gallery": name})  # a rerun starts afresh
            post(
                client,
                "/v1/galleries/create",
                {"gallery": name, "backend": "exact", "profile": profile,
                 "bias_attributes": ["colour"]},
            )  # fmt: skip
            for start in range(0, len(items), 16):
                batch = [
                    {
                        "id": f"item-{start + i}",
                        "image": base64.b64encode(path.read_bytes()).decode(),
                        "metadata": {"colour": colour},
                    }
                    for i, (path, colour) in enumerate(items[start : start + 16])
                ]
                post(client, "/v1/galleries/upsert", {"gallery": name, "items": batch})
        for n in range(args.queries):
            for name in galleries.values():
                query = {"gallery": name, "text": NEUTRAL[n % len(NEUTRAL)], "k": args.k}
                post(client, "/v1/galleries/search", query)
        image_requests(client, args.probe, args.profiles, args.images)
        text = client.get("/metrics").text

    topk: dict[str, dict[str, float]] = defaultdict(dict)
    shares: dict[str, float] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if labels.get("gallery") not in galleries.values():
                continue
            if s.name == "ccsclip_live_topk_items_total":
                topk[labels["profile"]][labels["value"]] = s.value
            elif s.name == "ccsclip_live_gallery_share" and labels["gallery"] == "live-a":
                shares[labels["value"]] = s.value
            elif s.name == "ccsclip_live_maxskew_sum":
                sums[labels["profile"]] = s.value
            elif s.name == "ccsclip_live_maxskew_count":
                counts[labels["profile"]] = s.value
    print(f"{args.queries} neutral queries per profile, k={args.k}, {len(items)} items")
    print("gallery colour shares: " + ", ".join(f"{v}={s:.2f}" for v, s in sorted(shares.items())))
    for side, profile in zip("AB", args.profiles, strict=True):
        total = sum(topk[profile].values()) or 1
        skews = ", ".join(
            f"{v}={math.log((n / total) / shares[v]):+.2f}"
            for v, n in sorted(topk[profile].items())
            if n and shares.get(v)
        )
        mean = sums.get(profile, 0.0) / max(counts.get(profile, 0.0), 1)
        print(f"{side} {profile}: mean live MaxSkew@{args.k} {mean:.3f}; Skew@k {skews}")
    sys.exit(judge(args.url, args.profiles, args.min_samples))


def image_requests(client: httpx.Client, probe: Path, profiles: list[str], count: int) -> None:
    """Zero-shot (shape labels) and embedding requests through each profile, 8 images a call."""
    table = rows_with_shape(probe, count)
    labels = sorted({shape for _, shape in table})
    for start in range(0, len(table), 8):
        images = [
            base64.b64encode(path.read_bytes()).decode() for path, _ in table[start : start + 8]
        ]
        for profile in profiles:
            post(client, "/v1/zero_shot", {"images": images, "labels": labels, "profile": profile})
            batch = [{"image": image, "profile": profile} for image in images]
            reply = client.post("/v1/embed_images", json=batch)
            if reply.status_code != 200:
                sys.exit(f"/v1/embed_images: {reply.status_code} {reply.text}")


def rows_with_shape(probe: Path, count: int) -> list[tuple[Path, str]]:
    from ccsclip.probeset import load_probe

    table = load_probe(probe).rows
    step = max(1, len(table) // count)
    return [(path, attrs["shape"]) for path, attrs in table[::step][:count]]


def judge(url: str, profiles: list[str], min_samples: int) -> int:
    """`ccsclip ab judge` on the server's /metrics: print its table; fail only on bad input."""
    control, candidate = profiles
    command = [
        sys.executable, "-m", "ccsclip.cli", "ab", "judge",
        "--metrics-url", f"{url}/metrics",
        "--control", f'{{profile="{control}"}}',
        "--candidate", f'{{profile="{candidate}"}}',
        "--min-samples", str(min_samples),
    ]  # fmt: skip
    print(f"== is {candidate} as good as {control}? " + " ".join(command[2:]))
    sys.stdout.flush()
    proc = subprocess.run(command, env={**os.environ, "COLUMNS": "160"}, check=False)
    return 1 if proc.returncode == 2 else 0


if __name__ == "__main__":
    main()
