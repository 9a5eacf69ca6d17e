"""Every built-in layer and loss passes the public conformance harness, and the harness
catches the contract violations it promises to catch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cases import LAYERS, LOSSES, LayerCase, LossCase, ids

import nnkit
from nnkit.testing import ConformanceError, check_module


@pytest.mark.parametrize("case", LAYERS, ids=ids(LAYERS))
def test_layer_conforms(case: LayerCase) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=case.in_shape)
    check_module(case.make(rng), x, batch_independent=case.batch_independent)


@pytest.mark.parametrize("case", LOSSES, ids=ids(LOSSES))
def test_loss_conforms(case: LossCase) -> None:
    pred, target = case.data(np.random.default_rng(0), 6)
    check_module(case.make(), pred, target)


# -- the harness must fail on broken layers ---------------------------------------------------


class WrongWeightGrad(nnkit.Dense):
    def backward(self, grad_out: Any) -> Any:
        dx = super().backward(grad_out)
        self.weight.grad *= 1.01  # planted bug: a 1% error in dL/dweight
        return dx


class WrongInputGrad(nnkit.Sigmoid):
    def backward(self, grad_out: Any) -> Any:
        y, dy = self._cached(grad_out)
        return dy * y  # planted bug: forgot the (1 - y) factor


class AssignsGrad(nnkit.Dense):
    def backward(self, grad_out: Any) -> Any:
        self.weight.grad[...] = 0  # planted bug: assigns instead of accumulating
        self.bias.grad[...] = 0  # type: ignore[union-attr]
        return super().backward(grad_out)


class MutatesInput(nnkit.Tanh):
    def forward(self, x: Any) -> Any:
        y = super().forward(x)
        x *= 1.0 + 1e-3  # planted bug
        return y


class MutatesGrad(nnkit.Tanh):
    def backward(self, grad_out: Any) -> Any:
        dx = super().backward(grad_out)
        grad_out *= 2  # planted bug
        return dx


class Promotes(nnkit.Dense):
    def forward(self, x: Any) -> Any:
        return super().forward(x).astype(np.float64)  # planted bug: silent promotion

    def backward(self, grad_out: Any) -> Any:
        return super().backward(grad_out.astype(self.weight.data.dtype))


class SkipsBiasInAccumulate(nnkit.Dense):
    def accumulate_grad(self, grad_out: Any) -> None:
        x = self._x
        self.weight.grad += x.T @ grad_out  # type: ignore[union-attr]  # planted bug: no bias


class PromotesFloat64Input(nnkit.Module):
    """Correct in every dtype it is built in, but computes in the input's dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nnkit.Parameter(np.ones(3))
        self._x: Any = None

    def forward(self, x: Any) -> Any:
        self._x = np.asarray(x)
        return self._x * self.g.data  # planted bug: float64 input gives float64 output

    def backward(self, grad_out: Any) -> Any:
        if self._x is None:
            raise self._no_cache_error()
        self.g.grad += (grad_out * self._x).sum(axis=0).astype(self.g.dtype)
        return (grad_out * self.g.data).astype(self._x.dtype)


class FollowsGradDtype(nnkit.Tanh):
    def backward(self, grad_out: Any) -> Any:
        y = self._y
        if y is None:
            raise self._no_cache_error()
        return grad_out * (1 - y * y)  # planted bug: float64 grad_out promotes dx


class NoCacheCheck(nnkit.Module):
    def forward(self, x: Any) -> Any:
        return np.asarray(x) * 2.0

    def backward(self, grad_out: Any) -> Any:
        return np.asarray(grad_out) * 2.0  # planted bug: silently works before forward


class MixesBatch(nnkit.Module):
    """Subtracts the batch mean: correct gradients, but samples are not independent."""

    def __init__(self) -> None:
        super().__init__()
        self._x: Any = None

    def forward(self, x: Any) -> Any:
        self._x = x = np.asarray(x)
        return x - x.mean(axis=0)

    def backward(self, grad_out: Any) -> Any:
        if self._x is None:
            raise self._no_cache_error()
        g = self._grad_like(grad_out, self._x.shape, self._x.dtype)
        return g - g.mean(axis=0)


class WrongLossGrad(nnkit.MSELoss):
    def _backward(self, cached: Any, scale: float) -> Any:
        return cached * scale  # planted bug: forgot the factor 2


BROKEN = [
    (WrongWeightGrad(3, 2, rng=np.random.default_rng(1)), "parameter 'weight'"),
    (WrongInputGrad(), "input x"),
    (AssignsGrad(3, 2, rng=np.random.default_rng(1)), "accumulate"),
    (MutatesInput(), "mutated its input"),
    (MutatesGrad(), "mutated grad_out"),
    (Promotes(3, 2, rng=np.random.default_rng(1)), "in float32 .* returned float64"),
    (NoCacheCheck(), "before forward"),
    (FollowsGradDtype(), "given a float64 grad_out returned float64"),
    (PromotesFloat64Input(), "float64 input into a float32 module"),
    (SkipsBiasInAccumulate(3, 2, rng=np.random.default_rng(1)), "accumulate_grad"),
    (MixesBatch(), "row 0"),
]


@pytest.mark.parametrize("module, message", BROKEN, ids=[type(m).__name__ for m, _ in BROKEN])
def test_harness_catches_planted_bug(module: nnkit.Module, message: str) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(AssertionError, match=message):
        check_module(module, x)


def test_harness_catches_planted_loss_bug() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(nnkit.GradcheckError, match="input pred"):
        check_module(WrongLossGrad(), rng.normal(size=(4, 2)), rng.normal(size=(4, 2)))


def test_harness_errors_are_assertion_errors() -> None:
    assert issubclass(ConformanceError, AssertionError)
    assert issubclass(nnkit.GradcheckError, AssertionError)


def test_harness_rejects_wrong_arguments() -> None:
    with pytest.raises(TypeError, match="target"):
        check_module(nnkit.MSELoss(), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="Module or a Loss"):
        check_module(object(), np.zeros((2, 2)))  # type: ignore[arg-type]
