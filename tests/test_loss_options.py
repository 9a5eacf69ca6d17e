"""Loss options beyond the torch parity table: reduction="none" and its upstream gradient,
class weights, ignore_index and N-D layouts, and their bad input."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from cases import LOSSES, LossCase, ids

import nnkit


def _none(case: LossCase) -> nnkit.Loss:
    loss = case.make()
    return type(loss)(**{**loss.get_config(), "reduction": "none"})


@pytest.mark.parametrize("case", LOSSES, ids=ids(LOSSES))
def test_none_returns_the_losses_whose_sum_is_the_summed_loss(case: LossCase) -> None:
    pred, target = case.data(np.random.default_rng(0), 6)
    none = _none(case)
    summed = type(none)(**{**none.get_config(), "reduction": "sum"})
    losses = none(pred, target)
    assert isinstance(losses, np.ndarray) and losses.shape[0] == 6
    assert np.isclose(losses.sum(), summed(pred, target), rtol=1e-12)
    np.testing.assert_allclose(none.backward(), summed.backward(), rtol=1e-12, atol=1e-15)
    # the gradient of sum(u * losses) for an upstream u, against central differences
    u = np.random.default_rng(1).normal(size=losses.shape)
    grad = none.backward(u)
    step = np.zeros_like(pred)
    for index in [(0,) + (0,) * (pred.ndim - 1), tuple(d - 1 for d in pred.shape)]:
        step[...] = 0
        step[index] = 1e-6
        plus = np.sum(u * none(pred + step, target))
        minus = np.sum(u * none(pred - step, target))
        assert np.isclose(grad[index], (plus - minus) / 2e-6, rtol=1e-5, atol=1e-8)


def test_backward_scales_by_a_scalar_upstream_gradient() -> None:
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(4, 3)), rng.integers(0, 3, size=4)
    loss = nnkit.CrossEntropyLoss(weight=[1.0, 2.0, 0.5])
    loss(pred, target)
    np.testing.assert_allclose(loss.backward(0.25), 0.25 * loss.backward(), rtol=1e-15)


@pytest.mark.parametrize(
    "reduction, grad_out, message",
    [
        ("mean", np.ones(4), "takes a scalar grad_out (the loss is a scalar), got shape (4,)"),
        ("sum", np.ones((4, 1)), "takes a scalar grad_out"),
        ("none", np.ones((4, 1)), "expected grad_out of the losses' shape (4,), got (4, 1)"),
        ("none", 1.0, "expected grad_out of the losses' shape (4,), got ()"),
    ],
)
def test_backward_refuses_an_upstream_gradient_of_the_wrong_shape(
    reduction: Any, grad_out: Any, message: str
) -> None:
    loss = nnkit.NLLLoss(reduction=reduction)
    loss(np.log(np.full((4, 3), 1 / 3)), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=re.escape(message)):
        loss.backward(grad_out)


def test_ignored_targets_contribute_nothing_and_the_mean_skips_them() -> None:
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(6, 3, 2)), rng.integers(0, 3, size=(6, 2))
    t_ignored = t.copy()
    t_ignored[::2, 1] = -100
    loss = nnkit.CrossEntropyLoss(reduction="none")
    per_sample = loss(x, t_ignored)
    assert np.all(per_sample[::2, 1] == 0)
    assert np.all(loss.backward()[::2, :, 1] == 0)
    kept = t_ignored != -100
    mean = nnkit.CrossEntropyLoss()(x, t_ignored)
    np.testing.assert_allclose(mean, per_sample[kept].mean(), rtol=1e-12)
    assert np.allclose(per_sample[kept], nnkit.CrossEntropyLoss(reduction="none")(x, t)[kept])


def test_weighted_mean_divides_by_the_weights_of_the_targets() -> None:
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(8, 3)), rng.integers(0, 3, size=8)
    w = np.array([0.2, 1.0, 3.0])
    per_sample = nnkit.CrossEntropyLoss(reduction="none")(x, t)
    weighted = nnkit.CrossEntropyLoss(weight=w)(x, t)
    np.testing.assert_allclose(weighted, np.sum(w[t] * per_sample) / np.sum(w[t]), rtol=1e-12)


@pytest.mark.parametrize(
    "make, target",
    [
        (lambda: nnkit.CrossEntropyLoss(), np.full(3, -100)),
        (lambda: nnkit.NLLLoss(ignore_index=1), np.ones(3, dtype=int)),
        (lambda: nnkit.CrossEntropyLoss(weight=[0.0, 1.0]), np.zeros(3, dtype=int)),
    ],
)
def test_a_mean_over_no_counted_target_is_an_error_not_nan(make: Any, target: Any) -> None:
    loss = make()
    with pytest.raises(ValueError, match="every target of the batch is ignored"):
        loss(np.log(np.full((3, 2), 0.5)), target)
    with pytest.raises(RuntimeError, match="before a successful forward"):
        loss.backward()
    summed = type(loss)(**{**loss.get_config(), "reduction": "sum"})
    assert summed(np.log(np.full((3, 2), 0.5)), target) == 0.0


def test_fortran_ordered_logits_give_the_same_gradient() -> None:
    """The class index gradient is scattered by flat position: it must not depend on pred's
    memory layout (a transposed array is Fortran-ordered)."""
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(5, 4)), rng.integers(0, 4, size=5)
    for make in (nnkit.CrossEntropyLoss, nnkit.NLLLoss):
        loss = make()
        pred = nnkit.functional.log_softmax(x, axis=1)
        loss(pred, t)
        expected = loss.backward()
        loss(np.asfortranarray(pred), t)
        np.testing.assert_array_equal(loss.backward(), expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nnkit.CrossEntropyLoss("sum", 0.1, weight=[1.0, 2.0], ignore_index=3),
        lambda: nnkit.NLLLoss("none", weight=np.array([1, 2]), ignore_index=-1),
    ],
)
def test_config_rebuilds_the_loss(make: Callable[[], nnkit.Loss]) -> None:
    loss = make()
    again = type(loss)(**loss.get_config())
    assert repr(again) == repr(loss)
    assert again.get_config()["weight"] == [1.0, 2.0]
    assert "ignore_index=" in repr(loss)


BAD: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    (
        "weight-length",
        lambda: nnkit.CrossEntropyLoss(weight=[1.0, 2.0])(np.zeros((2, 3)), np.array([0, 1])),
        ValueError,
        "CrossEntropyLoss has 2 class weights for pred with 3 classes (axis 1 of (2, 3))",
    ),
    (
        "weight-2d",
        lambda: nnkit.NLLLoss(weight=np.ones((2, 2))),
        ValueError,
        "NLLLoss weight must be a 1-D array of finite numbers",
    ),
    (
        "weight-nan",
        lambda: nnkit.CrossEntropyLoss(weight=[1.0, float("nan")]),
        ValueError,
        "finite",
    ),
    ("ignore-bool", lambda: nnkit.NLLLoss(ignore_index=True), TypeError, "ignore_index must be"),
    (
        "nd-target-shape",
        lambda: nnkit.CrossEntropyLoss()(np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=int)),
        ValueError,
        "expected class indices of shape (2, 4) for pred of shape (2, 3, 4), got (2, 3)",
    ),
    (
        "nd-probs-shape",
        lambda: nnkit.CrossEntropyLoss()(np.zeros((2, 3, 4)), np.full((2, 4, 3), 0.25)),
        ValueError,
        "same shape",
    ),
    (
        "nd-float-indices",
        lambda: nnkit.CrossEntropyLoss()(np.zeros((2, 3, 4)), np.zeros((2, 4))),
        TypeError,
        "expects integer class indices, got dtype float64",
    ),
    (
        "nd-index-range-beside-ignored",
        lambda: nnkit.NLLLoss()(np.zeros((2, 3, 2)) - 1, np.array([[0, -100], [5, 1]])),
        ValueError,
        "NLLLoss got class index 5, outside [0, 2]",
    ),
    (
        "1d-pred",
        lambda: nnkit.NLLLoss()(np.zeros(3), np.array(1)),
        ValueError,
        "expects pred of shape (N, C) or (N, C, d1, ...)",
    ),
]


@pytest.mark.parametrize("make, error, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_loss_options_and_input(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        make()
