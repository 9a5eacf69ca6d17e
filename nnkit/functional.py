"""Numerically stable primitives shared by the layers and the losses.

No function here overflows in an intermediate step: each is finite, with no overflow,
invalid-value or divide-by-zero warning, for every finite input whose result fits the dtype
(in float32 and float64; ``log_softmax`` of logits more than the dtype's maximum apart is
``-inf``, as the exact value is beyond it). The tricks:

- ``softplus(x) = log(1 + e^x)`` is ``np.logaddexp(0, x)``, which never forms ``e^x`` for
  large ``x``.
- ``sigmoid(x) = exp(-softplus(-x))``: the exponent is never positive, so it cannot overflow,
  and the relative error stays small in both tails (unlike ``1 - 1/(1+e^x)``).
- ``log_sigmoid(x) = -softplus(-x)``.
- ``logsumexp``, ``softmax`` and ``log_softmax`` subtract the maximum along ``axis`` first, so
  the largest exponent is ``e^0 = 1``.

All functions preserve a floating input's dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["log_sigmoid", "log_softmax", "logsumexp", "sigmoid", "softmax", "softplus"]

Array = NDArray[Any]


def softplus(x: Array) -> Array:
    """``log(1 + exp(x))``, elementwise."""
    return np.logaddexp(0, x)


def _new(out: Any) -> Array:
    """``out`` as an array we may write into: a ufunc turns a 0-d input into a scalar."""
    return out if type(out) is np.ndarray else np.asarray(out)


def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))``, elementwise, computed as ``exp(-softplus(-x))``."""
    out = _new(np.negative(x))
    np.logaddexp(0, out, out=out)
    np.negative(out, out=out)
    return np.exp(out, out=out)


def log_sigmoid(x: Array) -> Array:
    """``log(sigmoid(x)) = -softplus(-x)``, elementwise."""
    out = _new(np.negative(x))
    np.logaddexp(0, out, out=out)
    return np.negative(out, out=out)


def shift_by_max(x: Array, axis: int) -> tuple[Array, Array]:
    """``x - max(x)`` along ``axis`` (a new array) and the max itself, with keepdims.

    The first step of every softmax-family formula here, and of the losses that fuse one
    (``CrossEntropyLoss``): after it the largest exponent is ``e^0 = 1``. An empty ``x`` gives
    a max of 0.

    Raises:
        ValueError: ``x`` has no axis ``axis`` (a 0-d ``x`` has none).
    """
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"axis {axis} is out of range for an input of shape {x.shape} ({x.ndim}-d); the "
            "softmax family normalises along an axis of the input"
        )
    if x.size:
        m = np.maximum.reduce(x, axis=axis, keepdims=True)
    else:
        m = np.zeros_like(np.sum(x, axis=axis, keepdims=True))
    return x - m, m


def logsumexp(x: Array, axis: int = -1, keepdims: bool = False) -> Array:
    """``log(sum(exp(x), axis))``, computed as ``m + log(sum(exp(x - m)))`` with ``m = max``."""
    shifted, m = shift_by_max(x, axis)
    out: Array = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax(x: Array, axis: int = -1) -> Array:
    """``exp(x) / sum(exp(x), axis)``, computed on ``x - max(x)``."""
    out, _ = shift_by_max(x, axis)
    np.exp(out, out=out)
    out /= np.sum(out, axis=axis, keepdims=True)
    return out


def log_softmax(x: Array, axis: int = -1) -> Array:
    """``x - logsumexp(x, axis)``, computed on ``x - max(x)``."""
    out, _ = shift_by_max(x, axis)
    out -= np.log(np.sum(np.exp(out), axis=axis, keepdims=True))
    return out
