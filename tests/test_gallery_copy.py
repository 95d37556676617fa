"""`ccsclip gallery copy`: every item (id, vector, metadata) arrives, nothing is embedded again,
an interrupted copy resumes, and the copy answers searches as the source does; embedded to
embedded and embedded to Milvus (a `milvus-lite server`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gallery_fixtures import start_milvus  # noqa: E402
from test_gallery_backends import clustered, meta  # noqa: E402

from ccsclip.engine.galleries import local  # noqa: E402
from ccsclip.engine.galleries.copy import copy_gallery, open_store  # noqa: E402

N = 600


@pytest.fixture()
def source(tmp_path):
    m = meta("src", "hnsw", {"ef_search": 256})
    folder = local.create_local(tmp_path / "a", m)
    gallery = local.LocalGallery(folder, m)
    data = clustered(N)
    ids = [f"item-{i}.png" for i in range(N)]
    gallery.upsert(ids, data, [{"n": i, "even": i % 2 == 0} for i in range(N)])
    gallery.delete(ids[:10])
    return gallery


def same_items(a, b) -> None:
    got = {i: (v, m) for ids, vs, ms in b.items(100) for i, v, m in zip(ids, vs, ms, strict=True)}
    want = {i: (v, m) for ids, vs, ms in a.items(100) for i, v, m in zip(ids, vs, ms, strict=True)}
    assert got.keys() == want.keys() and len(got) == N - 10
    for item, (vector, metadata) in want.items():
        assert got[item][1] == metadata
        np.testing.assert_allclose(got[item][0], vector, atol=1e-5)


def test_copy_into_another_folder_and_backend_resumes(source, tmp_path):
    store, name = open_store(str(tmp_path / "b" / "dst"))

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_gallery(source, store, name, "exact", batch=100, progress=stop)
    assert store.get(name).count() == 100
    cli = [sys.executable, "-m", "ccsclip.cli", "gallery", "copy", str(source.dir)]
    done = subprocess.run(
        [*cli, str(tmp_path / "b" / "dst"), "--backend", "exact"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert "copied 490, already there 100" in said, said
    target = open_store(str(tmp_path / "b" / "dst"))[0].get("dst")
    assert target.meta.backend == "exact" and target.meta.profile == source.meta.profile
    same_items(source, target)
    for q in clustered(10, seed=3):
        want = [h.id for h in source.search(q, 10, {"even": [True]}, None)]
        assert [h.id for h in target.search(q, 10, {"even": [True]}, None)] == want


def test_copy_into_milvus(source, tmp_path):
    process, uri = start_milvus(tmp_path)
    try:
        store, name = open_store(f"milvus+{uri}/copied")
        result = copy_gallery(source, store, name, "milvus", {}, batch=128)
        assert (result.copied, result.already) == (N - 10, 0)
        target = store.get(name)
        assert target.count() == N - 10 and target.meta.uid != source.meta.uid
        same_items(source, target)
        again = copy_gallery(source, store, name, "milvus", {}, batch=128)
        assert (again.copied, again.already) == (0, N - 10)
    finally:
        process.terminate()
        process.wait(30)
