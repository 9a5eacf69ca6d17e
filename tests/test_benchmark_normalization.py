"""The normalisation benchmark keeps working: a smoke run with tiny counts (no timing is
asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_normalization_benchmark_smoke_run(nnkit_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "normalization.py"), "--quick", "--no-torch"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=nnkit_env,
    )
    for layer in ("BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Dropout", "Embedding"):
        assert f"\n{layer}" in result.stdout
