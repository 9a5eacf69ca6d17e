"""The sequence benchmark keeps working: a smoke run with tiny counts (no timing is asserted).
It also checks that its plain-NumPy floor computes nnkit's gradients, or it raises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_rnn_benchmark_smoke_run(nnkit_env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "rnn.py"),
            "--quick",
            "--no-torch",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=nnkit_env,
    )
    for config in ("lstm-1-64", "lstm-32-128", "gru-1-64", "gru-32-128", "encoder-128"):
        assert f"\n{config} " in result.stdout
    assert "BLAS:" in result.stdout
