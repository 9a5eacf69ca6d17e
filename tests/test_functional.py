"""nnkit.functional against plain formulas where those are safe, and its stable forms where
they are not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnkit import functional as F

moderate = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
    elements=st.floats(-30, 30),
)


@settings(max_examples=50, deadline=None)
@given(x=moderate)
def test_against_plain_formulas(x: np.ndarray) -> None:
    np.testing.assert_allclose(F.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(
        F.log_sigmoid(x), np.log(1 / (1 + np.exp(-x))), rtol=1e-10, atol=1e-14
    )
    np.testing.assert_allclose(F.softplus(x), np.log1p(np.exp(x)), rtol=1e-12)
    e = np.exp(x)
    np.testing.assert_allclose(F.logsumexp(x), np.log(e.sum(axis=-1)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.softmax(x), e / e.sum(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(
        F.log_softmax(x), np.log(e / e.sum(axis=-1, keepdims=True)), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_axis_and_keepdims(axis: int) -> None:
    x = np.random.default_rng(0).normal(size=(3, 4))
    assert np.allclose(F.softmax(x, axis=axis).sum(axis=axis), 1)
    assert F.logsumexp(x, axis=axis, keepdims=True).shape[axis] == 1
    np.testing.assert_allclose(
        F.log_softmax(x, axis=axis), x - F.logsumexp(x, axis=axis, keepdims=True)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tails_are_exact_and_dtype_is_kept(dtype: Any) -> None:
    x = np.array([-1e4, -100.0, 100.0, 1e4], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = F.sigmoid(x)
        ls = F.log_sigmoid(x)
        sp = F.softplus(x)
    assert s.dtype == ls.dtype == sp.dtype == dtype
    assert s[0] == 0 and s[-1] == 1
    assert ls[0] == pytest.approx(-1e4) and ls[1] == pytest.approx(-100.0)
    assert sp[-1] == pytest.approx(1e4) and sp[2] == pytest.approx(100.0)
    # relative precision in the lower tail, where 1 - sigmoid(-x) would lose it all
    assert F.sigmoid(np.array([-30.0]))[0] == pytest.approx(np.exp(-30.0) / (1 + np.exp(-30.0)))


def test_softmax_of_huge_logits() -> None:
    x = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_array_equal(F.softmax(x), [[1, 0, 0]])
        assert F.log_softmax(x)[0, 0] == 0
        assert F.logsumexp(x)[0] == pytest.approx(1e4)


def test_empty_arrays() -> None:
    assert F.softmax(np.zeros((0, 3))).shape == (0, 3)
    assert F.log_softmax(np.zeros((0, 3))).shape == (0, 3)
    assert F.logsumexp(np.zeros((0, 3))).shape == (0,)
