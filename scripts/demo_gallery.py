"""Demo step: create a live gallery over the HTTP API, fill it with a few images, search it.

Run by scripts/demo.sh against a server it started in the background (CCSCLIP_GALLERY_ROOT set).
Re-running is fine: the gallery is dropped first if it exists.

    python scripts/demo_gallery.py --url http://127.0.0.1:3000 --images WORLD/gallery [--count 12]
"""

from __future__ import annotations

import argparse
import base64
import csv
import sys
import time
from pathlib import Path

import httpx


def wait_ready(client: httpx.Client, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sys.exit(f"the server at {client.base_url} is not ready after {timeout:.0f} s")


def call(client: httpx.Client, route: str, body: dict) -> dict:
    reply = client.post(f"/v1/galleries/{route}", json=body)
    if reply.status_code != 200:
        sys.exit(f"/v1/galleries/{route}: {reply.status_code} {reply.text}")
    return reply.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--images", type=Path, required=True, help="the world's gallery folder")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--gallery", default="live")
    args = parser.parse_args()
    with open(args.images / "gallery.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[: args.count]
    with httpx.Client(base_url=args.url, timeout=120) as client:
        wait_ready(client)
        if args.gallery in [g["gallery"] for g in call(client, "list", {})["galleries"]]:
            call(client, "drop", {"gallery": args.gallery})
        info = call(client, "create", {"gallery": args.gallery, "backend": "hnsw"})
        print(f"created {info['gallery']!r}: backend {info['backend']}, profile {info['profile']}")
        items = [
            {  # the id convention of `ccsclip index`: the file's path below the folder
                "id": f"{row['id']}.png",
                "image": base64.b64encode((args.images / f"{row['id']}.png").read_bytes()).decode(),
                "metadata": {"shape": row["shape"], "colour": row["colour"]},
            }
            for row in rows
        ]
        for start in range(0, len(items), 8):
            answer = call(
                client, "upsert", {"gallery": args.gallery, "items": items[start : start + 8]}
            )
        print(f"upserted {len(items)} images; the gallery holds {answer['count']}")
        shape = rows[0]["shape"]
        query = {"gallery": args.gallery, "text": f"a photo of a {shape}", "k": 3}
        for label, body in (
            ("all", query),
            (f"shape={shape}", {**query, "filter": {"shape": shape}}),
        ):
            hits = call(client, "search", body)["hits"]
            found = ", ".join(
                f"{h['id']} ({h['metadata']['shape']}, {h['score']:.3f})" for h in hits
            )
            print(f"search {body['text']!r} [{label}]: {found}")
        gone = items[0]["id"]
        call(client, "delete", {"gallery": args.gallery, "ids": [gone]})
        info = call(client, "info", {"gallery": args.gallery})
        print(f"deleted {gone}; the gallery holds {info['count']} items")


if __name__ == "__main__":
    main()
