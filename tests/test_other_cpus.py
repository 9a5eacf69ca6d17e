"""The tests that compare float32 results across computation paths also pass with the BLAS
and NumPy kernels of CPUs older than this one (AVX2, SSE), emulated in a subprocess.

OpenBLAS built with DYNAMIC_ARCH (NumPy's wheels) picks its kernels from the CPU, and
``OPENBLAS_CORETYPE`` forces another choice; ``NPY_DISABLE_CPU_FEATURES`` turns off NumPy's
own dispatch targets. A test that expects float32 results of different batch sizes to agree
to ``rtol=1e-6`` passes with AVX-512 kernels and fails with AVX2 ones (tests/tolerance.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The tests whose float32 results go through other kernels when the batch size changes.
CROSS_PATH_TESTS = [
    "tests/test_training.py::test_predict_equals_the_eval_forward_and_restores_mode",
    "tests/test_training.py::test_evaluate_does_not_depend_on_batch_size",
    "tests/test_training.py::test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses",
]

# (OpenBLAS core type, the NumPy dispatch targets it may keep, the CPU feature it needs)
EMULATED = [
    ("Haswell", {"X86_V3"}, "AVX2"),  # AVX2 + FMA, no AVX-512
    ("Nehalem", set(), "SSE42"),  # SSE only
]


def _cpu() -> tuple[set[str], list[str]]:
    """This CPU's features and NumPy's dispatch targets (private NumPy API: skip without)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # pragma: no cover - NumPy < 2
        pytest.skip("needs NumPy 2's CPU feature tables")
    features = {name for name, on in umath.__cpu_features__.items() if on}
    return features, list(umath.__cpu_dispatch__)


def _is_openblas() -> bool:
    config = np.show_config(mode="dicts")
    return "openblas" in str(config["Build Dependencies"]["blas"].get("name", "")).lower()


@pytest.mark.parametrize(("core", "keep", "needs"), EMULATED, ids=[e[0] for e in EMULATED])
def test_cross_path_float32_tests_pass_on_older_cpus(
    core: str, keep: set[str], needs: str, nnkit_env: dict[str, str]
) -> None:
    features, dispatch = _cpu()
    if needs not in features or not _is_openblas():
        pytest.skip(f"needs OpenBLAS and a CPU with {needs}")
    disabled = [target for target in dispatch if target not in keep and target in features]
    env = {**nnkit_env, "OPENBLAS_CORETYPE": core, "NPY_DISABLE_CPU_FEATURES": " ".join(disabled)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CROSS_PATH_TESTS],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
