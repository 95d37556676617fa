"""`ccsclip index` writes the one gallery format; shipped galleries are read-only and own their
names; folders of the old index format are converted on open (or refused with the command).

In-process with a real bundle and engine (ccsclip-tiny, random weights): the exact reference is
the engine's own embeddings of the indexed images.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ccsclip.engine.engine import Engine
from ccsclip.engine.galleries import local
from ccsclip.engine.galleries.bulk import index_into, open_or_create
from ccsclip.engine.galleries.store import GalleryStore
from ccsclip.engine.image_files import list_images, read_image
from ccsclip.errors import ConflictError, IntegrityError, InvalidInputError, ReadOnlyError
from ccsclip.fileio import sha256_file

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import build_test_bundle  # noqa: E402

PRUNED = "pruned"


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory) -> Path:
    return build_test_bundle(tiny, tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def engine(bundle) -> Engine:
    return Engine.load(bundle, intra_op_threads=1, inter_op_threads=1)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """The world's gallery images, one nested, plus a broken PNG (and the CSV, ignored)."""
    from ccsclip.organism.probes import generate_all

    world = tmp_path_factory.mktemp("world")
    generate_all(world, 0, n_per_class=2, n_per_cell=1, n_gallery=20, n_calibration=1)
    root = Path(shutil.copytree(world / "gallery", tmp_path_factory.mktemp("imgs") / "images"))
    (root / "nested").mkdir()
    shutil.move(root / "g00019.png", root / "nested" / "g00019.png")
    (root / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def reference(engine, image_dir) -> dict[str, np.ndarray]:
    files = [p for p in list_images(image_dir) if p.name != "broken.png"]
    vectors = engine.embed_images([read_image(p) for p in files], PRUNED)
    return {p.relative_to(image_dir).as_posix(): v for p, v in zip(files, vectors, strict=True)}


def exact_ids(reference: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    ids = list(reference)
    scores = np.stack(list(reference.values())) @ query
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_index_command_writes_a_gallery_of_the_one_format(bundle, engine, image_dir, reference):
    from typer.testing import CliRunner

    from ccsclip.cli import app

    root = image_dir.parent / "root"
    args = ["index", "--bundle", str(bundle), "--images", str(image_dir), "--root", str(root)]
    args += ["--name", "photos", "--backend", "exact", "--threads", "1"]
    done = CliRunner().invoke(app, [*args, "--profile", PRUNED])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "added 20" in said and "broken.png" in said, said
    gallery = GalleryStore(engine, root).get("photos")
    assert gallery.meta.profile.name == PRUNED and gallery.count() == 20
    assert gallery.meta.profile.sha256 == engine.profile_entry(PRUNED).sha256
    # one id convention: the path below --images, extension included
    assert gallery.contains(["nested/g00019.png", "g00000.png", "g00000"]) == {
        "nested/g00019.png",
        "g00000.png",
    }
    for text in ("a red circle", "a blue square"):
        query = engine.embed_texts([text])[0]
        hits = gallery.search(query, 5, None, None)
        assert [h.id for h in hits] == exact_ids(reference, query, 5)
    again = CliRunner().invoke(app, [*args, "--profile", PRUNED])  # resumable: nothing to add
    assert again.exit_code == 0 and "already there 20" in " ".join(again.output.split())
    bad = CliRunner().invoke(app, [*args[:-4], "--name", "other", "--profile", "nope"])
    assert bad.exit_code == 2 and "unknown profile 'nope'" in bad.output
    bad = CliRunner().invoke(app, ["index", "--bundle", str(bundle), "--images", str(image_dir)])
    assert bad.exit_code == 2 and "--root" in bad.output


def _index(engine, root: Path, name: str, images: Path) -> Path:
    store = GalleryStore(engine, root)
    index_into(engine, open_or_create(store, name, PRUNED, "hnsw", {}), images)
    return root / name


def test_shipped_galleries_are_read_only_and_own_their_names(engine, image_dir, tmp_path):
    shipped = _index(engine, tmp_path / "bundle-galleries", "shapes", image_dir)
    store = GalleryStore(engine, tmp_path / "live", shipped=[shipped])
    gallery = store.get("shapes")
    assert gallery.count() == 20 and "shapes" in store.names()
    vector = engine.embed_texts(["x"])
    with pytest.raises(ReadOnlyError, match="shipped read-only.*ccsclip gallery copy"):
        gallery.upsert(["new"], vector, [{}])
    with pytest.raises(ReadOnlyError):
        gallery.delete(["g00000.png"])
    with pytest.raises(ReadOnlyError):
        store.drop("shapes")
    with pytest.raises(ConflictError, match="shipped read-only"):
        store.create("shapes", PRUNED, "exact")  # one namespace: a clash is impossible
    assert gallery.count() == 20 and not (tmp_path / "live" / "shapes").exists()
    other = _index(engine, tmp_path / "elsewhere", "shapes", image_dir)
    with pytest.raises(InvalidInputError, match="two galleries are named 'shapes'"):
        GalleryStore(engine, None, shipped=[shipped, other])


def _old_format(engine, image_dir: Path, folder: Path) -> None:
    """A folder as the old `ccsclip index --out` wrote it (ccsclip/gallery/v1)."""
    files = [p for p in list_images(image_dir) if p.name != "broken.png"]
    ids = [p.relative_to(image_dir).as_posix() for p in files]
    folder.mkdir(parents=True)
    np.save(folder / "embeddings.npy", engine.embed_images([read_image(p) for p in files], PRUNED))
    (folder / "ids.json").write_text(json.dumps(ids))
    model = engine.manifest.model
    meta = {
        "schema": "ccsclip/gallery/v1",
        "created_by": "ccsclip.engine.gallery",
        "bundle_manifest_sha256": engine.manifest_sha256,
        "model": {"name": model.name, "weights_sha256": model.weights_sha256},
        "profile": {"name": PRUNED, "sha256": engine.profile_entry(PRUNED).sha256},
        "metric": "cosine",
        "embed_dim": engine.embed_dim,
        "count": len(ids),
        "embeddings": {"file": "embeddings.npy", "sha256": sha256_file(folder / "embeddings.npy")},
        "ids": {"file": "ids.json", "sha256": sha256_file(folder / "ids.json")},
        "source": str(image_dir),
        "skipped": [],
    }
    (folder / "gallery.json").write_text(json.dumps(meta))


def test_old_index_folders_are_converted_on_open(engine, image_dir, reference, tmp_path):
    old = tmp_path / "galleries" / "legacy"
    _old_format(engine, image_dir, old)
    store = GalleryStore(engine, None, shipped=[old])
    gallery = store.get("legacy")
    assert gallery.meta.backend == "exact" and gallery.count() == 20
    assert not (old / "embeddings.npy").exists() and (old / local.CURRENT).is_file()
    query = engine.embed_texts(["a green triangle"])[0]
    assert [h.id for h in gallery.search(query, 4, None, None)] == exact_ids(reference, query, 4)
    assert sorted(p.name for p in old.parent.iterdir()) == [".lock", "legacy"]  # no temp left
    assert GalleryStore(engine, None, shipped=[old]).get("legacy").count() == 20  # idempotent

    tampered = tmp_path / "tampered" / "legacy2"
    _old_format(engine, image_dir, tampered)
    (tampered / "ids.json").write_text(json.dumps(["x"] * 20))
    refused = GalleryStore(engine, None, shipped=[tampered])
    assert "changed since it was indexed" in refused.refused["legacy2"]
    assert (tampered / "embeddings.npy").exists()  # left as it was
    if os.geteuid() != 0:  # root may write anywhere: the read-only case cannot happen
        locked = tmp_path / "ro" / "legacy3"
        _old_format(engine, image_dir, locked)
        os.chmod(locked, 0o555)
        os.chmod(locked.parent, 0o555)
        try:
            store = GalleryStore(engine, None, shipped=[locked])
            assert f"ccsclip gallery migrate {locked}" in store.refused["legacy3"]
        finally:
            os.chmod(locked.parent, 0o755)
            os.chmod(locked, 0o755)


def test_a_tampered_snapshot_is_refused(engine, image_dir, tmp_path):
    folder = _index(engine, tmp_path, "t", image_dir)
    snapshot = next(folder.glob("snap-*"))
    target = snapshot / "keys.json"
    target.write_text(target.read_text().replace("g00001.png", "g00001.jpg"))
    store = GalleryStore(engine, tmp_path)
    with pytest.raises(IntegrityError, match="keys.json is missing or altered"):
        store.get("t")


def test_one_image_lister_for_every_reader(tmp_path):
    """Galleries, offline commands and probes share suffixes and order (relative posix path)."""
    for rel in ("b/2.PNG", "b/1.gif", "a.tif", "b/notes.txt", "c/d/3.jpeg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    listed = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert listed == ["a.tif", "b/1.gif", "b/2.PNG", "c/d/3.jpeg"]
    flat = list_images(tmp_path / "b", recursive=False)
    assert [p.name for p in flat] == ["1.gif", "2.PNG"]
    assert list_images(tmp_path / "c", recursive=False, allow_empty=True) == []
    with pytest.raises(InvalidInputError, match="no images"):
        list_images(tmp_path / "c", recursive=False)
