"""The gallery engine without servers: backends against exact, the log, snapshots, two readers.

Fast checks of what the server tests (tests/test_galleries.py) rely on: hnsw's top-k equals
exact's at a generous ef on clustered data; a second LocalGallery on the same folder (another
process, in production) sees every write and follows compactions; a torn log tail is ignored by
readers and cut by the next writer; filters and metadata are validated with the field named.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ccsclip.engine.galleries import local, wal
from ccsclip.engine.galleries.base import SearchParams, check_filter, check_metadata, matches
from ccsclip.engine.galleries.exact import ExactBackend
from ccsclip.engine.galleries.hnsw import HnswBackend, HnswParams
from ccsclip.engine.galleries.meta import GalleryModel, GalleryProfile, LiveGalleryMeta
from ccsclip.errors import InvalidInputError, NotFoundError

DIM = 32


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM))
    data = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def meta(name: str, backend: str, params: dict | None = None) -> LiveGalleryMeta:
    return LiveGalleryMeta(
        name=name,
        uid=f"{name}-uid",
        created_at=0.0,
        backend=backend,
        params=params or {},
        model=GalleryModel(name="m", weights_sha256="w"),
        profile=GalleryProfile(name="p", sha256="s"),
        embed_dim=DIM,
        bundle_manifest_sha256="b",
    )


def test_gallery_modules_do_not_import_the_engine_or_torch():
    """Also the import order: usearch loaded before onnxruntime segfaults (hnsw.py guards it)."""
    code = (
        "import sys, ccsclip.engine.image_files, ccsclip.engine.galleries.store; "
        "assert 'ccsclip.engine.engine' not in sys.modules, 'import cycle'; "
        "import ccsclip.service.galleries, ccsclip.service.proto, "
        "ccsclip.engine.galleries.bulk, ccsclip.engine.galleries.milvus; "
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hnsw_top_k_equals_exact_and_survives_deletes_and_upserts():
    data = clustered(2000)
    ids = [f"i{i}" for i in range(len(data))]
    metadata = [{"c": i % 3} for i in range(len(data))]
    exact, hnsw = ExactBackend(DIM), HnswBackend(DIM, HnswParams(ef_search=256))
    for backend in (exact, hnsw):
        backend.upsert(ids, data, metadata)
        backend.delete(ids[:100])
        backend.upsert(ids[200:210], data[:10], [{"c": 9}] * 10)  # moved items
    assert exact.count() == hnsw.count() == 1900
    for q in clustered(20, seed=1):
        want = [h.id for h in exact.search(q, 10)]
        assert [h.id for h in hnsw.search(q, 10, None, SearchParams(ef=512))] == want
        spec = check_filter({"c": [1, 9]})
        want = [(h.id, h.metadata) for h in exact.search(q, 10, spec)]
        assert [(h.id, h.metadata) for h in hnsw.search(q, 10, spec)] == want
        assert all(matches(m, spec) for _, m in want)


def test_a_second_reader_follows_writes_and_compactions(tmp_path):
    m = meta("g", "hnsw")
    local.create_local(tmp_path, m)
    writer = local.LocalGallery(tmp_path / "g", m, compact_bytes=4096)
    reader = local.LocalGallery(tmp_path / "g", m, compact_bytes=4096)
    data = clustered(300)
    for start in range(0, 300, 10):
        writer.upsert(
            [f"i{j}" for j in range(start, start + 10)], data[start : start + 10], [{}] * 10
        )
        assert reader.count() == start + 10  # seen at once, through every compaction
    assert writer.generation >= 3 and reader.generation == writer.generation
    assert reader.delete(["i0", "i1", "nope"]) == (2, 298)
    assert writer.search(data[0], 1, None, None)[0].id != "i0"
    fresh = local.LocalGallery(tmp_path / "g", m)  # a restart: snapshot + log replay
    assert fresh.count() == 298 and fresh.seq == writer.seq
    writer.compact()
    assert local.LocalGallery(tmp_path / "g", m).last_write == writer.last_write  # kept
    assert sorted(p.name for p in (tmp_path / "g").glob("snap-*"))[0] != "snap-000001"  # pruned


def test_a_torn_log_tail_is_ignored_then_cut(tmp_path):
    m = meta("t", "exact")
    local.create_local(tmp_path, m)
    gallery = local.LocalGallery(tmp_path / "t", m)
    gallery.upsert(["a"], clustered(1), [{"k": "v"}])
    log = tmp_path / "t" / "wal-000000.log"
    good = log.stat().st_size
    with open(log, "ab") as handle:
        handle.write(wal.encode(wal.Record(2, "upsert", ["b"], [{}], clustered(1)))[:-5])
    assert local.LocalGallery(tmp_path / "t", m).count() == 1  # a reader stops before it
    gallery.upsert(["c"], clustered(1, seed=3), [{}])  # the writer cuts it, then appends
    assert log.stat().st_size > good
    assert [r.ids for r, _ in wal.read(log, 0, DIM)] == [["a"], ["c"]]


def test_a_dropped_gallery_is_not_found_by_an_open_reader(tmp_path):
    m = meta("d", "exact")
    local.create_local(tmp_path, m)
    gallery = local.LocalGallery(tmp_path / "d", m)
    (tmp_path / "d" / local.CURRENT).unlink()
    with pytest.raises(NotFoundError):
        gallery.count()


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ("red", "filter"),
        ({"a b": 1}, "filter"),
        ({"a": {"b": 1}}, "filter.a"),
        ({"a": []}, "filter.a"),
        ({"a": float("nan")}, "filter.a"),
    ],
)
def test_malformed_filters_name_the_field(spec, where):
    with pytest.raises(InvalidInputError, match=where.replace(".", r"\.")):
        check_filter(spec)


def test_metadata_is_flat():
    assert check_metadata({"a": 1, "b": "x", "c": True, "d": 0.5}) == {
        "a": 1,
        "b": "x",
        "c": True,
        "d": 0.5,
    }
    for bad in ({"a": [1]}, {"a": {"b": 1}}, {"1a": 1}, "x"):
        with pytest.raises(InvalidInputError, match="metadata"):
            check_metadata(bad)
    assert not matches({"a": 1}, {"a": [True]})  # True is not 1 in a filter


WRITER = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_gallery_backends import clustered, meta
from ccsclip.engine.galleries import local
m = meta("c", "hnsw")
g = local.LocalGallery(local.Path({folder!r}), m, compact_bytes=8192, clean=False)
data = clustered(400, seed=5)
for n in range(40):
    g.upsert([f"w{{n}}-{{j}}" for j in range(10)], data[10 * n : 10 * n + 10], [{{}}] * 10)
    print(n, flush=True)
"""


