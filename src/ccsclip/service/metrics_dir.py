"""One Prometheus multiprocess folder per `bentoml serve` instance, shared by its workers only.

BentoML gives every server the same folder, `$BENTOML_HOME/prometheus_multiproc_dir`, and empties
it whenever a `bentoml serve` starts (`ensure_prometheus_dir`). Two servers on one host with one
BENTOML_HOME (a local A/B, the demo beside the tests, a user typing `bentoml serve` twice) then
wipe each other's series, or merge them: the first server's `/metrics` reports the second's
counters as its own. The remedy here: each worker, before any metric exists, points
PROMETHEUS_MULTIPROC_DIR at `<BENTOML_HOME>/ccsclip-prometheus/server-<pid>-<start>`, where pid
and start time are those of its `bentoml serve` process (the workers' parent), so the workers of
one server share a folder and no other server ever sees it. prometheus_client reads the variable
when each metric file is opened and BentoML's `/metrics` reads it at every scrape, so both follow.

Folders of servers that no longer run are removed when a worker starts (the folder of a server
killed with SIGKILL stays until then; it is a few MB at most).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
FOLDER = "ccsclip-prometheus"
_NAME = re.compile(r"^server-(\d+)-(\d+)$")


def _start_ticks(pid: int) -> int | None:
    """A process's start time (centiseconds since the epoch), None when it does not run."""
    import psutil

    try:
        return int(psutil.Process(pid).create_time() * 100)
    except (psutil.Error, OSError):
        return None


def server_folder(base: Path, server_pid: int) -> Path:
    """The folder of the server whose `bentoml serve` process is `server_pid`."""
    ticks = _start_ticks(server_pid)
    return base / f"server-{server_pid}-{ticks if ticks is not None else 0}"


def prune(base: Path, keep: Path) -> list[Path]:
    """Remove the folders of servers that no longer run (pid gone or reused); returns them."""
    removed = []
    if not base.is_dir():
        return removed
    for child in base.iterdir():
        match = _NAME.match(child.name)
        if child == keep or match is None:
            continue
        pid, ticks = int(match[1]), int(match[2])
        if _start_ticks(pid) == ticks:
            continue  # that server still runs
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


def isolate(worker_index: int | None) -> Path | None:
    """In a BentoML worker: switch PROMETHEUS_MULTIPROC_DIR to this server's own folder.

    Call before any prometheus metric is created (the service module's import). Outside a
    BentoML worker (in-process service, gRPC server, tests) it does nothing and returns None.
    """
    given = os.environ.get(ENV)
    if worker_index is None or not given:
        return None
    given_path = Path(given)
    if given_path.parent.name == FOLDER:
        return given_path  # already isolated (a worker restarted with our environment)
    base = given_path.parent / FOLDER
    folder = server_folder(base, os.getppid())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # keep BentoML's shared folder rather than not serving at all
        log.warning(
            "cannot create %s (%s): metrics stay in %s, shared by every server", folder, exc, given
        )
        return None
    os.environ[ENV] = str(folder)
    removed = prune(base, folder)
    if removed:
        log.info("removed Prometheus folders of stopped servers: %s", [p.name for p in removed])
    return folder
