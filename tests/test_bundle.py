"""Export bundles (docs/design.md §6, §7): atomic, hash-checked, parity-checked, verifiable.

One bundle of the tiny random-init model is exported once per module (zero and mean profiles,
fp16 and int8 copies, an accuracy probe) and copied by the tests that tamper with it.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from safetensors.torch import save_file

from ccsclip.bundle import (
    MANIFEST,
    ProfileSource,
    profile_source,
    read_manifest,
    verify_files,
)
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.export.bundle import REDUCED_TOLERANCE, check_bundle, export_bundle, verify_bundle
from ccsclip.export.onnx_export import export_image_tower, onnx_metadata
from ccsclip.export.surgery import bake, flops_per_image, predicted_parameter_count
from ccsclip.fileio import sha256_file
from ccsclip.heads import Ablation
from ccsclip.profiles.evaluate import profile_ablation
from ccsclip.profiles.schema import (
    Profile,
    manual_profile,
    write_profile,
)

FEW = [(1, 2), (2, 0)]
LAYER0 = [(0, h) for h in range(4)]


def _profile(root: Path, spec, name: str, heads, mode: str = "zero") -> tuple[Profile, Path]:
    means = root / "means.safetensors"
    profile = manual_profile(
        spec,
        name,
        heads,
        mode,
        means=means.name if mode == "mean" else None,
        means_sha256=sha256_file(means) if mode == "mean" else None,
    )
    return profile, write_profile(root / f"{name}.yaml", profile)


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    """Profiles (random non-zero means), a tiny organism probe and one exported bundle."""
    from ccsclip.organism.probes import generate_all

    root = tmp_path_factory.mktemp("bundle")
    spec = tiny.spec
    generator = torch.Generator().manual_seed(1)
    shape = (spec.layers, spec.n_tokens, spec.heads, spec.head_width)
    save_file({"means": torch.randn(shape, generator=generator)}, str(root / "means.safetensors"))
    profiles = [
        _profile(root, spec, "baseline", []),
        _profile(root, spec, "few", FEW),
        _profile(root, spec, "few-mean", FEW, "mean"),
        _profile(root, spec, "layer0", LAYER0, "mean"),
    ]
    generate_all(root / "world", 0, n_per_class=3, n_per_cell=1, n_gallery=2, n_calibration=2)
    probe = root / "world" / "accuracy-colour"
    manifest = export_bundle(
        tiny,
        profiles,
        root / "out",
        precision={"few": "fp16"},
        quantize={"few": "int8"},
        probe=probe,
        progress=False,
    )
    return {"root": root, "profiles": profiles, "manifest": manifest, "bundle": root / "out"}


def _copy(setup, tmp_path) -> Path:
    """A copy beside the original, so the profiles' relative provenance still resolves."""
    target = setup["root"] / f"copy-{tmp_path.name}"
    shutil.copytree(setup["bundle"], target)
    return target


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / MANIFEST
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ccsclip.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- export


def test_bundle_written_with_valid_manifest(setup, tiny):
    bundle, manifest = setup["bundle"], setup["manifest"]
    assert read_manifest(bundle) == manifest
    assert verify_files(bundle) == []
    expected = {
        "baseline",
        "few",
        "few-mean",
        "layer0",
        "few-fp16",
        "few-int8",
    }
    assert set(manifest.profiles) == expected
    files = {p.name for p in bundle.iterdir()}
    assert files == {MANIFEST, "text.onnx", "tokenizer.json"} | {
        f"image-{name}.onnx" for name in expected
    }
    assert manifest.default_profile == "baseline"
    assert manifest.model.weights_sha256 == tiny.spec.weights_sha256
    assert math.isclose(manifest.model.logit_scale, float(tiny.model.logit_scale.detach().exp()))
    assert manifest.tokenizer.context_length == tiny.spec.context_length
    assert manifest.preprocess["size"] == [tiny.spec.image_size] * 2
    assert not list(bundle.parent.glob(".out.*")), "temp directories left behind"


