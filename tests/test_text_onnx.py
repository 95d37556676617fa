"""The ONNX text tower with a dynamic sequence length matches the full-context torch tower; the
engine feeds it trimmed ids; bundles with a static-length tower (older ones) keep working."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ccsclip.engine.engine import Engine
from ccsclip.errors import IntegrityError
from ccsclip.export.onnx_export import export_text_tower
from ccsclip.fileio import sha256_file

sys.path.insert(0, str(Path(__file__).parent))
from engine_fixtures import build_test_bundle  # noqa: E402
from test_text_trim import texts_of_all_lengths  # noqa: E402

TOL = 1e-4  # the bundle's parity tolerance, on normalised embeddings


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _trim(ids: np.ndarray) -> np.ndarray:
    return ids[:, : int(ids.argmax(1).max()) + 1]


def _check_dynamic_tower(loaded, path: Path) -> None:
    model, tokenizer = loaded.model, loaded.tokenizer
    export_text_tower(model, path, model.context_length, {"kind": "text"}, dynamic_length=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (entry,) = session.get_inputs()
    assert entry.shape == ["batch", "sequence"]
    texts = texts_of_all_lengths(model.context_length)
    ids = tokenizer(texts)
    with torch.no_grad():
        expected = model.encode_text(ids, normalize=True).numpy()
    ids = ids.numpy()
    lengths = set()
    for rows in [np.arange(len(texts)), np.arange(5), *[[i] for i in range(len(texts))]]:
        batch = _trim(ids[rows])
        lengths.add(batch.shape[1])
        got = _normalise(session.run(None, {"input_ids": batch})[0])
        np.testing.assert_allclose(got, expected[rows], atol=TOL, rtol=0)
    assert min(lengths) == 2 and max(lengths) == model.context_length and len(lengths) > 10


@pytest.mark.slow
def test_dynamic_length_tower_matches_torch_vit_b32(vit_b32, tmp_path):
    _check_dynamic_tower(vit_b32, tmp_path / "text.onnx")


def test_dynamic_length_tower_matches_torch_organism(tmp_path):
    from ccsclip.models import load_model

    _check_dynamic_tower(load_model("ccsclip-organism", "embedded"), tmp_path / "text.onnx")


def test_static_tower_refuses_other_lengths(tiny, tmp_path):
    path = export_text_tower(tiny.model, tmp_path / "t.onnx", tiny.model.context_length, {})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", tiny.model.context_length]


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory) -> Path:
    return build_test_bundle(tiny, tmp_path_factory.mktemp("textbundle") / "bundle")


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _static_copy(bundle: Path, tiny, root: Path, keep_flag: bool) -> Path:
    """The bundle as an older exporter wrote it: static-length text.onnx, no dynamic flag."""
    shutil.copytree(bundle, root)
    meta = {"kind": "text", "weights_sha256": tiny.spec.weights_sha256}
    export_text_tower(tiny.model, root / "text.onnx", tiny.model.context_length, meta)
    data = _manifest(root)
    data["text"]["sha256"] = sha256_file(root / "text.onnx")
    if not keep_flag:
        del data["text"]["dynamic_length"]
    (root / "manifest.json").write_text(json.dumps(data))
    return root


def _torch_texts(tiny, texts):
    with torch.no_grad():
        return tiny.model.encode_text(tiny.tokenizer(texts), normalize=True).numpy()


def test_engine_uses_dynamic_tower(bundle, tiny):
    assert _manifest(bundle)["text"]["dynamic_length"] is True
    engine = Engine.load(bundle, intra_op_threads=1)
    ids = engine.tokenizer(["red", "a red circle"])
    assert engine.tokenizer.trim(ids).shape == (2, 5)  # sot, a, red, circle, eot
    texts = texts_of_all_lengths(tiny.model.context_length)
    np.testing.assert_allclose(engine.embed_texts(texts), _torch_texts(tiny, texts), atol=TOL)


def test_older_static_bundle_still_loads_and_matches(bundle, tiny, tmp_path):
    root = _static_copy(bundle, tiny, tmp_path / "old", keep_flag=False)
    engine = Engine.load(root, intra_op_threads=1)
    assert engine.manifest.text.dynamic_length is False
    texts = texts_of_all_lengths(tiny.model.context_length)
    np.testing.assert_allclose(engine.embed_texts(texts), _torch_texts(tiny, texts), atol=TOL)


def test_manifest_claiming_dynamic_for_static_file_stops_start(bundle, tiny, tmp_path):
    root = _static_copy(bundle, tiny, tmp_path / "lie", keep_flag=True)
    with pytest.raises(IntegrityError, match="dynamic_length"):
        Engine.load(root)


def test_verify_checks_trimmed_lengths(bundle):
    from ccsclip.export.bundle import check_bundle

    report = check_bundle(bundle, images=1)
    assert report.ok, report.problems
    assert report.text_parity is not None and report.text_parity <= TOL
