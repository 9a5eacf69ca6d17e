"""Activation layers: elementwise nonlinearities, softmax and log-softmax.

None of them has parameters. They compute in the input's floating dtype (integer and bool
input becomes float32), accept any shape (the elementwise ones also a 0-d array; Softmax and
LogSoftmax need the axis they normalise along), and cache the cheapest thing their backward needs,
usually their own output: so do not modify a layer's output in place before its backward.
In the equations ``y`` is the output and ``dy = dL/dy``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnkit import functional as F
from nnkit._checks import check_real
from nnkit.module import Array, Module, as_float_array

__all__ = [
    "ELU",
    "GELU",
    "Identity",
    "LeakyReLU",
    "LogSoftmax",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]


class _CachedOutput(Module):
    """An activation whose backward needs only its output ``y`` (cached in ``self._y``)."""

    def __init__(self) -> None:
        super().__init__()
        self._y: Array | None = None

    def _cached(self, grad_out: Array) -> tuple[Array, Array]:
        """The cached output and ``grad_out`` checked against it."""
        y = self._y
        if y is None:
            raise self._no_cache_error()
        if type(grad_out) is np.ndarray and grad_out.dtype is y.dtype and grad_out.shape == y.shape:
            return y, grad_out  # the usual case, checked without a further call
        return y, self._grad_like(grad_out, y.shape, y.dtype)


class Identity(Module):
    """``y = x``; ``dx = dy``. A placeholder where a layer is optional."""

    def __init__(self) -> None:
        super().__init__()
        self._like: tuple[tuple[int, ...], np.dtype[Any]] | None = None

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        self._like = (x.shape, x.dtype)
        return x

    def backward(self, grad_out: Array) -> Array:
        if self._like is None:
            raise self._no_cache_error()
        return self._grad_like(grad_out, *self._like)


class Sigmoid(_CachedOutput):
    """``y = 1 / (1 + exp(-x))`` (computed stably, see ``nnkit.functional.sigmoid``);
    ``dx = dy * y * (1 - y)``."""

    def forward(self, x: Array) -> Array:
        self._y = y = F.sigmoid(as_float_array(x))
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        dx: Array = 1 - y  # dx = dy * y * (1 - y), in one new array
        dx *= y
        dx *= dy
        return dx


class Tanh(_CachedOutput):
    """``y = tanh(x)``; ``dx = dy * (1 - y^2)``."""

    def forward(self, x: Array) -> Array:
        self._y = y = np.tanh(as_float_array(x))
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        dx: Array = dy * (1 - y * y)
        return dx


class ReLU(_CachedOutput):
    """``y = max(x, 0)``; ``dx = dy * [y > 0]`` (the gradient at 0 is 0, as in PyTorch)."""

    def forward(self, x: Array) -> Array:
        self._y = y = np.maximum(as_float_array(x), 0)
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        dx: Array = dy * (y > 0)
        return dx


class LeakyReLU(_CachedOutput):
    """``y = x if x > 0 else negative_slope * x``; ``dx = dy`` or ``negative_slope * dy``.

    Requires ``negative_slope >= 0`` (so the sign of ``y`` tells the branch).
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = check_real(
            "LeakyReLU negative_slope", negative_slope, minimum=0, finite=True
        )

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        self._y = y = np.where(x > 0, x, x * self.negative_slope)
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        return np.where(y > 0, dy, dy * self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class ELU(_CachedOutput):
    """``y = x if x > 0 else alpha * (exp(x) - 1)``;
    ``dx = dy if x > 0 else dy * (y + alpha)``. Requires ``alpha > 0``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = check_real("ELU alpha", alpha, finite=True)
        if not self.alpha > 0:
            raise ValueError(f"ELU alpha must be > 0, got {alpha}")

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        negative = np.expm1(np.minimum(x, 0)) * self.alpha
        self._y = y = np.where(x > 0, x, negative)
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        return np.where(y > 0, dy, dy * (y + self.alpha))

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Module):
    """The GELU in its tanh form (PyTorch's ``GELU(approximate="tanh")``)::

        u  = sqrt(2/pi) * (x + 0.044715 x^3),   t = tanh(u)
        y  = 0.5 x (1 + t)
        dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))

    It differs from the exact form ``x * Phi(x)`` (PyTorch's default) by less than 1e-3.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[Array, Array] | None = None

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        t = np.tanh(_GELU_C * (x + 0.044715 * x**3))
        self._cache = (x, t)
        y: Array = 0.5 * x * (1 + t)
        return y

    def backward(self, grad_out: Array) -> Array:
        if self._cache is None:
            raise self._no_cache_error()
        x, t = self._cache
        dy = self._grad_like(grad_out, x.shape, x.dtype)
        du = _GELU_C * (1 + 3 * 0.044715 * x * x)
        dx: Array = dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
        return dx


class Softplus(_CachedOutput):
    """``y = log(1 + exp(x))``; ``dx = dy * sigmoid(x) = dy * (1 - exp(-y))``.

    The derivative is taken from the output as ``-expm1(-y)``, exact in both tails.
    """

    def forward(self, x: Array) -> Array:
        self._y = y = F.softplus(as_float_array(x))
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        return dy * -np.expm1(-y)


class SiLU(Module):
    """``y = x * sigmoid(x)`` (also called swish); ``dx = dy * s * (1 + x * (1 - s))``."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[Array, Array] | None = None

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        s = F.sigmoid(x)
        self._cache = (x, s)
        return x * s

    def backward(self, grad_out: Array) -> Array:
        if self._cache is None:
            raise self._no_cache_error()
        x, s = self._cache
        dy = self._grad_like(grad_out, x.shape, x.dtype)
        dx: Array = dy * s * (1 + x * (1 - s))
        return dx


def _check_axis(layer: str, axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{layer} axis must be an int, got {axis!r}")
    return int(axis)


def _along(layer: Module, axis: int, x: Array) -> Array:
    """``x``, after checking that it has the axis the layer normalises along."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"{type(layer).__name__}(axis={axis}) normalises along axis {axis}, but the input "
            f"has shape {x.shape} ({x.ndim}-d); give an input with that axis, e.g. a batch "
            "of shape (N, classes)"
        )
    return x


class Softmax(_CachedOutput):
    """``y = exp(x) / sum(exp(x), axis)``; ``dx = y * (dy - sum(dy * y, axis))``.

    The full Jacobian-vector product, not only its diagonal.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = _check_axis("Softmax", axis)

    def forward(self, x: Array) -> Array:
        self._y = y = F.softmax(_along(self, self.axis, as_float_array(x)), axis=self.axis)
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        dx: Array = y * (dy - np.sum(dy * y, axis=self.axis, keepdims=True))
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class LogSoftmax(_CachedOutput):
    """``y = x - logsumexp(x, axis)``; ``dx = dy - exp(y) * sum(dy, axis)``."""

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = _check_axis("LogSoftmax", axis)

    def forward(self, x: Array) -> Array:
        self._y = y = F.log_softmax(_along(self, self.axis, as_float_array(x)), axis=self.axis)
        return y

    def backward(self, grad_out: Array) -> Array:
        y, dy = self._cached(grad_out)
        dx: Array = dy - np.exp(y) * np.sum(dy, axis=self.axis, keepdims=True)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}
