"""The OpenAPI contract check: schemathesis (every check, a fixed seed, a bounded number of cases
per operation, bounded in time) against a running server's `/docs.json`. Shared by the service
test (a `bentoml serve` of the test bundle) and the image test (the container)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
ST = Path(sys.executable).parent / "st"
SEED = 20261205


@dataclass(frozen=True)
class ContractRun:
    cases: int
    failures: list[dict[str, Any]]  # schemathesis' failure summaries (code, title, operations)
    server_errors: int  # failures of the not_a_server_error check
    operations: int  # operations tested
    output: str  # the CLI's report, for the assertion message


def check_contract(
    docs_url: str, report_dir: Path, *, cases: int = 60, timeout_s: int = 150
) -> ContractRun:
    """Run `st run` against `docs_url` (at most `cases` per operation and phase, killed after
    `timeout_s`) and read its JSON report."""
    report_dir.mkdir(parents=True, exist_ok=True)
    args = [
        str(ST),
        f"--config-file={TESTS / 'schemathesis.toml'}",
        "run",
        docs_url,
        "--checks=all",
        f"--seed={SEED}",
        f"--max-examples={cases}",
        "--workers=1",
        "--phases=examples,coverage,fuzzing",
        "--generation-database=none",
        "--request-timeout=30",
        "--no-color",
        "--report=json",
        f"--report-dir={report_dir}",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "SCHEMATHESIS_HOOKS": "openapi_hooks",
    }
    done = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=report_dir
    )
    reports = sorted(report_dir.glob("json-*.json"))
    if not reports:
        raise AssertionError(f"schemathesis wrote no report:\n{done.stdout}\n{done.stderr}")
    report = json.loads(reports[-1].read_text())
    failures = report["failures"]
    return ContractRun(
        cases=int(report["test_cases"]["generated"]),
        failures=failures,
        server_errors=sum(f["count"] for f in failures if f.get("type") == "ServerError"),
        operations=int(report["operations"]["tested"]),
        output=(done.stdout + done.stderr)[-6000:],
    )
