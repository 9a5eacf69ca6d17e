"""Each loss against a plain reference written from PyTorch's documented formula."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import nnkit

rng = np.random.default_rng(42)
P = rng.normal(size=(5, 3))
T = rng.normal(size=(5, 3))
PROB = rng.uniform(0.01, 0.99, size=(5, 3))
BIN = rng.integers(0, 2, size=(5, 3)).astype(float)
IDX = rng.integers(0, 3, size=5)
Q = rng.dirichlet(np.ones(3), size=5)


def log_softmax(x: np.ndarray) -> np.ndarray:
    return np.log(np.exp(x) / np.exp(x).sum(axis=1, keepdims=True))


def huber(d: np.ndarray, delta: float) -> np.ndarray:
    return np.where(np.abs(d) < delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))


def smoothed(q: np.ndarray, eps: float) -> np.ndarray:
    return q * (1 - eps) + eps / q.shape[1]


ONE_HOT = np.eye(3)[IDX]
sig = 1 / (1 + np.exp(-P))

# (loss, pred, target, per-element or per-sample losses, elements counted by "mean")
REFERENCES: list[tuple[str, Callable[[], nnkit.Loss], Any, Any, np.ndarray]] = [
    ("mse", nnkit.MSELoss, P, T, (P - T) ** 2),
    ("l1", nnkit.L1Loss, P, T, np.abs(P - T)),
    ("huber", lambda: nnkit.HuberLoss(delta=0.7), P, T, huber(P - T, 0.7)),
    ("bce", nnkit.BCELoss, PROB, BIN, -(BIN * np.log(PROB) + (1 - BIN) * np.log(1 - PROB))),
    ("bce-logits", nnkit.BCEWithLogitsLoss, P, BIN,
     -(BIN * np.log(sig) + (1 - BIN) * np.log(1 - sig))),
    ("bce-logits-posw", lambda: nnkit.BCEWithLogitsLoss(pos_weight=[1.0, 2.0, 0.5]), P, BIN,
     -(np.array([1.0, 2.0, 0.5]) * BIN * np.log(sig) + (1 - BIN) * np.log(1 - sig))),
    ("ce", nnkit.CrossEntropyLoss, P, IDX, -(ONE_HOT * log_softmax(P)).sum(axis=1)),
    ("ce-smooth", lambda: nnkit.CrossEntropyLoss(label_smoothing=0.3), P, IDX,
     -(smoothed(ONE_HOT, 0.3) * log_softmax(P)).sum(axis=1)),
    ("ce-probs", nnkit.CrossEntropyLoss, P, Q, -(Q * log_softmax(P)).sum(axis=1)),
    ("ce-probs-smooth", lambda: nnkit.CrossEntropyLoss(label_smoothing=0.1), P, Q,
     -(smoothed(Q, 0.1) * log_softmax(P)).sum(axis=1)),
    ("nll", nnkit.NLLLoss, log_softmax(P), IDX, -log_softmax(P)[np.arange(5), IDX]),
]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "name, make, pred, target, losses", REFERENCES, ids=[r[0] for r in REFERENCES]
)
def test_matches_reference(
    name: str, make: Callable[[], nnkit.Loss], pred: Any, target: Any, losses: np.ndarray,
    reduction: str,
) -> None:
    loss_fn = type(make())(**{**make().get_config(), "reduction": reduction})
    expected = losses.mean() if reduction == "mean" else losses.sum()
    assert loss_fn(pred, target) == pytest.approx(expected, rel=1e-12)


def test_known_values() -> None:
    # values worked by hand from the definitions
    assert nnkit.MSELoss()(np.array([[1.0, 3.0]]), np.array([[0.0, 0.0]])) == 5.0
    assert nnkit.HuberLoss(delta=1.0)(np.array([[3.0]]), np.array([[0.0]])) == 2.5
    ce = nnkit.CrossEntropyLoss()(np.zeros((2, 4)), np.array([0, 3]))
    assert ce == pytest.approx(np.log(4))
    assert nnkit.BCEWithLogitsLoss()(np.array([0.0]), np.array([1.0])) == pytest.approx(np.log(2))


def test_cross_entropy_gradient_is_softmax_minus_target() -> None:
    loss = nnkit.CrossEntropyLoss()
    loss(P, IDX)
    probs = np.exp(log_softmax(P))
    np.testing.assert_allclose(loss.backward(), (probs - ONE_HOT) / 5, rtol=1e-12)


def test_cross_entropy_of_logits_equals_nll_of_log_softmax() -> None:
    assert nnkit.CrossEntropyLoss()(P, IDX) == pytest.approx(
        nnkit.NLLLoss()(nnkit.LogSoftmax()(P), IDX), rel=1e-12
    )


def test_bce_with_logits_equals_bce_of_sigmoid() -> None:
    assert nnkit.BCEWithLogitsLoss()(P, BIN) == pytest.approx(
        nnkit.BCELoss()(nnkit.Sigmoid()(P), BIN), rel=1e-10
    )


def test_repr_and_config() -> None:
    assert repr(nnkit.HuberLoss(delta=2.0)) == "HuberLoss(reduction='mean', delta=2.0)"
    loss = nnkit.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)
    assert type(loss)(**loss.get_config()).get_config() == loss.get_config()


def test_loss_returns_python_float_and_grad_keeps_dtype() -> None:
    loss = nnkit.MSELoss()
    value = loss(P.astype(np.float32), T)
    assert type(value) is float
    assert loss.backward().dtype == np.float32
