"""The CLI's thread settings: OpenMP's wait policy reaches libgomp, a user's own value wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs the real entry point in a fresh interpreter. `--threads 1` makes the option's callback
# load torch (and so libgomp) while the command line is parsed; the missing image folder then ends
# the command with exit code 2 before any model is built. OMP_DISPLAY_ENV=verbose makes libgomp
# print the settings it read when it loaded; GOMP_SPINCOUNT tells PASSIVE (0) from unset (300000).
_SCRIPT = """
import os, sys
from ccsclip import cli
sys.argv = ["ccsclip", "stats", "--model", "ccsclip-tiny", "--images", sys.argv[1],
            "--out", sys.argv[1], "--threads", "1"]
try:
    cli.main()
except SystemExit as exc:
    code = exc.code
import torch
print("ENV", os.environ.get("OMP_WAIT_POLICY"), "EXIT", code, "THREADS", torch.get_num_threads())
"""


def _run(tmp_path, policy: str | None) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["OMP_DISPLAY_ENV"] = "verbose"
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "missing")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_cli_import_does_not_load_torch():
    """The policy can only work if nothing imports torch before `main` sets it."""
    code = "import sys, ccsclip.cli; print('torch' in sys.modules, 'open_clip' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_default_is_passive_and_reaches_openmp(tmp_path):
    stdout, stderr = _run(tmp_path, None)
    assert "ENV PASSIVE EXIT 2 THREADS 1" in stdout
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in stderr
    assert "GOMP_SPINCOUNT = '0'" in stderr  # libgomp's PASSIVE, not its unset default


@pytest.mark.parametrize("policy", ["ACTIVE", "passive"])
def test_user_setting_wins(tmp_path, policy):
    stdout, stderr = _run(tmp_path, policy)
    assert f"ENV {policy} EXIT 2" in stdout
    assert f"OMP_WAIT_POLICY = '{policy.upper()}'" in stderr
    if policy == "ACTIVE":
        assert "GOMP_SPINCOUNT = '0'" not in stderr


def test_threads_rejects_nonsense():
    from ccsclip.cpu_threads import set_threads
    from ccsclip.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="--threads"):
        set_threads(0)


def test_threads_reach_torch_and_export_sessions(tiny, tmp_path, monkeypatch):
    import torch

    from ccsclip import cpu_threads
    from ccsclip.export.onnx_export import export_text_tower
    from ccsclip.export.parity import open_session

    monkeypatch.setattr(cpu_threads, "_threads", None)
    before = torch.get_num_threads()
    try:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            monkeypatch.delenv(name, raising=False)
        cpu_threads.set_threads(1)
        assert torch.get_num_threads() == 1 and cpu_threads.configured_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1" == os.environ["MKL_NUM_THREADS"]
        path = export_text_tower(tiny.model, tmp_path / "t.onnx", tiny.model.context_length, {})
        options = open_session(path).get_session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    finally:
        torch.set_num_threads(before)