def test_onnx_metadata_names_profile_and_hash(setup):
    bundle, manifest = setup["bundle"], setup["manifest"]
    for profile, path in setup["profiles"]:
        entry = manifest.profiles[profile.name]
        meta = onnx_metadata(bundle / entry.file)
        assert meta["profile"] == profile.name
        assert meta["profile_sha256"] == profile.sha256 == entry.profile_sha256
        assert json.loads(meta["heads_removed"]) == [h.name for h in profile.heads]
        assert meta["mode"] == profile.ablation.mode
        assert meta["weights_sha256"] == manifest.model.weights_sha256
        assert entry.source.name == profile.name and entry.source.sha256 == profile.sha256
        assert (bundle / entry.source.path).resolve() == Path(path).resolve()
    assert onnx_metadata(bundle / "image-few-int8.onnx")["profile"] == "few-int8"


def test_fp32_parity_recorded_within_tolerance(setup):
    manifest = setup["manifest"]
    assert manifest.parity_tolerance == 1e-4
    for name in ("baseline", "few", "few-mean", "layer0"):
        entry = manifest.profiles[name]
        assert entry.precision == "fp32" and entry.quantize is None
        assert 0 <= entry.parity_max_abs <= 1e-4
        assert entry.parity_tolerance == 1e-4


def test_costs_decrease_and_match_surgery(setup, tiny):
    profiles, spec = setup["manifest"].profiles, tiny.spec
    flops = [profiles[n].flops_per_image for n in ("baseline", "few", "layer0")]
    params = [profiles[n].parameters for n in ("baseline", "few", "layer0")]
    assert flops[0] > flops[1] > flops[2]
    assert params[0] > params[1] > params[2]
    for profile, path in setup["profiles"]:
        entry = profiles[profile.name]
        heads = profile.head_pairs()
        assert entry.flops_per_image == flops_per_image(spec, heads)
        assert entry.parameters == predicted_parameter_count(spec, heads)
        baked = bake(tiny.model, profile_ablation(profile, path, tiny))
        assert entry.parameters == sum(p.numel() for p in baked.visual.parameters())
    assert profiles["few-mean"].flops_per_image == profiles["few"].flops_per_image


