"""The Bento: `bentoml build` offline from a copy of the checkout, its contents, and serving it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def _context(tmp: Path, tiny) -> Path:
    """A clean build context: tracked sources plus a default/ bundle made from the tiny model."""
    from engine_fixtures import build_test_bundle

    ctx = tmp / "ctx"
    ctx.mkdir()
    for name in ("service.py", "bentofile.yaml", "README.md"):
        shutil.copy(ROOT / name, ctx / name)
    shutil.copytree(ROOT / "proto", ctx / "proto")
    shutil.copytree(ROOT / "scripts" / "image", ctx / "scripts" / "image")  # dockerfile_template
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", ctx / "src", ignore=ignore)
    build_test_bundle(tiny, ctx / "default" / "bundle")
    return ctx


@pytest.fixture(scope="module")
def bento(tmp_path_factory, tiny):
    tmp = tmp_path_factory.mktemp("bento")
    ctx = _context(tmp, tiny)
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp / "home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PIP_NO_INDEX": "1",
    }  # no network: lock_packages is false, nothing is resolved
    result = subprocess.run(
        [BENTOML, "build", str(ctx)], cwd=ctx, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    builds = [p for p in (tmp / "home" / "bentos" / "ccsclip").iterdir() if p.name != "latest"]
    assert len(builds) == 1
    return builds[0]


def test_bento_contains_service_bundle_and_dockerfile(bento):
    assert (bento / "src" / "service.py").is_file()
    assert (bento / "src" / "src" / "ccsclip" / "service" / "http.py").is_file()
    assert (bento / "src" / "default" / "bundle" / "manifest.json").is_file()
    assert not list((bento / "src").rglob("*.safetensors"))  # torch weights stay out
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "PYTHONPATH" in dockerfile and "CCSCLIP_BUNDLE" in dockerfile
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==1.32.0" in requirements
    assert "torch" not in requirements and "open_clip" not in requirements
    spec = yaml.safe_load((bento / "bento.yaml").read_text())
    assert spec["service"] == "service:CCSClip"


def test_gpu_variant_swaps_the_runtime():
    cpu = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    gpu = yaml.safe_load((ROOT / "bentofile-gpu.yaml").read_text())
    cpu_packages, gpu_packages = set(cpu["python"]["packages"]), set(gpu["python"]["packages"])
    assert cpu_packages - gpu_packages == {"onnxruntime==1.32.0"}
    assert gpu_packages - cpu_packages == {"onnxruntime-gpu==1.31.1"}
    assert cpu["python"]["lock_packages"] is False and gpu["python"]["lock_packages"] is False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bento_serves_from_its_own_folder(bento):
    """`bentoml serve` inside the built Bento, with the environment its Dockerfile sets."""
    spec = yaml.safe_load((bento / "bento.yaml").read_text())
    src = bento / "src"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    for item in spec.get("envs", []):
        env[item["name"]] = item["value"].replace("/home/bentoml/bento/src", str(src))
    port = _free_port()
    process = subprocess.Popen(
        [BENTOML, "serve", ".", "--port", str(port)],
        cwd=bento,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the Bento did not become ready in 120 s"
            time.sleep(1)
    finally:
        process.terminate()
        process.wait(timeout=30)
