"""Stop a server and every process it started, so no worker outlives it.

`bentoml serve` starts its workers in sessions (process groups) of their own: a signal to the
server's process group misses them. The tree is listed before the signal (once the server is
gone its workers are re-parented and cannot be found from it), the server gets SIGTERM (its own
graceful stop, which stops its workers), and whatever of the listed tree still runs after
`timeout` gets SIGKILL.

    python -m ccsclip.service.proctree PID [TIMEOUT_S]
"""

from __future__ import annotations

import signal
import sys


def tree(pid: int) -> list:
    """The process and all its descendants (psutil.Process objects); [] when it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def stop_tree(pid: int, timeout: float = 30.0) -> list[int]:
    """SIGTERM `pid`, wait up to `timeout` for it and its descendants; SIGKILL the rest.

    Returns the pids that had to be killed (empty when the graceful stop sufficed).
    """
    import psutil

    processes = tree(pid)
    if not processes:
        return []
    try:
        processes[0].send_signal(signal.SIGTERM)
    except psutil.Error:
        pass
    return reap(processes, timeout)


def reap(processes: list, timeout: float) -> list[int]:
    """Wait up to `timeout` for the processes to end, SIGKILL the rest; the killed pids."""
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
    return [p.pid for p in alive]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2 or not argv[0].isdigit():
        print("usage: python -m ccsclip.service.proctree PID [TIMEOUT_S]", file=sys.stderr)
        return 2
    killed = stop_tree(int(argv[0]), float(argv[1]) if len(argv) > 1 else 30.0)
    if killed:
        print(f"killed after the timeout: {killed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
