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


def test_conv_benchmark_smoke_run(nnkit_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "conv.py"), "--quick", "--no-torch",
         "--threads", "1"],
        capture_output=True, text=True, timeout=300, check=True, env=nnkit_env,
    )
    for case in ("Conv2d N=2 1->16 28x28 k3 p1", "Conv2d N=2 16->32 28x28 k3 s2 p1",
                 "Conv1d N=2 1->32 40 k5 p2", "MaxPool2d N=2 32ch 14x14 k3 s2 p1"):
        assert f"\n{case} " in result.stdout
    assert "== 1 thread" in result.stdout and "nnkit/floor" in result.stdout
