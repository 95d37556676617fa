"""Shared fixtures: real models (random-initialised, seeded) and small image folders."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Caches of text embeddings and LLM answers in a folder of this test process (each pytest-xdist
# worker has its own), never the user's ~/.cache: every run computes what it tests, and parallel
# workers share no fixed path.
_CACHE = tempfile.mkdtemp(prefix="ccsclip-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("CCSCLIP_CACHE", os.path.join(_CACHE, "embeddings"))
os.environ.setdefault("CCSCLIP_LLM_CACHE", os.path.join(_CACHE, "llm"))


@pytest.fixture(scope="session")
def tiny():
    from ccsclip.models import load_model

    return load_model("ccsclip-tiny")


@pytest.fixture(scope="session")
def vit_b32():
    from ccsclip.models import load_model

    return load_model("ViT-B-32")


@pytest.fixture(scope="session")
def vit_b16():
    from ccsclip.models import load_model

    return load_model("ViT-B-16")


def write_images(folder, count: int, size: int = 32, seed: int = 0) -> list[str]:
    """Random RGB PNGs, some in class subfolders (ImageFolder), some flat."""
    rng = np.random.default_rng(seed)
    names = []
    for index in range(count):
        sub = folder / f"class{index % 2}" if index % 3 else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"img{index:04d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        names.append(str(path))
    return names


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "images"
    write_images(root, 24)
    return root


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A small organism world on disk: probes, bias probe, gallery, calibration images, pool."""
    from ccsclip.organism.probes import generate_all

    root = tmp_path_factory.mktemp("world")
    generate_all(root, seed=0, n_per_class=6, n_per_cell=3, n_gallery=24, n_calibration=64)
    return root


# The organism and its ablation means on the small world: one per test module (tests ablate in
# place inside context managers; a module's own copy keeps that local).
@pytest.fixture(scope="module")
def organism():
    from ccsclip.models import load_model

    return load_model("ccsclip-organism", "embedded")


@pytest.fixture(scope="module")
def means_file(organism, small_world, tmp_path_factory):
    """Ablation means of every layer from the small world's calibration images."""
    from ccsclip.heads.collect import collect_statistics
    from ccsclip.heads.stats import save_statistics

    out = tmp_path_factory.mktemp("stats")
    layers = tuple(range(organism.spec.layers))
    moments, means, meta = collect_statistics(
        organism, small_world / "calibration", layers, 64, progress=False
    )
    save_statistics(out, moments, means, meta)
    return out / "means.safetensors"
