"""Activations, losses and their gradients stay finite for any finite input in [-1e4, 1e4],
in float32 and float64, without an overflow, invalid-value or divide-by-zero warning."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cases import ACTIVATIONS, LayerCase, ids
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnkit
from nnkit import functional as F

DTYPES = [np.float32, np.float64]
EXTREMES = np.array([[-1e4, -1000.0, -89.0, -30.0, -1e-30, 0.0, 1e-30, 30.0, 89.0, 1000.0, 1e4]])


def values(dtype: Any) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(
        dtype, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(-1e4, 1e4, width=np.dtype(dtype).itemsize * 8),
    )


def assert_finite(*arrays: Any) -> None:
    for array in arrays:
        assert np.all(np.isfinite(array)), array


def check_activation(case: LayerCase, x: np.ndarray) -> None:
    """Output and gradient finite, in x's dtype, with every floating-point warning an error."""
    layer = case.make(np.random.default_rng(0))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    assert_finite(y, dx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ACTIVATIONS, ids=ids(ACTIVATIONS))
def test_activation_extremes(case: LayerCase, dtype: Any) -> None:
    check_activation(case, EXTREMES.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ACTIVATIONS, ids=ids(ACTIVATIONS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_activation_any_finite_input(case: LayerCase, dtype: Any, data: st.DataObject) -> None:
    check_activation(case, data.draw(values(dtype)))


def loss_inputs(name: str, x: np.ndarray, rng: np.random.Generator) -> tuple[Any, Any]:
    n, c = x.shape
    if name == "BCELoss":
        return F.sigmoid(x), rng.integers(0, 2, size=x.shape).astype(x.dtype)
    if name in ("CrossEntropyLoss", "NLLLoss"):
        pred = F.log_softmax(x) if name == "NLLLoss" else x
        return pred, rng.integers(0, c, size=n)
    if name == "BCEWithLogitsLoss":
        return x, rng.integers(0, 2, size=x.shape).astype(x.dtype)
    return x, rng.uniform(-1e4, 1e4, size=x.shape).astype(x.dtype)


LOSS_MAKERS = {
    "MSELoss": nnkit.MSELoss,
    "L1Loss": nnkit.L1Loss,
    "HuberLoss": nnkit.HuberLoss,
    "BCELoss": nnkit.BCELoss,
    "BCEWithLogitsLoss": nnkit.BCEWithLogitsLoss,
    "CrossEntropyLoss": lambda: nnkit.CrossEntropyLoss(label_smoothing=0.1),
    "NLLLoss": nnkit.NLLLoss,
}


def check_loss(name: str, x: np.ndarray, seed: int) -> None:
    """Loss and gradient finite, the gradient in x's dtype, every warning an error."""
    pred, target = loss_inputs(name, x, np.random.default_rng(seed))
    loss_fn = LOSS_MAKERS[name]()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss_fn(pred, target)
        grad = loss_fn.backward()
    assert np.isfinite(value)
    assert grad.dtype == x.dtype
    assert_finite(grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSS_MAKERS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_loss_any_finite_input(name: str, dtype: Any, data: st.DataObject) -> None:
    check_loss(name, data.draw(values(dtype)), seed=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSS_MAKERS))
def test_loss_extremes(name: str, dtype: Any) -> None:
    check_loss(name, np.concatenate([EXTREMES, -EXTREMES]).astype(dtype), seed=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_at_exact_zero_and_one_is_clamped_like_pytorch(dtype: Any) -> None:
    loss = nnkit.BCELoss(reduction="sum")
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss(np.array([[0.0, 1.0]], dtype=dtype), np.array([[1.0, 0.0]], dtype=dtype))
        grad = loss.backward()
    assert value == pytest.approx(200.0)  # each log term clamped at -100
    assert_finite(grad)


F32, F64 = np.float32, np.float64

# (id, loss, pred, target, dtype, the loss: finite or inf), the limits docs/losses.md states
LIMITS: list[tuple[str, nnkit.Loss, Any, Any, Any, bool]] = [
    ("mse-1e20-float32", nnkit.MSELoss(), [[1e20]], [[0.0]], F32, False),
    ("mse-1e20-float64", nnkit.MSELoss(), [[1e20]], [[0.0]], F64, True),
    ("mse-sum-overflows", nnkit.MSELoss(), [[1e19]] * 10, [[0.0]] * 10, F32, False),
    ("ce-1e38-apart", nnkit.CrossEntropyLoss(), [[1e38, -1e38]], [1], F32, True),
    ("ce-6e38-apart", nnkit.CrossEntropyLoss(), [[3e38, -3e38]], [1], F32, False),
    ("bce-logits-3e38", nnkit.BCEWithLogitsLoss(), [[3e38, -3e38]], [[0.0, 0.0]], F32, True),
    ("huber-3e38", nnkit.HuberLoss(), [[3e38]], [[-3e38]], F32, False),
    ("bce-extremes", nnkit.BCELoss(), [[0.0, 1.0]], [[1.0, 0.0]], F32, True),
]


@pytest.mark.parametrize(
    ("loss_fn", "pred", "target", "dtype", "finite"),
    [c[1:] for c in LIMITS],
    ids=[c[0] for c in LIMITS],
)
def test_a_loss_beyond_the_dtype_is_inf_as_documented(
    loss_fn: nnkit.Loss, pred: Any, target: Any, dtype: Any, finite: bool
) -> None:
    """Beyond [-1e4, 1e4] the loss is finite exactly when its value fits the dtype; the
    gradients of these stay finite (docs/losses.md, What stays finite)."""
    target_array = np.asarray(target, dtype=dtype) if isinstance(target[0], list) else target
    with np.errstate(over="ignore"):
        value = loss_fn(np.asarray(pred, dtype=dtype), np.asarray(target_array))
        grad = loss_fn.backward()
    assert np.isfinite(value) == finite and (finite or value == np.inf)
    if not isinstance(loss_fn, nnkit.MSELoss):
        assert_finite(grad)
