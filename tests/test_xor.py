"""The XOR case nnkit exists for: the example learns, and the demo runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xor_example", ROOT / "examples" / "xor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(4))
def test_xor_example_learns(seed: int) -> None:
    example = load_example()
    assert example.learned(example.train(seed))


def test_demo_runs_and_prints_what_it_learned(nnkit_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nnkit"],
        capture_output=True, text=True, timeout=120, check=True, env=nnkit_env,
    )
    assert "1 xor 1 ->" in result.stdout
    assert "Sequential(" in result.stdout
