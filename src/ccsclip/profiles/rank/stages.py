"""Wall and CPU time per stage of a long command, for the summary `ccsclip rank` prints.

A user of a 15-minute job wants to know where it went. CPU time next to wall time tells a busy
machine (wall >> CPU) from a slow stage (wall ~ CPU x threads).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ccsclip.fileio import atomic_write_json

STAGES_FILE = "stages.json"


@dataclass
class Stage:
    name: str
    wall_s: float
    cpu_s: float
    note: str = ""


@dataclass
class StageTimes:
    stages: list[Stage] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)

    @contextlib.contextmanager
    def stage(self, name: str, note: str = "") -> Iterator[Stage]:
        """Time the block; the yielded Stage's note may be set inside (e.g. 'cached')."""
        entry = Stage(name, 0.0, 0.0, note)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield entry
        finally:
            entry.wall_s = time.perf_counter() - wall
            entry.cpu_s = time.process_time() - cpu
            self.stages.append(entry)

    @property
    def total_s(self) -> float:
        return time.perf_counter() - self._started

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_wall_s": round(self.total_s, 3),
            "cpu_count": os.cpu_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "threads": _torch_threads(),
            "stages": [
                {**asdict(s), "wall_s": round(s.wall_s, 3), "cpu_s": round(s.cpu_s, 3)}
                for s in self.stages
            ],
        }

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / STAGES_FILE
        atomic_write_json(path, self.to_dict())
        return path

    def table(self, title: str = "stages"):
        """A rich Table: stage, wall, CPU, share of the total, note."""
        from rich.table import Table

        total = self.total_s
        view = Table(title=f"{title}: {_clock(total)} in all")
        for column in ("stage", "wall", "CPU", "share"):
            view.add_column(column, justify="left" if column == "stage" else "right")
        view.add_column("note")
        for s in self.stages:
            share = f"{100 * s.wall_s / total:.0f}%" if total > 0 else ""
            view.add_row(s.name, _clock(s.wall_s), _clock(s.cpu_s), share, s.note)
        return view


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:04.1f} s"


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return None if torch is None else torch.get_num_threads()
