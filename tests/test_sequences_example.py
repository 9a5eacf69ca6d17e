"""examples/sequences.py learns the temporal-order task: a shortened run of each model (fewer
sequences and epochs than the documented one), in a subprocess so that the example's
one-thread BLAS setting applies before NumPy loads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "model, epochs, floor",
    [
        ("lstm", 4, 0.9),
        ("gru", 3, 0.9),
        # a bag of tokens gets 50% at best (it cannot see the order): 70% needs the order
        ("transformer", 5, 0.7),
    ],
)
def test_example_learns_the_order(
    model: str, epochs: int, floor: float, nnkit_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sequences.py"),
            "--models",
            model,
            "--train",
            "2000",
            "--epochs",
            str(epochs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=nnkit_env,
    )
    match = re.search(rf"^{model} +test accuracy +([\d.]+)%", result.stdout, flags=re.M)
    assert match is not None, result.stdout
    assert float(match.group(1)) / 100 >= floor


def test_the_data_needs_the_order() -> None:
    """Every class occurs, the markers are where the label says, and the count of X tokens
    alone leaves at least two classes possible for most sequences."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("seq_example", ROOT / "examples" / "sequences.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tokens, labels = example.make_data(2000, np.random.default_rng(0))
    assert tokens.shape == (2000, example.LENGTH) and set(labels) == set(range(8))
    markers = tokens[tokens >= example.X_TOKEN].reshape(2000, 3) - example.X_TOKEN
    np.testing.assert_array_equal(markers @ np.array([4, 2, 1]), labels)
    ambiguous = np.isin(markers.sum(axis=1), [1, 2]).mean()
    assert ambiguous > 0.6