def test_reduced_precision_profiles(setup):
    bundle, profiles = setup["bundle"], setup["manifest"].profiles
    fp32, fp16, int8 = profiles["few"], profiles["few-fp16"], profiles["few-int8"]
    assert (fp16.precision, fp16.quantize, fp16.base_profile) == ("fp16", None, "few")
    assert (int8.precision, int8.quantize, int8.base_profile) == ("fp32", "int8", "few")
    assert fp16.parity_tolerance == REDUCED_TOLERANCE["fp16"]
    assert int8.parity_tolerance == REDUCED_TOLERANCE["int8"]
    for entry in (fp16, int8):
        assert fp32.parity_max_abs < entry.parity_max_abs <= entry.parity_tolerance
        assert entry.heads_removed == fp32.heads_removed
        assert entry.accuracy_delta is not None and -1.0 <= entry.accuracy_delta <= 1.0
    assert fp32.accuracy_delta is None
    # What the conversions really did: half-size float16 weights, int8 weights, float32 I/O.
    proto = onnx.load(str(bundle / fp16.file))
    dtypes = {init.data_type for init in proto.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in dtypes
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    int8_types = {init.data_type for init in onnx.load(str(bundle / int8.file)).graph.initializer}
    assert onnx.TensorProto.INT8 in int8_types
    size = (bundle / fp32.file).stat().st_size
    assert (bundle / fp16.file).stat().st_size < 0.7 * size
    assert (bundle / int8.file).stat().st_size < 0.5 * size


def test_default_profile_is_first_without_baseline_and_no_probe_no_delta(setup, tiny, tmp_path):
    few, layer0 = setup["profiles"][1], setup["profiles"][3]
    manifest = export_bundle(
        tiny, [layer0, few], tmp_path / "b", quantize={"few": "int8"}, progress=False
    )
    assert manifest.default_profile == "layer0"
    assert manifest.profiles["few-int8"].accuracy_delta is None
    assert verify_files(tmp_path / "b") == []


def test_refuses_above_tolerance_and_keeps_existing_bundle(setup, tiny, tmp_path):
    out = _copy(setup, tmp_path)
    before = _snapshot(out)
    few = setup["profiles"][1]
    assert setup["manifest"].profiles["few"].parity_max_abs > 1e-12  # so the refusal is real
    with pytest.raises(IntegrityError, match=r"'few'.*above the tolerance 1e-12"):
        export_bundle(tiny, [few], out, tolerance=1e-12, progress=False)
    assert _snapshot(out) == before
    with pytest.raises(IntegrityError, match="tolerance"):
        export_bundle(tiny, [few], tmp_path / "fresh", tolerance=0.0, progress=False)
    assert not (tmp_path / "fresh").exists()
    assert list(tmp_path.iterdir()) == []  # no temp dirs left, beside either target
    assert not list(out.parent.glob(f".{out.name}.*"))


def test_refuses_bad_requests_before_writing(setup, tiny, tmp_path):
    baseline, few = setup["profiles"][0], setup["profiles"][1]
    with pytest.raises(NotFoundError, match="'nope'"):
        export_bundle(tiny, [few], tmp_path / "a", precision={"nope": "fp16"}, progress=False)
    with pytest.raises(InvalidInputError, match="bf16"):
        export_bundle(tiny, [few], tmp_path / "a", precision={"few": "bf16"}, progress=False)
    with pytest.raises(NotFoundError, match="default profile"):
        export_bundle(tiny, [few], tmp_path / "a", default_profile="x", progress=False)
    with pytest.raises(InvalidInputError, match="unique"):
        export_bundle(tiny, [few, few], tmp_path / "a", progress=False)
    other = baseline[0].model_copy(deep=True)
    other.model.weights_sha256 = "0" * 64
    with pytest.raises(IntegrityError, match="other weights"):
        export_bundle(tiny, [(other, baseline[1])], tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not a ccsclip bundle"):
        export_bundle(tiny, [few], precious, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------- verify


def test_verify_passes_and_rechecks_parity(setup):
    report = check_bundle(setup["bundle"])
    assert report.problems == []
    rows = {row.name: row for row in report.rows}
    assert set(rows) == set(setup["manifest"].profiles)
    assert rows["few"].reference == "torch:heads"
    assert rows["layer0"].reference == rows["few-mean"].reference == "torch:profile"
    for row in rows.values():
        assert row.measured is not None and row.measured <= row.tolerance
    assert report.text_parity is not None and report.text_parity <= 1e-4


def test_verify_cli_ok(setup):
    from typer.testing import CliRunner

    from ccsclip.cli import app

    result = CliRunner().invoke(app, ["bundle", "verify", str(setup["bundle"]), "--images", "2"])
    assert result.exit_code == 0, result.output
    assert "OK (6 image files" in result.output
    assert "few-int8" in result.output


def test_export_cli_error_exits_2(tmp_path):
    args = ("export", "-m", "ccsclip-tiny", "--profile", tmp_path / "missing.yaml")
    result = _cli(*args, "--out", tmp_path / "b")
    assert result.returncode == 2
    assert "missing.yaml" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "b").exists()


def test_verify_cli_fails_on_tampered_onnx_and_manifest(setup, tmp_path):
    """One run, two independent tampers: each must be reported on its own."""
    bundle = _copy(setup, tmp_path)
    path = bundle / "image-few.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    def edit(data):
        data["text"]["sha256"] = "f" * 64

    _edit_manifest(bundle, edit)
    result = _cli("bundle", "verify", bundle, "--images", "1")
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert any("'image-few.onnx'" in p and "sha256" in p for p in problems), result.stderr
    assert any("'text.onnx'" in p and "sha256" in p for p in problems), result.stderr
    assert not any("image-baseline" in p for p in problems)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("heads_removed", ["L1H2"], "heads_removed"),
        ("flops_per_image", 123, "flops_per_image"),
        ("parameters", 1, "parameters"),
        ("parity_max_abs", 0.5, "recorded parity"),
        ("profile_sha256", "0" * 64, "profile_sha256"),
    ],
)
def test_verify_catches_edited_fields(setup, tmp_path, field, value, expected):
    bundle = _copy(setup, tmp_path)

    def edit(data):
        data["profiles"]["few"][field] = value

    _edit_manifest(bundle, edit)
    problems = verify_bundle(bundle, images=2)
    assert any("'few'" in p and expected in p for p in problems), problems


