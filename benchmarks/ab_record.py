"""Record per-search excess MaxSkew@k from a real server, for benchmarks/ab_judge.py.

Creates one gallery per profile over the same bias-probe images (colour as metadata), sends
varied colour-neutral text queries (shape, size, pattern, position; never a colour) through
each, and writes each search's observed MaxSkew@k of colour among its hits minus the null: the
expected MaxSkew@k of k items drawn at random from the gallery, by Monte Carlo here
(independently of the server's own figure).

    python benchmarks/ab_record.py --url http://127.0.0.1:3000 \
        --probe runs/demo/world/bias-shape-colour --profiles baseline high-ccs \
        --out runs/ab/searches.json
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import os
import sys
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from ccsclip.probeset import load_probe

TEMPLATES = (
    "a {brightness} {size} {shape} with a {pattern} pattern at the {position}",
    "a {size} {shape} at the {position}",
    "a photo of a {pattern} {shape}",
)
NEUTRAL_KEYS = ("shape", "size", "pattern", "position", "brightness")  # never the colour


def max_skew(colours: list[str], shares: dict[str, float]) -> float:
    """MaxSkew@k over the values present among the hits: max ln(top share / gallery share)."""
    k = len(colours)
    return max(math.log((n / k) / shares[v]) for v, n in Counter(colours).items())


def null_max_skew(colours: list[str], k: int, draws: int, seed: int) -> float:
    """Expected MaxSkew@k of k items drawn without replacement from the gallery (Monte Carlo)."""
    shares = {v: n / len(colours) for v, n in Counter(colours).items()}
    rng = np.random.default_rng(seed)
    pool = np.array(colours)
    return float(
        np.mean([max_skew(list(rng.choice(pool, k, replace=False)), shares) for _ in range(draws)])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--probe", type=Path, required=True)
    parser.add_argument("--profiles", nargs="+", default=["baseline", "high-ccs"])
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--draws", type=int, default=20000, help="Monte Carlo draws of the null")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    table = load_probe(args.probe).rows
    step = max(1, len(table) // args.items)
    rows = table[::step][: args.items]
    colours = [attrs["colour"] for _, attrs in rows]
    shares = {v: n / len(colours) for v, n in Counter(colours).items()}
    null = null_max_skew(colours, args.k, args.draws, seed=0)
    values = [sorted({attrs[key].replace("_", " ") for _, attrs in table}) for key in NEUTRAL_KEYS]
    texts = sorted(
        {
            template.format(**dict(zip(NEUTRAL_KEYS, combo, strict=True)))
            for template in TEMPLATES
            for combo in itertools.product(*values)
        }
    )
    by_profile: dict[str, list[float]] = {}
    with httpx.Client(base_url=args.url, timeout=120) as client:
        for profile in args.profiles:
            name = f"ab-record-{profile}"
            client.post("/v1/galleries/drop", json={"gallery": name})
            client.post(
                "/v1/galleries/create",
                json={"gallery": name, "backend": "exact", "profile": profile},
            ).raise_for_status()
            for start in range(0, len(rows), 16):
                batch = [
                    {"id": str(start + i), "image": base64.b64encode(path.read_bytes()).decode()}
                    for i, (path, _) in enumerate(rows[start : start + 16])
                ]
                reply = client.post("/v1/galleries/upsert", json={"gallery": name, "items": batch})
                reply.raise_for_status()
            excess = []
            for text in texts:
                reply = client.post(
                    "/v1/galleries/search", json={"gallery": name, "text": text, "k": args.k}
                )
                reply.raise_for_status()
                hits = [colours[int(hit["id"])] for hit in reply.json()["hits"]]
                excess.append(max_skew(hits, shares) - null)
            by_profile[profile] = excess
            client.post("/v1/galleries/drop", json={"gallery": name})
            print(f"{profile}: {len(excess)} searches, mean excess {np.mean(excess):+.3f}")
    record = {"k": args.k, "items": len(rows), "null": null, "texts": texts, "excess": by_profile}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, args.out)
    print(f"null MaxSkew@{args.k} of the gallery {null:.3f} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
