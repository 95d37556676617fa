"""Streaming statistics: exactness, merging, torch.distributed (gloo), files and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from ccsclip.errors import IntegrityError
from ccsclip.heads import HeadMeans, HeadMoments, decompose, load_statistics, save_statistics
from ccsclip.heads.collect import collect_statistics
from ccsclip.models import load_model

LAYERS = (1, 2)


def _batches(spec, count=4, size=5):
    generator = torch.Generator().manual_seed(11)
    return [
        torch.randn(size, 3, spec.image_size, spec.image_size, generator=generator)
        for _ in range(count)
    ]


def test_moments_match_direct_computation(tiny):
    from ccsclip.heads import accumulate

    spec = tiny.spec
    batches = _batches(spec)
    moments = HeadMoments.zeros(LAYERS, spec.heads, spec.embed_dim)
    means = HeadMeans.zeros(spec.layers, spec.n_tokens, spec.heads, spec.head_width)
    accumulate(tiny.model, batches, LAYERS, moments, means)
    with torch.no_grad():
        c = torch.cat([decompose(tiny.model, b, LAYERS).heads for b in batches]).double()
    assert moments.n == 20
    assert torch.allclose(moments.s, c.sum(0), atol=1e-9)
    head = c[:, 1, 3]
    assert torch.allclose(moments.S[1, 3], head.T @ head, atol=1e-9)
    cov = moments.covariance(2, 3)
    assert torch.allclose(cov, torch.cov(head.T, correction=0), atol=1e-9)
    # ablation means: the mean of hook_z over all images at every position
    zs = {}
    attn = tiny.model.visual.transformer.resblocks[0].attn
    handle = attn.hook_z.register_forward_hook(lambda _m, _i, z: zs.update({len(zs): z.double()}))
    with torch.no_grad():
        for b in batches:
            tiny.model.encode_image(b)
    handle.remove()
    expected = torch.cat(list(zs.values())).mean(0)
    assert torch.allclose(means.means()[0].double(), expected, atol=1e-6)


def test_merge_is_addition(tiny):
    from ccsclip.heads import accumulate

    spec = tiny.spec
    batches = _batches(spec)
    parts = []
    for chunk in (batches[:1], batches[1:]):
        m = HeadMoments.zeros(LAYERS, spec.heads, spec.embed_dim)
        a = HeadMeans.zeros(spec.layers, spec.n_tokens, spec.heads, spec.head_width)
        accumulate(tiny.model, chunk, LAYERS, m, a)
        parts.append((m, a))
    whole_m = HeadMoments.zeros(LAYERS, spec.heads, spec.embed_dim)
    whole_a = HeadMeans.zeros(spec.layers, spec.n_tokens, spec.heads, spec.head_width)
    accumulate(tiny.model, batches, LAYERS, whole_m, whole_a)
    merged = parts[0][0].merge(parts[1][0])
    assert merged.n == whole_m.n
    assert torch.allclose(merged.S, whole_m.S, atol=1e-9)
    assert torch.allclose(parts[0][1].merge(parts[1][1]).means(), whole_a.means(), atol=1e-6)


def _worker(rank: int, world: int, init_file: str, images: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    loaded = load_model("ccsclip-tiny")
    moments, means, meta = collect_statistics(loaded, images, LAYERS, batch_size=4, progress=False)
    if rank == 0:
        save_statistics(out, moments, means, meta)
    dist.destroy_process_group()


def test_two_gloo_processes_equal_one(tmp_path, image_folder):
    single = tmp_path / "single"
    loaded = load_model("ccsclip-tiny")
    moments, means, meta = collect_statistics(
        loaded, image_folder, LAYERS, batch_size=4, progress=False
    )
    save_statistics(single, moments, means, meta)
    double = tmp_path / "double"
    ctx_args = (2, str(tmp_path / "init"), str(image_folder), str(double))
    mp.start_processes(_worker, args=ctx_args, nprocs=2, join=True, start_method="spawn")
    one, means_one, _ = load_statistics(single)
    two, means_two, sidecar = load_statistics(double)
    assert one.n == two.n == 24 and sidecar["world_size"] == 2
    assert (one.S - two.S).abs().max().item() <= 1e-9
    assert (one.s - two.s).abs().max().item() <= 1e-9
    assert (means_one - means_two).abs().max().item() <= 1e-6  # float32 file; float64 sums


def test_files_round_trip_and_tamper(tmp_path, tiny, image_folder):
    moments, means, meta = collect_statistics(
        tiny, image_folder, LAYERS, batch_size=8, progress=False
    )
    save_statistics(tmp_path, moments, means, meta)
    loaded, ablation_means, sidecar = load_statistics(
        tmp_path, weights_sha256=tiny.spec.weights_sha256
    )
    assert torch.equal(loaded.S, moments.S) and loaded.layers == LAYERS
    assert ablation_means.shape == (3, 17, 4, 16)
    with pytest.raises(IntegrityError, match="other weights"):
        load_statistics(tmp_path, weights_sha256="0" * 64)
    data = bytearray((tmp_path / "means.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "means.safetensors").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="means.safetensors"):
        load_statistics(tmp_path)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ccsclip.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_skips_corrupt_images_and_strict_fails(tmp_path, image_folder):
    (image_folder / "broken.png").write_bytes(b"\x89PNG not really")
    (image_folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "stats"
    result = _cli(
        "stats",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(image_folder),
        "--out",
        str(out),
        "--layers",
        "last:2",
    )
    assert result.returncode == 0, result.stderr
    assert "skipped 2 unreadable images" in result.stderr
    sidecar = json.loads((out / "stats.json").read_text())
    assert sidecar["images"]["n_skipped"] == 2 and sidecar["n_images"] == 24
    assert sorted(sidecar["images"]["skipped"]) == ["broken.png", "empty.jpg"]
    strict = _cli(
        "stats",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(image_folder),
        "--out",
        str(tmp_path / "strict"),
        "--strict",
    )
    assert strict.returncode == 2 and "cannot read image" in strict.stderr
    assert not (tmp_path / "strict").exists()
    table = _cli("heads", str(out), "--top", "3")
    assert table.returncode == 0 and ("L2H" in table.stdout or "L1H" in table.stdout)


def test_cli_bad_layers_and_folder(tmp_path, image_folder):
    bad = _cli(
        "stats",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(image_folder),
        "--out",
        str(tmp_path),
        "--layers",
        "last:9",
    )
    assert bad.returncode == 2 and "last:9" in bad.stderr
    missing = _cli(
        "stats",
        "-m",
        "ccsclip-tiny",
        "--images",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_statistics_files_are_byte_identical_for_equal_statistics(tmp_path):
    """safetensors orders its metadata by a hash map: the saved header is made canonical, so the
    means file's sha256 (which every profile records) depends on the numbers only."""
    from ccsclip.fileio import sha256_file
    from ccsclip.heads.stats import (
        MEANS_FILE,
        STATS_FILE,
        HeadMeans,
        HeadMoments,
        load_means,
        save_statistics,
    )

    moments = HeadMoments.zeros([0], 2, 3)
    moments.update(torch.arange(12.0).reshape(2, 1, 2, 3))
    means = HeadMeans(2, torch.arange(2 * 3 * 2 * 4, dtype=torch.float64).reshape(2, 3, 2, 4))
    meta = {"model": "m", "weights_sha256": "0" * 64}
    hashes = set()
    for run in range(8):  # each save builds a new hash map with its own random order
        save_statistics(tmp_path / str(run), moments, means, meta)
        hashes.add(
            (
                sha256_file(tmp_path / str(run) / STATS_FILE),
                sha256_file(tmp_path / str(run) / MEANS_FILE),
            )
        )
    assert len(hashes) == 1
    assert torch.equal(load_means(tmp_path / "0" / MEANS_FILE), means.means())
