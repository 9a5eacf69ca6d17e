"""Initialisers: PyTorch's bounds, gains and fan modes, explicit rng, dtype."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nnkit import init

SHAPE = (200, 300)  # (fan_in, fan_out) in nnkit's Dense layout


def gen() -> np.random.Generator:
    return np.random.default_rng(0)


# (name, sampler, kind, expected bound for uniform / expected std for normal)
RANDOM: list[tuple[str, Callable[..., Any], str, float]] = [
    ("uniform", lambda s, r: init.uniform(s, r, -0.3, 0.3), "uniform", 0.3),
    ("normal", lambda s, r: init.normal(s, r, 0.0, 0.2), "normal", 0.2),
    ("xavier_uniform", lambda s, r: init.xavier_uniform(s, r), "uniform", math.sqrt(6 / 500)),
    ("xavier_uniform-gain", lambda s, r: init.xavier_uniform(s, r, gain=2.0), "uniform",
     2 * math.sqrt(6 / 500)),
    ("xavier_normal", lambda s, r: init.xavier_normal(s, r), "normal", math.sqrt(2 / 500)),
    ("kaiming_uniform", lambda s, r: init.kaiming_uniform(s, r), "uniform",
     math.sqrt(3) * math.sqrt(2 / (1 + 0.0)) / math.sqrt(200)),
    ("kaiming_uniform-a5", lambda s, r: init.kaiming_uniform(s, r, a=math.sqrt(5)), "uniform",
     1 / math.sqrt(200)),  # PyTorch's nn.Linear default: bound 1/sqrt(fan_in)
    ("kaiming_normal-fan_out-relu",
     lambda s, r: init.kaiming_normal(s, r, mode="fan_out", nonlinearity="relu"), "normal",
     math.sqrt(2) / math.sqrt(300)),
]


@pytest.mark.parametrize("name, sample, kind, value", RANDOM, ids=[r[0] for r in RANDOM])
def test_random_initialisers(
    name: str, sample: Callable[..., Any], kind: str, value: float
) -> None:
    w = sample(SHAPE, gen())
    assert w.shape == SHAPE and w.dtype == np.float32
    np.testing.assert_array_equal(w, sample(SHAPE, gen()))  # the rng decides everything
    if kind == "uniform":
        assert np.abs(w).max() <= value
        assert np.abs(w).max() > 0.99 * value
        assert w.std() == pytest.approx(value / math.sqrt(3), rel=0.02)
    else:
        assert w.std() == pytest.approx(value, rel=0.02)
        assert abs(w.mean()) < 0.05 * value


def test_constant_initialisers_and_dtype() -> None:
    assert init.zeros(3).tolist() == [0, 0, 0]
    assert init.ones((2, 2), dtype=np.float64).dtype == np.float64
    assert init.constant((2,), 0.5).tolist() == [0.5, 0.5]
    assert init.xavier_uniform((3, 4), gen(), dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize(
    "name, param, gain",
    [("linear", None, 1.0), ("sigmoid", None, 1.0), ("tanh", None, 5 / 3),
     ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
     ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("selu", None, 0.75)],
)
def test_calculate_gain(name: str, param: float | None, gain: float) -> None:
    assert init.calculate_gain(name, param) == pytest.approx(gain)


def test_fans() -> None:
    assert init.fans((3, 5)) == (3, 5)
    assert init.fans((8, 4, 3, 3)) == (4 * 9, 8 * 9)  # convolution layout (out, in, kh, kw)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: init.fans((3,)), "at least 2 dimensions"),
        (lambda: init.calculate_gain("swish"), "unknown nonlinearity"),
        (lambda: init.kaiming_uniform((2, 2), gen(), mode="fan"), "mode must be"),  # type: ignore[arg-type]
        (lambda: init.uniform((2, 2), gen(), 1.0, 0.0), "a <= b"),
        (lambda: init.normal((2, 2), gen(), std=-1.0), "std >= 0"),
    ],
)
def test_bad_arguments(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