def test_crash_leftovers_are_removed_on_open_while_another_process_writes(tmp_path):
    """What a kill during compaction, create or drop leaves is removed (bounded disk), while
    a writer in another process keeps writing through compactions; nothing it wrote is lost."""
    from ccsclip.engine.galleries.check import check_root
    from ccsclip.engine.galleries.store import TRASH

    m = meta("c", "hnsw")
    folder = local.create_local(tmp_path, m)
    first = local.LocalGallery(folder, m)
    first.upsert(["a"], clustered(1), [{}])
    first.compact()  # generation 1: snap-000001, wal-000001.log
    planted = [
        folder / ".snap-000002.x1y2.tmp",  # a compaction killed while writing its snapshot
        folder / ".snap-000001.old",  # ... or while swapping it in
        folder / ".CURRENT.123.456.tmp",  # ... or while writing CURRENT
        folder / "snap-000007",  # a generation no CURRENT names
        tmp_path / f"{TRASH}c-0123",  # a drop killed before deleting the folder
        tmp_path / ".other.abcd.tmp",  # a create killed before its rename
    ]
    for path in planted:
        if path.name.startswith(".CURRENT"):
            path.write_text("{}")
        else:
            path.mkdir()
            (path / "big.bin").write_bytes(b"\0" * 4096)
    reports = {r.name: r for r in check_root(tmp_path)}
    assert len(reports["c"].problems) == 4 and len(reports[""].problems) == 2, reports
    tests = str(Path(__file__).parent)
    code = WRITER.format(tests=tests, folder=str(folder))
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline()  # it is writing
    reader = local.LocalGallery(folder, m)  # opening cleans, between two of its writes
    assert not any(p.exists() for p in planted[:4])
    from ccsclip.engine.galleries.store import GalleryStore

    GalleryStore(None, tmp_path)  # type: ignore[arg-type]  # opening a root cleans it
    assert not any(p.exists() for p in planted[4:])
    assert writer.wait(120) == 0
    assert reader.count() == 401 and local.LocalGallery(folder, m).count() == 401
    assert all(not r.problems for r in check_root(tmp_path))
    snapshots = sorted(p.name for p in folder.glob("snap-*"))
    assert len(snapshots) <= 2, snapshots  # only the current generation and the one before


