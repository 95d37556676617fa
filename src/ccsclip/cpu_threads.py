"""Thread settings of the offline commands: OpenMP's wait policy and `--threads`.

Why: torch's CPU kernels run in OpenMP parallel regions. With libgomp's default wait policy a
thread that reaches a barrier spins (up to 300,000 iterations) before it sleeps, so on a machine
where another process holds a core every region waits for the scheduler to hand that core back:
measured on 2 cores with one busy, one TextSpan head took 0.7-1.3 s instead of 0.15 s. PASSIVE
makes waiting threads sleep at once. libgomp reads the policy once, when torch loads it, so the
CLI sets it before anything imports torch, and never over a value the user set.

Torch-free on purpose: it must run before torch is imported.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

WAIT_POLICY = "OMP_WAIT_POLICY"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_threads: int | None = None


def prefer_passive_wait() -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user set it; return the value in force.

    Effective only before torch is imported (libgomp reads it at load); a warning-free no-op after.
    """
    return os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def set_threads(threads: int | None) -> int | None:
    """Use `threads` CPU threads for torch (intra- and inter-op) and onnxruntime sessions.

    The OMP/MKL variables are set first so that a torch loaded afterwards (and any child process)
    starts with that many threads; then torch is told directly. None leaves the defaults.
    """
    global _threads
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        from ccsclip.errors import InvalidInputError

        raise InvalidInputError(f"--threads must be a positive integer, got {threads!r}")
    _threads = threads
    for name in _THREAD_VARS:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already fixed once inter-op work has started: intra-op still applies
        pass
    return threads


def configured_threads() -> int | None:
    """The `--threads` value in force (None: library defaults), for onnxruntime sessions."""
    return _threads


def _threads_callback(value: int | None) -> int | None:
    """Applied while typer parses the command line, before the command body runs."""
    return set_threads(value)


ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        callback=_threads_callback,
        help="CPU threads for torch and onnxruntime (default: all cores; see README, Models)",
    ),
]
