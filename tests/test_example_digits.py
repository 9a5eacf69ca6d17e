"""The digits CNN example runs, and a short training already classifies the test images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

PATH = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"


def load_example() -> object:
    spec = importlib.util.spec_from_file_location("digits_cnn", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_short_run_of_the_digits_cnn_learns() -> None:
    example = load_example()
    X_train, X_test, _, y_test = example.load_data()  # type: ignore[attr-defined]
    assert X_train.shape[1:] == (1, 8, 8) and len(X_train) + len(X_test) == 1797
    assert np.bincount(y_test).min() >= 35  # stratified: every digit in the test part
    accuracy, _, _ = example.run(example.cnn, seed=0, epochs=3)  # type: ignore[attr-defined]
    assert accuracy > 0.9


def test_the_training_step_benchmark_runs(nnkit_env: dict[str, str]) -> None:
    import subprocess
    import sys

    script = PATH.parents[1] / "benchmarks" / "digits_step.py"
    out = subprocess.run(
        [sys.executable, str(script), "--threads", "1", "--repeats", "1", "--steps", "2"],
        env=nnkit_env, capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    assert "digits CNN training step" in out and out.strip().splitlines()[-1].split()[0] == "1"
