"""A BentoML worker ends when its `bentoml serve` process is gone.

BentoML's workers run in sessions of their own, so a SIGKILL of `bentoml serve` (or of its
process group) leaves them running, still bound to the port: the next start then fails with
"address already in use" and the orphan keeps answering with a stale engine. Each worker watches
its parent; when the parent changes (it died and the worker was re-parented), the worker sends
itself SIGTERM (BentoML's own graceful stop) and, if still alive after `grace_s`, exits hard.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)


def _watch(parent: int, period_s: float, grace_s: float, stop: threading.Event) -> None:
    while not stop.wait(period_s):
        if os.getppid() != parent:
            log.warning("the bentoml serve process %d is gone: this worker stops", parent)
            os.kill(os.getpid(), signal.SIGTERM)
            if not stop.wait(grace_s):
                os._exit(1)
            return


def watch_parent(
    worker_index: int | None, period_s: float = 1.0, grace_s: float = 10.0
) -> threading.Event | None:
    """In a BentoML worker, start the watch (a daemon thread); set the event to end it."""
    if worker_index is None:
        return None
    stop = threading.Event()
    thread = threading.Thread(
        target=_watch,
        args=(os.getppid(), period_s, grace_s, stop),
        name="ccsclip-parent-watch",
        daemon=True,
    )
    thread.start()
    return stop
