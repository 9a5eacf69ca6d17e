"""Gradient clipping: clip_grad_norm_ and clip_grad_value_, with property-based cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnkit.optim import clip_grad_norm_, clip_grad_value_
from nnkit.parameter import Parameter

# values on a 1e-3 grid in [-1e3, 1e3]: no subnormal underflow in |g|^p
finite = st.integers(-(10**6), 10**6).map(lambda i: i / 1000)
max_norms = st.just(0.0) | st.floats(1e-3, 2e3)
grad_arrays = st.lists(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=4), elements=finite),
    min_size=1,
    max_size=4,
)
norm_types = st.sampled_from([1.0, 2.0, 3.5, math.inf])


def _params(grads: list[np.ndarray]) -> list[Parameter]:
    params = [Parameter(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad[...] = g
    return params


def _total_norm(grads: list[np.ndarray], p: float) -> float:
    """The norm of all gradients concatenated into one vector, written out plainly."""
    flat = np.abs(np.concatenate([g.ravel() for g in grads]))
    if p == math.inf:
        return float(flat.max())
    return float(np.sum(flat**p) ** (1 / p))


@settings(max_examples=150, deadline=None)
@given(grads=grad_arrays, max_norm=max_norms, norm_type=norm_types)
def test_clip_grad_norm_rescales_to_max_norm(grads, max_norm, norm_type):
    params = _params(grads)
    returned = clip_grad_norm_(params, max_norm, norm_type)
    total = _total_norm(grads, norm_type)
    assert returned == pytest.approx(total, rel=1e-12, abs=1e-300)
    coef = max_norm / (returned + 1e-6)
    if coef >= 1:  # within the limit: untouched, bit for bit
        for p, g in zip(params, grads, strict=True):
            np.testing.assert_array_equal(p.grad, g)
    else:  # one common factor for every gradient, and the new norm is max_norm
        for p, g in zip(params, grads, strict=True):
            np.testing.assert_allclose(p.grad, g * coef, rtol=1e-12, atol=0)
        clipped = _total_norm([p.grad for p in params], norm_type)
        assert clipped <= max_norm * (1 + 1e-9)
        assert clipped == pytest.approx(max_norm * total / (total + 1e-6), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(grads=grad_arrays, clip_value=max_norms)
def test_clip_grad_value_clamps_elementwise(grads, clip_value):
    params = _params(grads)
    assert clip_grad_value_(params, clip_value) is None
    for p, g in zip(params, grads, strict=True):
        np.testing.assert_array_equal(p.grad, np.clip(g, -clip_value, clip_value))


def test_known_values_and_single_parameter():
    p = Parameter(np.zeros(2))
    p.grad[...] = [3.0, 4.0]
    assert clip_grad_norm_(p, max_norm=1.0) == 5.0
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-6)
    q = Parameter(np.zeros(3))
    q.grad[...] = [-2.0, 0.5, 7.0]
    assert clip_grad_norm_([q], max_norm=100.0, norm_type=math.inf) == 7.0
    assert clip_grad_norm_([q], max_norm=100.0, norm_type=1) == 9.5
    clip_grad_value_(q, 1.0)
    np.testing.assert_array_equal(q.grad, [-1.0, 0.5, 1.0])


def test_float32_gradients_stay_float32_and_in_place():
    p = Parameter(np.zeros((2, 3), dtype=np.float32))
    p.grad[...] = 10.0
    grad = p.grad
    total = clip_grad_norm_([p], np.float64(1.0))
    assert isinstance(total, float) and p.grad is grad and p.grad.dtype == np.float32
    clip_grad_value_([p], np.float64(0.1))
    assert p.grad is grad and p.grad.dtype == np.float32


def test_empty_parameters_and_non_finite_norms():
    assert clip_grad_norm_([], 1.0) == 0.0
    p = Parameter(np.zeros(2))
    p.grad[...] = [np.nan, 1.0]
    assert math.isnan(clip_grad_norm_([p], 1.0))
    assert np.isnan(p.grad).all()  # propagated, as in PyTorch, so that it is noticed


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: clip_grad_norm_(p, -1.0), ValueError, "max_norm must be >= 0, got -1.0"),
        (
            lambda p: clip_grad_norm_(p, 1.0, norm_type=0),
            ValueError,
            "norm_type must be > 0, or inf, got 0",
        ),
        (
            lambda p: clip_grad_norm_(p, 1.0, norm_type=-2.0),
            ValueError,
            "norm_type must be > 0, or inf, got -2.0",
        ),
        (lambda p: clip_grad_norm_(p, "1"), TypeError, "'1'"),
        (lambda p: clip_grad_value_(p, -0.5), ValueError, "clip_value must be >= 0, got -0.5"),
        (lambda p: clip_grad_norm_([p, np.zeros(2)], 1.0), TypeError, "item 1 is a ndarray"),
    ],
)
def test_argument_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(Parameter(np.ones(2)))
