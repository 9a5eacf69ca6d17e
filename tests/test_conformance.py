"""Every built-in layer and loss passes the public conformance harness, and the harness
catches the contract violations it promises to catch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cases import LAYERS, LOSSES, LayerCase, LossCase, ids
from stateful_layers import Center, Noise

import nnkit
from nnkit.testing import ConformanceError, check_module


@pytest.mark.parametrize("case", LAYERS, ids=ids(LAYERS))
def test_layer_conforms(case: LayerCase) -> None:
    rng = np.random.default_rng(0)
    xs = case.inputs(rng)
    check_module(
        case.make(rng), *xs, batch_independent=case.batch_independent, **case.options  # type: ignore[arg-type]
    )


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
    (PromotesFloat64Input(), "float64 input into a float32 module"),
    (SkipsBiasInAccumulate(3, 2, rng=np.random.default_rng(1)), "accumulate_grad"),
    (MixesBatch(), "sample 0"),
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


# -- planted bugs in stateful and multi-input modules -----------------------------------------


class ScaleShift(nnkit.Module):
    """y = x * gamma + beta, with gamma = 1 and beta = 0 at construction."""

    def __init__(self, features: int, wrong: bool = False) -> None:
        super().__init__()
        self.gamma = nnkit.Parameter(np.ones(features))
        self.beta = nnkit.Parameter(np.zeros(features))
        self.wrong = wrong
        self._x: Any = None

    def forward(self, x: Any) -> Any:
        self._x = nnkit.module.as_float_array(x, self.gamma.dtype)
        return self._x * self.gamma.data + self.beta.data

    def backward(self, grad_out: Any) -> Any:
        if self._x is None:
            raise self._no_cache_error()
        self.gamma.add_grad((grad_out * self._x).sum(axis=0))
        self.beta.add_grad(grad_out.sum(axis=0))
        return grad_out.copy() if self.wrong else grad_out * self.gamma.data


class StatsInPlainArray(Center):
    """Keeps its running mean as a plain array: state_dict and saving lose it."""

    def __init__(self, features: int) -> None:
        super().__init__(features)
        self.running = np.zeros(features, dtype=np.float32)
        del self.running_mean

    def forward(self, x: Any) -> Any:
        x = nnkit.module.as_float_array(x)
        self._shape, self._dtype, self._trained = x.shape, x.dtype, self.training
        if self.training:
            self.running = 0.5 * self.running + 0.5 * x.mean(axis=0)
            return x - x.mean(axis=0)
        return x - self.running.astype(x.dtype)


class ForgetsMask(Noise):
    def backward(self, grad_out: Any) -> Any:
        if self._mask is None:
            raise self._no_cache_error()
        return grad_out / (1 - self.p)  # planted bug: the mask is not applied


class SecondInputGradWrong(nnkit.Multiply):
    def backward(self, grad_out: Any) -> Any:
        a, b = super().backward(grad_out)
        return a, b * 1.1  # planted bug


class UnseededNoise(Noise):
    def forward(self, x: Any) -> Any:
        if not self.training:
            return super().forward(x) * (1 + 1e-3 * np.random.default_rng().random())  # planted
        return super().forward(x)


STATEFUL_BROKEN = [
    ("ScaleShift", lambda: ScaleShift(3, wrong=True), 1, "input x"),
    ("StatsInPlainArray", lambda: StatsInPlainArray(3), 1, "state_dict does not hold"),
    ("ForgetsMask", lambda: ForgetsMask(0.5, rng=np.random.default_rng(0)), 1, "input x"),
    ("SecondInputGradWrong", SecondInputGradWrong, 2, "input 1"),
    ("UnseededNoise", lambda: UnseededNoise(0.5, rng=np.random.default_rng(0)), 1, "two forwards"),
]


@pytest.mark.parametrize(
    "make, n_inputs, message",
    [case[1:] for case in STATEFUL_BROKEN],
    ids=[case[0] for case in STATEFUL_BROKEN],
)
def test_harness_catches_planted_bug_in_stateful_or_multi_input_module(
    make: Any, n_inputs: int, message: str
) -> None:
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(4, 3)) for _ in range(n_inputs)]
    with pytest.raises(AssertionError, match=message):
        check_module(make(), *xs, batch_independent="eval", empty_batch="eval")


def test_correct_scale_shift_passes_and_its_bug_hides_without_perturbation() -> None:
    x = np.random.default_rng(0).normal(size=(4, 3))
    check_module(ScaleShift(3), x)
    nnkit.gradcheck(ScaleShift(3, wrong=True), x, perturb=False)  # gamma = 1 hides the bug
    with pytest.raises(nnkit.GradcheckError, match="input x"):
        nnkit.gradcheck(ScaleShift(3, wrong=True), x)


class FollowsGradDtype(nnkit.Tanh):
    """Lets a float64 grad_out promote dx (plain NumPy); nnkit never sends one to float32."""

    def backward(self, grad_out: Any) -> Any:
        y = self._y
        if y is None:
            raise self._no_cache_error()
        return grad_out * (1 - y * y)


def test_harness_accepts_a_layer_that_follows_numpy_promotion() -> None:
    check_module(FollowsGradDtype(), np.random.default_rng(0).normal(size=(4, 3)))


class CountsForwards(nnkit.Dense):
    calls = 0

    def forward(self, x: Any) -> Any:
        CountsForwards.calls += 1
        return super().forward(x)


@pytest.mark.parametrize("max_elements, bound", [(64, 2 * 64 * 3 + 40), (8, 2 * 8 * 3 + 40)])
def test_gradcheck_samples_a_bounded_number_of_elements(max_elements: int, bound: int) -> None:
    """Dense(128, 256) on (32, 128) has 4096 + 32768 + 256 elements to differentiate; the
    default check evaluates at most max_elements of each (two forwards each)."""
    CountsForwards.calls = 0
    x = np.random.default_rng(0).normal(size=(32, 128))
    check_module(CountsForwards(128, 256), x, max_elements=max_elements)
    assert CountsForwards.calls <= bound


def test_gradcheck_can_check_every_element() -> None:
    class OneWrongWeight(nnkit.Dense):
        def backward(self, grad_out: Any) -> Any:
            dx = super().backward(grad_out)
            self.weight.grad[7, 11] += 0.5  # one element in 8 * 16 = 128
            return dx

    x = np.random.default_rng(0).normal(size=(4, 8))
    with pytest.raises(nnkit.GradcheckError, match=r"parameter 'weight' at index \(7, 11\)"):
        nnkit.gradcheck(OneWrongWeight(8, 16), x, max_elements=None)


class Lookup(nnkit.Module):
    """An embedding written on the contract: integer input, not differentiated."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nnkit.Parameter(np.random.default_rng(0).normal(size=(5, 2)))
        self._ids: Any = None

    def forward(self, ids: Any) -> Any:
        self._ids = np.asarray(ids)
        return self.table.data[self._ids]

    def backward(self, grad_out: Any) -> None:
        if self._ids is None:
            raise self._no_cache_error()
        np.add.at(self.table.grad, self._ids, grad_out)


def test_integer_inputs_are_passed_through_and_not_differentiated() -> None:
    ids = np.array([[0, 3], [4, 4], [1, 0]])
    check_module(Lookup(), ids)
