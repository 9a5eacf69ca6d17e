"""Normalisation, dropout and embedding layers: bad arguments and bad input raise a clear
exception naming the layer, never an assert or a silent broadcast."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import nnkit

BAD_INPUT: list[tuple[str, Callable[[], nnkit.Module], Any, type[Exception], str]] = [
    (
        "Dense-3d-wrong-features",
        lambda: nnkit.Dense(10, 8),
        np.zeros((4, 3, 5)),
        ValueError,
        "Dense(in_features=10, out_features=8) expected input of shape (N, *, 10), got (4, 3, 5)",
    ),
    (
        "BatchNorm2d-channels",
        lambda: nnkit.BatchNorm2d(num_features=3),
        np.zeros((2, 4, 5, 5)),
        ValueError,
        "BatchNorm2d(num_features=3) expected input of shape (N, 3, H, W), got (2, 4, 5, 5)",
    ),
    (
        "BatchNorm2d-rank",
        lambda: nnkit.BatchNorm2d(3),
        np.zeros((2, 3, 5)),
        ValueError,
        "BatchNorm2d(num_features=3) expected input of shape (N, 3, H, W), got (2, 3, 5)",
    ),
    (
        "BatchNorm1d-channels",
        lambda: nnkit.BatchNorm1d(3),
        np.zeros((4, 5)),
        ValueError,
        "BatchNorm1d(num_features=3) expected input of shape (N, 3) or (N, 3, L), got (4, 5)",
    ),
    (
        "BatchNorm1d-rank",
        lambda: nnkit.BatchNorm1d(3),
        np.zeros((4, 3, 2, 2)),
        ValueError,
        "expected input of shape (N, 3) or (N, 3, L), got (4, 3, 2, 2)",
    ),
    (
        "BatchNorm1d-one-sample",
        lambda: nnkit.BatchNorm1d(3),
        np.zeros((1, 3)),
        ValueError,
        "BatchNorm1d(num_features=3): Expected more than 1 value per channel when training, "
        "got input of shape (1, 3)",
    ),
    (
        "BatchNorm2d-one-pixel",
        lambda: nnkit.BatchNorm2d(2),
        np.zeros((1, 2, 1, 1)),
        ValueError,
        "Expected more than 1 value per channel when training",
    ),
    (
        "BatchNorm1d-one-sample-no-running-stats-eval",
        lambda: nnkit.BatchNorm1d(3, track_running_stats=False).eval(),
        np.zeros((1, 3)),
        ValueError,
        "Expected more than 1 value per channel",
    ),
    (
        "GroupNorm-channels",
        lambda: nnkit.GroupNorm(2, 6),
        np.zeros((3, 4, 5)),
        ValueError,
        "GroupNorm(num_groups=2, num_channels=6) expected input of shape (N, 6, *), got (3, 4, 5)",
    ),
    (
        "GroupNorm-rank",
        lambda: nnkit.GroupNorm(2, 6),
        np.zeros(6),
        ValueError,
        "expected input of shape (N, 6, *), got (6,)",
    ),
    (
        "LayerNorm-trailing-shape",
        lambda: nnkit.LayerNorm(4),
        np.zeros((3, 5)),
        ValueError,
        "LayerNorm(normalized_shape=(4,)) expected input of shape (*, 4), got (3, 5)",
    ),
    (
        "LayerNorm-too-few-axes",
        lambda: nnkit.LayerNorm((2, 4)),
        np.zeros(4),
        ValueError,
        "LayerNorm(normalized_shape=(2, 4)) expected input of shape (*, 2, 4), got (4,)",
    ),
    (
        "Dropout2d-2d-input",
        lambda: nnkit.Dropout2d(0.5),
        np.zeros((3, 4)),
        ValueError,
        "Dropout2d(p=0.5) expected input of shape (N, C, H, W) or (N, C, L), got (3, 4)",
    ),
    (
        "Dropout2d-5d-input",
        lambda: nnkit.Dropout2d(0.5),
        np.zeros((1, 2, 3, 4, 5)),
        ValueError,
        "got (1, 2, 3, 4, 5)",
    ),
    (
        "Embedding-float-ids",
        lambda: nnkit.Embedding(10, 3),
        np.array([[1.0, 2.0]]),
        TypeError,
        "Embedding(10, 3) expects integer indices, got dtype float64",
    ),
    (
        "Embedding-bool-ids",
        lambda: nnkit.Embedding(10, 3),
        np.array([True, False]),
        TypeError,
        "expects integer indices, got dtype bool",
    ),
    (
        "Embedding-string-ids",
        lambda: nnkit.Embedding(10, 3),
        np.array(["a"]),
        TypeError,
        "expects a numeric array of integer indices",
    ),
    (
        "Embedding-index-too-large",
        lambda: nnkit.Embedding(10, 3),
        np.array([[1, 10]]),
        IndexError,
        "Embedding(10, 3) got index 10, outside [0, 9]",
    ),
    (
        "Embedding-negative-index",
        lambda: nnkit.Embedding(10, 3, padding_idx=-1),
        np.array([[1, -1]], dtype=np.int8),
        IndexError,
        "Embedding(10, 3, padding_idx=9) got index -1, outside [0, 9]",
    ),
]


@pytest.mark.parametrize(
    "make, x, error, message", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_names_the_layer(
    make: Callable[[], nnkit.Module], x: Any, error: type[Exception], message: str
) -> None:
    layer = make()
    with pytest.raises(error, match=re.escape(message)):
        layer(x)
    with pytest.raises(RuntimeError, match="call forward"):
        layer.backward(np.zeros((1, 1)))  # the failed forward cached nothing


BAD_GRAD: list[tuple[str, Callable[[], nnkit.Module], Any, tuple[int, ...]]] = [
    ("Dense-3d", lambda: nnkit.Dense(4, 2), np.zeros((3, 5, 4)), (3, 1, 2)),
    ("Dense-3d-as-rows", lambda: nnkit.Dense(4, 2), np.zeros((3, 5, 4)), (15, 2)),
    ("LayerNorm", lambda: nnkit.LayerNorm(4), np.zeros((3, 4)), (3, 1)),
    ("BatchNorm1d", lambda: nnkit.BatchNorm1d(4), np.eye(4), (4, 1)),
    ("BatchNorm1d-eval", lambda: nnkit.BatchNorm1d(4).eval(), np.eye(4), (1, 4)),
    ("BatchNorm2d", lambda: nnkit.BatchNorm2d(2), np.ones((2, 2, 3, 3)), (2, 2, 1, 3)),
    ("GroupNorm", lambda: nnkit.GroupNorm(2, 4), np.eye(4), (4, 1)),
    ("Dropout", lambda: nnkit.Dropout(0.5, rng=np.random.default_rng(0)), np.ones((3, 4)), (3, 1)),
    ("Dropout-eval", lambda: nnkit.Dropout(0.5).eval(), np.ones((3, 4)), (1, 4)),
    ("Dropout2d", lambda: nnkit.Dropout2d(0.5), np.ones((2, 3, 4)), (2, 3, 1)),
    ("Embedding", lambda: nnkit.Embedding(5, 2), np.array([[0, 1, 2]]), (1, 3, 1)),
]


@pytest.mark.parametrize(
    "make, x, grad_shape", [c[1:] for c in BAD_GRAD], ids=[c[0] for c in BAD_GRAD]
)
def test_grad_of_a_broadcastable_shape_is_refused(
    make: Callable[[], nnkit.Module], x: Any, grad_shape: tuple[int, ...]
) -> None:
    layer = make()
    y = layer(x)
    with pytest.raises(ValueError, match=re.escape(f"expected grad_out of shape {y.shape}")):
        layer.backward(np.ones(grad_shape))


BAD_ARGUMENTS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    (
        "Dropout-p-negative",
        lambda: nnkit.Dropout(-0.1),
        ValueError,
        "between 0 and 1, but got -0.1",
    ),
    ("Dropout-p-above-one", lambda: nnkit.Dropout(1.5), ValueError, "Dropout: dropout probability"),
    ("Dropout-p-nan", lambda: nnkit.Dropout(float("nan")), ValueError, "got nan"),
    ("Dropout-p-string", lambda: nnkit.Dropout("0.5"), TypeError, "Dropout p must be a real"),  # type: ignore[arg-type]
    ("Dropout2d-p", lambda: nnkit.Dropout2d(2), ValueError, "Dropout2d: dropout probability"),
    ("Dropout-rng", lambda: nnkit.Dropout(0.5, rng=0), TypeError, "np.random.Generator"),  # type: ignore[arg-type]
    ("BatchNorm-features", lambda: nnkit.BatchNorm1d(0), ValueError, "num_features must be >= 1"),
    (
        "BatchNorm-features-type",
        lambda: nnkit.BatchNorm2d(3.0),
        TypeError,
        "num_features must be an int",
    ),  # type: ignore[arg-type]
    ("BatchNorm-eps", lambda: nnkit.BatchNorm1d(3, eps=-1e-5), ValueError, "BatchNorm1d eps"),
    (
        "BatchNorm-momentum",
        lambda: nnkit.BatchNorm2d(3, momentum=1.5),
        ValueError,
        "[0, 1] or None",
    ),
    (
        "BatchNorm-momentum-type",
        lambda: nnkit.BatchNorm2d(3, momentum="0.1"),
        TypeError,
        "momentum",
    ),  # type: ignore[arg-type]
    ("BatchNorm-dtype", lambda: nnkit.BatchNorm1d(3, dtype=np.int64), TypeError, "floating"),
    (
        "GroupNorm-not-dividing",
        lambda: nnkit.GroupNorm(4, 6),
        ValueError,
        "num_channels must be divisible by num_groups: 6 channels do not split into 4",
    ),
    ("GroupNorm-groups", lambda: nnkit.GroupNorm(0, 6), ValueError, "num_groups must be >= 1"),
    ("GroupNorm-eps", lambda: nnkit.GroupNorm(2, 6, eps=float("inf")), ValueError, "eps"),
    ("LayerNorm-shape-zero", lambda: nnkit.LayerNorm(0), ValueError, "normalized_shape"),
    ("LayerNorm-shape-empty", lambda: nnkit.LayerNorm(()), ValueError, "normalized_shape"),
    ("LayerNorm-shape-float", lambda: nnkit.LayerNorm(4.0), ValueError, "normalized_shape"),  # type: ignore[arg-type]
    ("LayerNorm-eps-negative", lambda: nnkit.LayerNorm(4, eps=-1.0), ValueError, "eps"),
    ("LayerNorm-dtype", lambda: nnkit.LayerNorm(4, dtype=np.int32), TypeError, "floating"),
    ("Embedding-rows", lambda: nnkit.Embedding(0, 3), ValueError, "num_embeddings must be >= 1"),
    ("Embedding-dim", lambda: nnkit.Embedding(3, 2.5), TypeError, "embedding_dim must be an int"),  # type: ignore[arg-type]
    (
        "Embedding-padding-range",
        lambda: nnkit.Embedding(3, 2, padding_idx=3),
        ValueError,
        "[-3, 2]",
    ),
    (
        "Embedding-padding-type",
        lambda: nnkit.Embedding(3, 2, padding_idx=1.0),
        TypeError,
        "padding_idx",
    ),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    "make, error, message", [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS]
)
def test_bad_constructor_arguments(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        make()
