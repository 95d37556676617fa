"""TextSpan from moments against the per-image algorithm: time and peak memory for N images.

For ViT-B-32-sized heads (E = 512, a 3,000-description pool, m = 5, r = 80) and N = 1,000 and
10,000 images, each variant runs in a fresh process that streams the head's contributions in
chunks (moments) or holds them all (per-image). Memory is the peak RSS above the process's RSS
after imports; the goal is a moments column that does not grow with N.

    python benchmarks/textspan.py [--sizes 1000 10000] [--texts 3000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
variant, n, e, m_texts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
mix = rng.normal(size=(e, e)) / e**0.5
texts = rng.normal(size=(m_texts, e)); texts /= np.linalg.norm(texts, axis=1, keepdims=True)
def chunks(size=256):
    g = np.random.default_rng(1)
    for start in range(0, n, size):
        yield g.normal(size=(min(size, n - start), e)) @ mix
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if variant == "moments":
    from ccsclip.profiles.rank.textspan import textspan_from_moments
    s = torch.zeros(e, dtype=torch.float64); S = torch.zeros(e, e, dtype=torch.float64)
    for c in chunks():
        c = torch.from_numpy(c); s += c.sum(0); S += c.T @ c
    picks = [p.index for p in textspan_from_moments(n, s, S, torch.from_numpy(texts), 5, 80)]
else:
    sys.path.insert(0, "tests")
    from test_textspan import per_image_textspan
    data = np.concatenate(list(chunks()))
    picks = per_image_textspan(data, texts, 5, 80)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "mib": max(0, peak - base) / 1024, "picks": picks}))
"""


def run(variant: str, n: int, e: int, texts: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(n), str(e), str(texts)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--texts", type=int, default=3000)
    args = parser.parse_args()
    print(f"{'N':>7} {'variant':>10} {'seconds':>9} {'peak MiB':>9}  same picks")
    for n in args.sizes:
        moments = run("moments", n, args.dim, args.texts)
        per_image = run("per-image", n, args.dim, args.texts)
        same = moments["picks"] == per_image["picks"]
        for name, row in (("moments", moments), ("per-image", per_image)):
            print(f"{n:>7} {name:>10} {row['seconds']:>9.2f} {row['mib']:>9.1f}  {same}")


if __name__ == "__main__":
    main()
