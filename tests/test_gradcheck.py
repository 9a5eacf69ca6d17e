"""gradcheck: passes correct gradients, names what is wrong otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nnkit


class Doubles(nnkit.Module):
    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.wrong = wrong
        self._seen = False

    def forward(self, x: Any) -> Any:
        self._seen = True
        return np.asarray(x) * 2.0

    def backward(self, grad_out: Any) -> Any:
        factor = 2.5 if self.wrong else 2.0
        return np.asarray(grad_out) * factor


def test_passes_and_returns_true() -> None:
    x = np.random.default_rng(0).normal(size=(3, 2))
    assert nnkit.gradcheck(Doubles(), x) is True
    assert nnkit.gradcheck(nnkit.Dense(2, 4), x) is True
    assert nnkit.gradcheck(nnkit.MSELoss(), x, np.zeros((3, 2))) is True


def test_failure_names_input_index_and_values() -> None:
    with pytest.raises(nnkit.GradcheckError, match=r"input x at index \(0, 0\): analytic"):
        nnkit.gradcheck(Doubles(wrong=True), np.ones((2, 2)))


def test_failure_names_parameter() -> None:
    class BadBias(nnkit.Dense):
        def backward(self, grad_out: Any) -> Any:
            dx = super().backward(grad_out)
            self.bias.grad[1] += 0.1  # type: ignore[union-attr]
            return dx

    with pytest.raises(nnkit.GradcheckError, match=r"parameter 'bias' at index \(1,\)"):
        nnkit.gradcheck(BadBias(2, 3), np.ones((2, 2)))


def test_does_not_modify_the_module() -> None:
    layer = nnkit.Dense(2, 2)
    before = layer.state_dict()
    nnkit.gradcheck(layer, np.ones((1, 2)))
    assert layer.weight.dtype == np.float32 and not layer.weight.grad.any()
    np.testing.assert_array_equal(layer.weight.data, before["weight"])


def test_argument_errors() -> None:
    with pytest.raises(TypeError, match="positional arguments"):
        nnkit.gradcheck(nnkit.Tanh(), np.ones(2), np.ones(2))  # Tanh takes one input
    with pytest.raises(TypeError, match="its input"):
        nnkit.gradcheck(nnkit.Tanh())
    with pytest.raises(TypeError, match=r"\(pred, target\)"):
        nnkit.gradcheck(nnkit.MSELoss(), np.ones(2))
    with pytest.raises(TypeError, match="Module or a Loss"):
        nnkit.gradcheck(lambda x: x, np.ones(2))  # type: ignore[arg-type]
