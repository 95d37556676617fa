"""Load shedding: at most N calls in flight per process; the next one is refused at once.

A refused call costs nothing (no queueing, no timeout): the client or the load balancer retries
elsewhere, and the HorizontalPodAutoscaler sees the CPU the admitted calls use. Health, readiness
and metrics are never counted, so an overloaded process stays ready and observable.
"""

from __future__ import annotations

import threading

RETRY_AFTER_S = 1


class ConcurrencyLimit:
    """A non-blocking counting gate; `limit` 0 means unlimited. Thread-safe (gRPC handlers run
    on a thread pool; the HTTP middleware on one event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self.limit and self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def message(self) -> str:
        return (
            f"the server is at its limit of {self.limit} concurrent calls per process; retry "
            "shortly (or on another replica)"
        )


def check_grpc_limit(limit: int, workers: int) -> None:
    """The gRPC limit must leave a handler thread free for health checks and refusals."""
    if limit >= workers:
        raise ValueError(
            f"CCSCLIP_GRPC_MAX_CONCURRENCY ({limit}) must be below CCSCLIP_GRPC_WORKERS "
            f"({workers}): raise the workers or lower the limit (0 turns shedding off)"
        )
