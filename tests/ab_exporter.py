"""A real Prometheus exporter of the judge's counter contract, for the ab tests.

Run as a subprocess: `python tests/ab_exporter.py SPEC.json PORT_FILE`. The spec lists series
`{"metric", "labels", "observations", "positive", "negative", "squares"}`; each becomes the four
counters `<metric>_{observations,positive,negative,squares}_total` with those labels, served by
`prometheus_client.start_http_server` on a free port (written to PORT_FILE). With `hold_until`
(a path) in the spec the series read 0 until that file exists (so that a scraping Prometheus
sees them grow, as `increase()` needs), then jump to their values. `moments()` turns values
into a spec entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIXES = ("observations", "positive", "negative", "squares")


def moments(metric: str, labels: dict[str, str], values: Iterable[float]) -> dict:
    """A spec entry whose counters are the contract's sums of `values`."""
    values = [float(v) for v in values]
    return {
        "metric": metric,
        "labels": labels,
        "observations": len(values),
        "positive": sum(max(v, 0.0) for v in values),
        "negative": sum(max(-v, 0.0) for v in values),
        "squares": sum(v * v for v in values),
    }


def serve(spec: dict, port_file: Path) -> None:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    families: dict[str, Counter] = {}
    label_names: dict[str, list[str]] = {}
    for entry in spec["series"]:
        names = label_names.setdefault(entry["metric"], sorted(entry["labels"]))
        if names != sorted(entry["labels"]):
            raise SystemExit(f"{entry['metric']}: every series needs the labels {names}")
    for metric, names in label_names.items():
        for suffix in SUFFIXES:
            name = f"{metric}_{suffix}"
            families[name] = Counter(name, f"{suffix} of {metric}", names, registry=registry)
    children = [
        (entry, {s: families[f"{entry['metric']}_{s}"].labels(**entry["labels"]) for s in SUFFIXES})
        for entry in spec["series"]
    ]
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_port))
    os.replace(tmp, port_file)
    if spec.get("hold_until"):  # a file the test creates once Prometheus has seen the zeros
        while not Path(spec["hold_until"]).exists():
            time.sleep(0.05)
    for entry, counters in children:
        for suffix, counter in counters.items():
            counter.inc(entry[suffix])
    while True:
        time.sleep(3600)


@contextmanager
def running_exporter(spec: dict, workdir: Path) -> Iterator[str]:
    """Start the exporter in a subprocess; yield its base URL; stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_file, port_file = workdir / "spec.json", workdir / "port"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, __file__, str(spec_file), str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the exporter did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    serve(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