def test_check_repairs_a_torn_tail_from_the_command_line(tmp_path):
    m = meta("t", "exact")
    folder = local.create_local(tmp_path, m)
    local.LocalGallery(folder, m).upsert(["a"], clustered(1), [{}])
    with open(folder / "wal-000000.log", "ab") as handle:
        handle.write(b"CGW1\x00\x10\x00\x00garbage")
    (folder / ".CURRENT.1.2.tmp").write_text("{}")
    ccsclip = [sys.executable, "-m", "ccsclip.cli", "gallery", "check", "--root", str(tmp_path)]
    found = subprocess.run(ccsclip, capture_output=True, text=True)
    assert found.returncode == 1 and "torn record" in found.stderr + found.stdout, found
    fixed = subprocess.run([*ccsclip, "--repair"], capture_output=True, text=True)
    assert fixed.returncode == 0, fixed
    again = subprocess.run(ccsclip, capture_output=True, text=True)
    assert again.returncode == 0 and "1 items ok" in again.stderr + again.stdout, again


def test_hnsw_churn_is_rebuilt_at_compaction_for_every_process(tmp_path):
    """Half the items deleted and re-added five times: the compaction past the threshold
    rebuilds the graph; memory and recall are a fresh build's, in the writer and in a reader
    that follows the log (it reloads the rebuilt snapshot)."""
    m = meta("churn", "hnsw", {"ef_search": 128})
    folder = local.create_local(tmp_path, m)
    writer = local.LocalGallery(folder, m, compact_bytes=1 << 40)
    reader = local.LocalGallery(folder, m, compact_bytes=1 << 40)
    data = clustered(2000)
    ids = [f"i{i}" for i in range(len(data))]
    writer.upsert(ids, data, [{}] * len(ids))
    for round_ in range(5):
        half = ids[round_ % 2 :: 2]
        writer.delete(half)
        rows = [int(i[1:]) for i in half]
        writer.upsert(half, data[rows], [{}] * len(half))
    assert reader.count() == 2000 and reader.backend.removed == 5000  # tombstones everywhere
    writer.compact()
    fresh = HnswBackend(DIM, HnswParams(ef_search=128))
    fresh.upsert(ids, data, [{}] * len(ids))
    assert writer.backend.removed == 0
    assert writer.backend.info()["bytes"] <= 1.1 * fresh.info()["bytes"]
    assert reader.count() == 2000 and reader.backend.removed == 0  # reloaded, not tailed
    exact = ExactBackend(DIM)
    exact.upsert(ids, data, [{}] * len(ids))
    found = 0
    for q in clustered(50, seed=7):
        want = {h.id for h in exact.search(q, 10)}
        found += len(want & {h.id for h in reader.search(q, 10, None, None)})
    assert found / 500 >= 0.99
