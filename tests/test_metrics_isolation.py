"""Two `bentoml serve` on one host with one BENTOML_HOME keep their own metrics; no worker
outlives its server, whether stopped with SIGTERM or its process group killed with SIGKILL.

Real servers (service_fixtures): the first has two workers (multiprocess metrics), the second
one; both get the same environment, as a user typing `bentoml serve` twice would give them.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from service_fixtures import (  # noqa: E402
    HttpClient,
    http_ready,
    make_world,
    metric_samples,
    start_http,
    wait_ready,
)

samples = metric_samples


def count(text: str, endpoint: str) -> float:
    return sum(
        v for labels, v in samples(text, "ccsclip_requests_total") if labels["endpoint"] == endpoint
    )


def wait_for(check, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def running(pids: list[int]) -> list[int]:
    """The pids that still run (a zombie has ended; its parent has just not reaped it yet)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("isolation"))


def test_two_servers_one_home_keep_their_own_metrics(world, tmp_path):
    home = tmp_path / "bentoml-home"
    first = start_http(world, tmp_path, workers=2, home=home, name="first")
    second = None
    try:
        wait_ready(first, http_ready)
        a = HttpClient(first)
        # the probes run at start-up: wait for their gauges
        wait_for(lambda: a.probes()["runs"] >= 1, what="the first's probe round")
        for _ in range(3):
            a.embed_texts(["a red circle"])
        before = a.metrics()
        assert count(before, "embed_texts") == 3
        assert samples(before, "ccsclip_probe_accuracy")
        assert count(before, "probes") >= 1
        accuracy_before = sorted(map(str, samples(before, "ccsclip_probe_accuracy")))

        second = start_http(world, tmp_path, workers=1, home=home, name="second")
        wait_ready(second, http_ready)
        b = HttpClient(second)
        wait_for(lambda: b.probes()["runs"] >= 1, what="the second's probe round")
        for _ in range(5):
            b.profiles()
        assert count(b.metrics(), "profiles") == 5
        assert count(b.metrics(), "probes") >= 1
        assert count(b.metrics(), "embed_texts") == 0  # the second never sees the first's

        after = a.metrics()
        assert count(after, "embed_texts") == 3  # kept across the second's start
        assert count(after, "profiles") == 0  # and never shows the second's
        assert count(after, "probes") == count(before, "probes")  # B's /v1/probes calls: not here
        assert sorted(map(str, samples(after, "ccsclip_probe_accuracy"))) == accuracy_before
        folders = sorted(p.name for p in (home / "ccsclip-prometheus").iterdir())
        assert len(folders) == 2, folders
        assert all(name.startswith("server-") for name in folders)

        assert second.stop() == 0
        assert second.survivors == []
        assert count(a.metrics(), "embed_texts") == 3  # the second's stop leaves it alone
        a.close()
        b.close()
    finally:
        for server in (second, first):
            if server is not None:
                tree = server.tree()
                server.stop()
                assert server.survivors == []
                assert not running(tree), server.log_tail()


def test_sigkill_of_the_server_leaves_no_worker(world, tmp_path):
    server = start_http(world, tmp_path, workers=2, name="killed")
    try:
        wait_ready(server, http_ready)
        tree = server.tree()
        assert len(tree) >= 3, tree  # bentoml serve and its two workers (at least)
        workers = [p for p in tree[1:] if os.getsid(p) != os.getsid(tree[0])]
        assert workers, "BentoML's workers run in sessions of their own"
        os.killpg(server.process.pid, signal.SIGKILL)  # what `kill -9 -PGID` does
        server.process.wait(10)
        # the workers notice their server is gone and stop (parent watch), freeing the port
        wait_for(
            lambda: not running(tree),
            timeout=60,
            what=f"the orphaned workers {tree} to exit",
        )
        assert port_free(server.ports["http"])
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.ports['http']}/readyz", timeout=2)
    finally:
        server.stop()


def test_folders_of_stopped_servers_are_pruned_and_running_ones_kept(tmp_path):
    """metrics_dir.prune: a folder whose server pid is gone (or reused: other start time) goes;
    a running server's folder, this one's and unrelated files stay."""
    import subprocess

    from ccsclip.service.metrics_dir import prune, server_folder

    base = tmp_path / "ccsclip-prometheus"
    mine = server_folder(base, os.getpid())
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = server_folder(base, running.pid)
        ended = subprocess.Popen([sys.executable, "-c", "pass"])
        ended.wait()
        gone = server_folder(base, ended.pid)
        reused = base / f"server-{running.pid}-1"  # the pid, but not that process's start time
        for folder in (mine, theirs, gone, reused, base / "not-a-server"):
            folder.mkdir(parents=True)
            (folder / "counter_1.db").write_bytes(b"x")
        removed = prune(base, keep=mine)
        assert sorted(removed) == sorted([gone, reused])
        assert mine.is_dir() and theirs.is_dir() and (base / "not-a-server").is_dir()
        assert not gone.exists() and not reused.exists()
    finally:
        running.kill()
        running.wait()
