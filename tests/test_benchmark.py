"""The benchmark keeps working: a smoke run with tiny counts (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run(nnkit_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mlp.py"), "--quick", "--no-torch"],
        capture_output=True, text=True, timeout=300, check=True, env=nnkit_env,
    )
    for config in ("tiny", "small", "mid", "large"):
        assert f"\n{config} " in result.stdout
    assert "peak memory of large" in result.stdout
    assert "Adam" in result.stdout
    assert "BLAS:" in result.stdout
