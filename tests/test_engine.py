"""The torch-free engine against the torch model it was exported from: embeddings, zero-shot,
profiles and integrity, text cache, galleries, probes, the `index` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccsclip.engine.engine import Engine
from ccsclip.engine.image_files import read_image
from ccsclip.engine.probes import prepare_probe, run_probe
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import DEFAULT, PRUNED_HEADS, build_test_bundle  # noqa: E402

PRUNED = "pruned"
TOL = 1e-4


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory) -> Path:
    return build_test_bundle(tiny, tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def engine(bundle) -> Engine:
    return Engine.load(bundle, intra_op_threads=1, inter_op_threads=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from ccsclip.organism.probes import generate_all

    root = tmp_path_factory.mktemp("engine-world")
    generate_all(root, 0, n_per_class=4, n_per_cell=2, n_gallery=20, n_calibration=2)
    return root


@pytest.fixture(scope="module")
def pictures(world) -> list[Image.Image]:
    """Gallery images plus two odd ones (another size and aspect, a greyscale one)."""
    images = [read_image(p) for p in sorted((world / "gallery").glob("*.png"))[:6]]
    rng = np.random.default_rng(3)
    images.append(Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)))
    images.append(Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).convert("RGB"))
    return images


def _torch_images(tiny, images, heads=None) -> np.ndarray:
    from ccsclip.heads import Ablation, ablated

    batch = torch.stack([tiny.preprocess(image) for image in images])
    with torch.no_grad():
        if heads:
            with ablated(tiny.model, Ablation.of(heads, "zero")):
                return tiny.model.encode_image(batch, normalize=True).numpy()
        return tiny.model.encode_image(batch, normalize=True).numpy()


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def _rewrite_manifest(root: Path, edit) -> None:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------- no torch


def test_engine_modules_never_import_torch(bundle, world):
    code = textwrap.dedent(
        f"""
        import json, sys
        from PIL import Image
        import ccsclip.engine.cli
        from ccsclip.engine.engine import Engine
        import ccsclip.engine.galleries.store
        from ccsclip.engine.probes import run_probe
        engine = Engine.load({str(bundle)!r}, intra_op_threads=1)
        image = Image.open({str(world / "gallery" / "g00000.png")!r})
        probs = engine.probabilities(
            engine.embed_images([image]), engine.class_embeddings(["circle", "square"])
        )
        top = probs.tolist()
        result = run_probe(engine, {str(world / "accuracy-shape")!r})
        bad = sorted(m for m in sys.modules if m.split(".")[0] in
                     ("torch", "open_clip", "torchvision"))
        print(json.dumps({{"top": top, "accuracy": result["accuracy"], "bad": bad}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bad"] == []
    assert sum(report["top"][0]) == pytest.approx(1.0) and 0 <= report["accuracy"] <= 1


# --------------------------------------------------------------------------- parity with torch


def test_image_embeddings_match_torch_for_both_profiles(engine, tiny, pictures):
    for profile, heads in ((DEFAULT, None), (PRUNED, PRUNED_HEADS)):
        got = engine.embed_images(pictures, profile)
        assert got.dtype == np.float32 and got.shape == (len(pictures), engine.embed_dim)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, _torch_images(tiny, pictures, heads), atol=TOL)
    baseline, pruned = engine.embed_images(pictures), engine.embed_images(pictures, PRUNED)
    assert np.abs(baseline - pruned).max() > 1e-2  # pruning changes the image tower


def test_text_embeddings_match_torch(engine, tiny):
    texts = ["a photo of a red circle.", "", "CROSS", " ".join(["a long caption"] * 20)]
    with torch.no_grad():
        expected = tiny.model.encode_text(tiny.tokenizer(texts), normalize=True).numpy()
    got = engine.embed_texts(texts)
    assert got.shape == (4, engine.embed_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=TOL)
    assert engine.embed_texts([]).shape == (0, engine.embed_dim)
    with pytest.raises(InvalidInputError, match="texts\\[1\\]"):
        engine.embed_texts(["ok", 3])


def test_zero_shot_probabilities_match_torch_softmax(engine, tiny, pictures):
    """What the service's zero-shot computes from: class embeddings and softmax probabilities."""
    from ccsclip.zeroshot import class_embeddings

    labels = ["circle", "square", "triangle", "red cross"]
    templates = ["a {}", "a photo of a {}."]
    with torch.no_grad():
        classes = class_embeddings(tiny.model, tiny.tokenizer, labels, templates).numpy()
    got_classes = engine.class_embeddings(labels, templates)
    np.testing.assert_allclose(got_classes, classes, atol=TOL)
    probs = engine.probabilities(engine.embed_images(pictures, PRUNED), got_classes)
    images = _torch_images(tiny, pictures, PRUNED_HEADS)
    logits = float(tiny.model.logit_scale.detach().exp()) * images @ classes.T
    expected = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    assert probs.shape == (len(pictures), len(labels)) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(probs, expected, atol=TOL)
    # default templates are the bundle's ('a photo of a {}.')
    np.testing.assert_array_equal(
        engine.class_embeddings(labels), engine.class_embeddings(labels, ["a photo of a {}."])
    )


def test_class_embeddings_refuse_bad_templates_and_labels(engine):
    with pytest.raises(InvalidInputError, match="exactly one"):
        engine.class_embeddings(["a", "b"], ["no slot"])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        engine.class_embeddings([])


# --------------------------------------------------------------------------- profiles, integrity


def test_profiles_and_unknown_profile(engine):
    infos = {info.name: info for info in engine.profiles()}
    assert set(infos) == {DEFAULT, PRUNED}
    assert infos[DEFAULT].default and not infos[PRUNED].default
    assert infos[PRUNED].heads_removed == ["L2H0", "L2H1"] and infos[DEFAULT].heads_removed == []
    assert infos[PRUNED].flops_per_image < infos[DEFAULT].flops_per_image
    assert all(info.available and info.reason is None for info in infos.values())
    assert engine.resolve_profile(None) == DEFAULT and engine.resolve_profile(PRUNED) == PRUNED
    with pytest.raises(NotFoundError, match=r"'nope'.*baseline.*pruned"):
        engine.resolve_profile("nope")
    assert engine.manifest.model.name == "ccsclip-tiny"
    assert engine.available_profiles() == [DEFAULT, PRUNED]


def test_tampered_profile_is_unavailable_and_tampered_default_stops_start(bundle, tmp_path):
    root = _copy(bundle, tmp_path)
    with open(root / "image-pruned.onnx", "ab") as handle:
        handle.write(b"\0")
    engine = Engine.load(root, intra_op_threads=1)
    info = {i.name: i for i in engine.profiles()}[PRUNED]
    assert not info.available and "sha256" in info.reason
    with pytest.raises(NotFoundError, match="unavailable"):
        engine.resolve_profile(PRUNED)
    assert engine.available_profiles() == [DEFAULT]
    (root / "image-pruned.onnx").unlink()
    engine = Engine.load(root, intra_op_threads=1)
    assert "missing" in {i.name: i for i in engine.profiles()}[PRUNED].reason

    with open(root / "image-baseline.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(IntegrityError, match="default profile 'baseline'"):
        Engine.load(root, intra_op_threads=1)
    shutil.copy(bundle / "image-pruned.onnx", root / "image-pruned.onnx")
    # an A/B deployment can still serve the other profile as its default
    assert Engine.load(root, default_profile=PRUNED).resolve_profile(None) == PRUNED
    lenient = Engine.load(root, require_default=False)
    with pytest.raises(NotFoundError, match="default profile 'baseline' is unavailable"):
        lenient.resolve_profile(None)
    with pytest.raises(NotFoundError, match="'nope'"):
        Engine.load(root, default_profile="nope")


def test_file_of_another_profile_is_refused(bundle, tmp_path):
    """A profile file swapped for another's, with the manifest hash edited to match."""
    root = _copy(bundle, tmp_path)
    shutil.copy(root / "image-baseline.onnx", root / "image-pruned.onnx")

    def edit(data):
        data["profiles"][PRUNED]["sha256"] = data["profiles"][DEFAULT]["sha256"]

    _rewrite_manifest(root, edit)
    engine = Engine.load(root, intra_op_threads=1)
    info = {i.name: i for i in engine.profiles()}[PRUNED]
    assert not info.available and "exported for profile 'baseline'" in info.reason


def test_file_of_another_model_is_refused(bundle, tmp_path):
    """Metadata names other weights (a file from another model's bundle, hash edited)."""
    import onnx

    from ccsclip.fileio import sha256_file

    root = _copy(bundle, tmp_path)
    proto = onnx.load(str(root / "image-pruned.onnx"))
    for entry in proto.metadata_props:
        if entry.key == "weights_sha256":
            entry.value = "f" * 64
    onnx.save_model(proto, str(root / "image-pruned.onnx"))
    digest = sha256_file(root / "image-pruned.onnx")
    _rewrite_manifest(root, lambda data: data["profiles"][PRUNED].update(sha256=digest))
    info = {i.name: i for i in Engine.load(root).profiles()}[PRUNED]
    assert not info.available and "weights ffffffffffff" in info.reason


def test_tampered_text_tower_stops_start(bundle, tmp_path):
    root = _copy(bundle, tmp_path)
    with open(root / "text.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(IntegrityError, match="text.onnx"):
        Engine.load(root)


# --------------------------------------------------------------------------- text cache


def test_text_cache_counts_hits_and_evicts_least_recent(bundle):
    engine = Engine.load(bundle, intra_op_threads=1, text_cache_size=2)
    first = engine.embed_texts(["red", "blue"])
    assert engine.text_cache_info() == {"hits": 0, "misses": 2, "size": 2, "capacity": 2}
    again = engine.embed_texts(["red"])
    np.testing.assert_array_equal(again[0], first[0])
    assert engine.text_cache_info()["hits"] == 1
    engine.embed_texts(["green"])  # evicts 'blue', the least recently used
    engine.embed_texts(["red", "blue"])
    info = engine.text_cache_info()
    assert (info["hits"], info["misses"], info["size"]) == (2, 4, 2)
    out = engine.embed_texts(["pink", "pink"])  # one miss computed once, both rows filled
    np.testing.assert_array_equal(out[0], out[1])
    out[0] += 1  # callers get copies: the cache is not corrupted
    np.testing.assert_array_equal(engine.embed_texts(["pink"])[0], out[1])


def test_text_cache_is_thread_safe(bundle):
    engine = Engine.load(bundle, intra_op_threads=1, text_cache_size=8)
    texts = [f"a {word} shape" for word in ("red", "blue", "green", "tiny", "big", "odd")] * 3
    expected = Engine.load(bundle, intra_op_threads=1, text_cache_size=0).embed_texts(texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: engine.embed_texts(texts[i:] + texts[:i]), range(12)))
    for i, got in enumerate(results):
        np.testing.assert_allclose(got, np.roll(expected, -i, axis=0), atol=1e-6)
    info = engine.text_cache_info()
    assert info["hits"] + info["misses"] == 12 * len(texts) and info["size"] <= 8


# --------------------------------------------------------------------------- probes


@pytest.mark.parametrize("profile", [DEFAULT, PRUNED])
def test_probes_equal_torch_probe_eval(engine, tiny, world, profile):
    from ccsclip.heads import Ablation, ablated
    from ccsclip.probeset import load_probe
    from ccsclip.profiles.probe_eval import probe_result

    heads = PRUNED_HEADS if profile == PRUNED else []
    for name in ("accuracy-shape", "accuracy-colour", "bias-shape-colour"):
        got = run_probe(engine, world / name, profile)
        probe = load_probe(world / name)
        with ablated(tiny.model, Ablation.of(heads, "zero")):
            expected = probe_result(tiny.model, tiny.tokenizer, tiny.preprocess, probe)
        assert got.pop("profile") == profile
        if expected["kind"] == "accuracy":
            assert got == expected
            continue
        assert set(got) == set(expected) and got["maxskew"].keys() == expected["maxskew"].keys()
        assert {k: v for k, v in got.items() if k != "maxskew"} == {
            k: v for k, v in expected.items() if k != "maxskew"
        }
        for key, row in expected["maxskew"].items():
            mine = got["maxskew"][key]
            assert mine["random_ranking_mean"] == row["random_ranking_mean"]
            assert mine["mean"] == pytest.approx(row["mean"], abs=1e-6)
            assert mine["sum"] == pytest.approx(row["sum"], abs=1e-6)
            assert mine["per_query"] == pytest.approx(row["per_query"], abs=1e-6)


def test_probe_text_side_is_cached(engine, world):
    first = prepare_probe(engine, world / "bias-shape-colour")
    assert prepare_probe(engine, world / "bias-shape-colour") is first
    assert first.texts.shape == (len(first.probe.spec.queries), engine.embed_dim)
    with pytest.raises(NotFoundError, match="nope"):
        run_probe(engine, world / "accuracy-shape", "nope")