def test_verify_catches_swapped_file_and_other_weights(setup, tmp_path):
    bundle = _copy(setup, tmp_path)
    shutil.copy(bundle / "image-baseline.onnx", bundle / "image-few.onnx")

    def edit(data):
        data["profiles"]["few"]["sha256"] = sha256_file(bundle / "image-few.onnx")
        data["model"]["weights_sha256"] = "1" * 64

    _edit_manifest(bundle, edit)
    problems = verify_bundle(bundle, images=2)
    assert any("metadata profile='baseline'" in p for p in problems), problems
    assert any("other weights" in p for p in problems), problems


def test_manifest_holds_no_machine_path(setup):
    """Provenance is a name, a hash and a path relative to the bundle: nothing of this machine."""
    text = (setup["bundle"] / MANIFEST).read_text()
    assert str(setup["root"]) not in text and str(setup["root"].resolve()) not in text
    far = profile_source("p", "0" * 64, Path("/elsewhere/p.yaml"), setup["bundle"])
    assert far.path is None  # not beside the bundle: no path at all
    with pytest.raises(ValueError, match="relative"):
        ProfileSource(name="p", sha256="0" * 64, path="/abs/p.yaml")


def test_old_manifest_with_an_absolute_source_still_loads_and_verifies(setup, tmp_path):
    """Manifests written before relative provenance hold the profile's absolute path."""
    target = tmp_path / "old"
    shutil.copytree(setup["bundle"], target)  # far from the profiles: relative paths break
    path = dict((p.name, q) for p, q in setup["profiles"])["few-mean"]

    def edit(data):
        data["profiles"]["few-mean"]["source"] = str(Path(path).resolve())

    _edit_manifest(target, edit)
    assert read_manifest(target).profiles["few-mean"].source == str(Path(path).resolve())
    rows = {row.name: row for row in check_bundle(target, images=2).rows}
    assert rows["few-mean"].reference == "torch:profile"  # found by its old absolute path


def test_verify_mean_profile_without_its_file_falls_back(setup, tmp_path):
    bundle = _copy(setup, tmp_path)

    def edit(data):
        data["profiles"]["layer0"]["source"] = str(tmp_path / "gone.yaml")

    _edit_manifest(bundle, edit)
    report = check_bundle(bundle, images=2)
    assert report.problems == []
    rows = {row.name: row for row in report.rows}
    assert rows["layer0"].reference == "onnx-rerun:no-profile"
    assert rows["layer0"].measured is None
    assert rows["few-mean"].reference == "torch:profile"


def test_verify_detects_wrong_parity_against_torch(setup, tiny, tmp_path):
    """An image file baked from other heads (hashes and metadata made consistent) fails parity."""
    bundle = _copy(setup, tmp_path)
    wrong = bake(tiny.model, Ablation.of([(0, 0)]))
    meta = onnx_metadata(bundle / "image-few.onnx")
    export_image_tower(wrong, bundle / "image-few.onnx", tiny.spec.image_size, meta)

    def edit(data):
        data["profiles"]["few"]["sha256"] = sha256_file(bundle / "image-few.onnx")

    _edit_manifest(bundle, edit)
    report = check_bundle(bundle, images=2)
    rows = {row.name: row for row in report.rows}
    assert rows["few"].measured is not None and rows["few"].measured > 1e-3
    assert any("'few'" in p and "soft-pruned torch" in p for p in report.problems)
