"""`ccsclip gallery check`: what is wrong with the embedded galleries of a root, and the repair.

Per gallery: the snapshot named in CURRENT loads with every file's sha256 matching, the log
replays up to its end (a torn tail, as a crash in the middle of an append leaves, is reported),
and the leftovers of interrupted compactions (`local.leftovers`). For the root: folders of
interrupted creates and drops. `repair` removes the leftovers and cuts torn tails, each under the
lock its writers take, so it is safe while servers are running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ccsclip.engine.galleries import local, wal
from ccsclip.engine.galleries.meta import LiveGalleryMeta
from ccsclip.engine.galleries.store import ROOT_LOCK, TRASH
from ccsclip.errors import CcsclipError


@dataclass
class Report:
    name: str
    count: int | None = None
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


def _root_leftovers(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.iterdir()
        if p.name.startswith(TRASH)
        or (p.name.startswith(".") and p.name.endswith((".tmp", ".old")))
    )


def check_root(root: Path, repair: bool = False) -> list[Report]:
    """One report for the root itself (name "") and one per gallery folder."""
    report = Report("")
    with local.file_lock(root / ROOT_LOCK, wait=repair) as taken:
        for path in _root_leftovers(root):
            report.problems.append(f"leftover {path.name}")
            if repair and taken:
                local.remove(path)
                report.repaired.append(f"removed {path.name}")
    reports = [report]
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        reports.append(check_gallery(folder, repair))
    return reports


def check_gallery(folder: Path, repair: bool = False) -> Report:
    report = Report(folder.name)
    try:
        meta = LiveGalleryMeta.model_validate_json((folder / local.META).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        report.problems.append(f"{local.META} cannot be read: {exc}")
        return report
    try:
        with local.file_lock(folder / local.LOCK, create=False, wait=repair) as taken:
            gallery = local.LocalGallery(folder, meta, clean=False)  # we hold its lock
            report.count = gallery.count()
            assert gallery.wal is not None
            size = gallery.wal.stat().st_size if gallery.wal.exists() else 0
            if size != gallery.offset:
                report.problems.append(
                    f"{gallery.wal.name}: {size - gallery.offset} bytes of a torn record at the end"
                )
                if repair and taken:
                    wal.truncate(gallery.wal, meta.embed_dim)
                    report.repaired.append(f"cut the torn tail of {gallery.wal.name}")
            for path in local.leftovers(folder, gallery.generation):
                report.problems.append(f"leftover {path.name}")
                if repair and taken:
                    local.remove(path)
                    report.repaired.append(f"removed {path.name}")
            gallery.close()
    except FileNotFoundError as exc:
        report.problems.append(f"incomplete gallery folder: {exc.filename} is missing")
    except CcsclipError as exc:
        report.problems.append(str(exc))
    return report
