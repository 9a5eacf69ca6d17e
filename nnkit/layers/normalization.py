"""Normalisation layers: LayerNorm.

Each normalises groups of values to zero mean and unit (biased) variance, then applies an
optional per-feature affine map. With ``xhat = (x - mean) / sqrt(var + eps)`` over a group of
``K`` values and ``g = dy * gamma`` (``g = dy`` without affine), the input gradient of one
group is the same for all of them::

    dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)

The sums over a group (and the sums over the batch for the parameter gradients) are matrix-
vector products with a vector of ones: BLAS GEMV reads the array once at memory speed, where
``np.sum`` along an axis is several times slower on arrays that fit in cache.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit._checks import check_real
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = ["LayerNorm"]


@lru_cache(maxsize=64)
def _ones(n: int, dtype: np.dtype[Any]) -> Array:
    """A read-only vector of ``n`` ones: the operand of every GEMV sum here."""
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False
    return ones


def _row_sums(a: Array) -> Array:
    """``a.sum(axis=1)`` of a 2-D array, as the GEMV ``a @ ones``."""
    out: Array = a @ _ones(a.shape[1], a.dtype)
    return out


def _col_sums(a: Array) -> Array:
    """``a.sum(axis=0)`` of a 2-D array, as the GEMV ``ones @ a``."""
    out: Array = _ones(a.shape[0], a.dtype) @ a
    return out


def _check_eps(layer: str, eps: object) -> float:
    value = check_real(f"{layer} eps", eps, minimum=0.0, finite=True)
    return value


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` axes, as ``torch.nn.LayerNorm``.

    Shapes: x and y are ``(*, *normalized_shape)``, any number of leading axes (``(N, F)`` with
    ``normalized_shape = F``, ``(N, T, E)`` with ``E``); weight and bias are
    ``normalized_shape``. Each of the ``M`` leading positions is one group of
    ``K = prod(normalized_shape)`` values, normalised on its own, in training and in eval
    alike (there are no running statistics)::

        mean = sum(x) / K,   var = sum((x - mean)^2) / K        (biased, as PyTorch)
        xhat = (x - mean) / sqrt(var + eps)
        y    = xhat * weight + bias

    Backward, with ``g = dy * weight`` and means over each group::

        dL/dweight += sum over the leading axes of dy * xhat
        dL/dbias   += sum over the leading axes of dy
        dL/dx       = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)

    Initialisation: weight = 1, bias = 0 (PyTorch's).

    Args:
        normalized_shape: the trailing shape to normalise over, an int or a tuple of ints.
        eps: added to the variance before the square root.
        elementwise_affine: learn ``weight`` (and ``bias``); without it the layer has no
            parameters and computes in the input's dtype.
        bias: learn ``bias`` (when ``elementwise_affine``), as PyTorch's ``bias=``.
        dtype: floating dtype of the parameters and of the computation.
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...] | list[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        try:
            dims = tuple(shape)
        except TypeError:
            dims = ()
        if (
            not dims
            or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in dims)
            or any(d < 1 for d in dims)
        ):
            raise ValueError(
                "LayerNorm normalized_shape must be a positive int or a non-empty tuple of "
                f"positive ints, got {normalized_shape!r}"
            )
        self.normalized_shape = tuple(int(d) for d in dims)
        self.eps = _check_eps("LayerNorm", eps)
        self.elementwise_affine = bool(elementwise_affine)
        self._bias = bool(bias)
        self._dtype = np.dtype(dtype)
        if self._dtype.kind != "f":
            raise TypeError(f"LayerNorm dtype must be floating, got {self._dtype}")
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape), dtype=self._dtype)
            if self._bias:
                self.bias = Parameter(np.zeros(self.normalized_shape), dtype=self._dtype)
        self._xhat: Array | None = None  # (M, K)
        self._invstd: Array | None = None  # (M, 1)
        self._shape: tuple[int, ...] = ()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """weight = 1, bias = 0."""
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, x: Any) -> Array:
        x = as_float_array(x, None if self.weight is None else self.weight.dtype)
        d = len(self.normalized_shape)
        if x.ndim < d or x.shape[x.ndim - d :] != self.normalized_shape:
            trailing = ", ".join(str(n) for n in self.normalized_shape)
            raise ValueError(
                f"LayerNorm(normalized_shape={self.normalized_shape}) expected input of shape "
                f"(*, {trailing}), got {x.shape}"
            )
        k = math.prod(self.normalized_shape)
        x2 = x.reshape(-1, k)
        mean = _row_sums(x2) / k
        xhat = x2 - mean[:, None]
        var = _row_sums(xhat * xhat) / k
        invstd = 1.0 / np.sqrt(var + x.dtype.type(self.eps))
        xhat *= invstd[:, None]
        self._xhat, self._invstd, self._shape = xhat, invstd[:, None], x.shape
        if self.weight is None:
            out: Array = xhat.reshape(x.shape).copy()  # a new array: xhat is the cache
            return out
        y: Array = xhat * self.weight.data.reshape(k)
        if self.bias is not None:
            y += self.bias.data.reshape(k)
        shaped: Array = y.reshape(x.shape)
        return shaped

    def backward(self, grad_out: Any) -> Array:
        xhat, invstd = self._xhat, self._invstd
        if xhat is None or invstd is None:
            raise self._no_cache_error()
        dy = self.grad_like(grad_out, self._shape, xhat.dtype).reshape(xhat.shape)
        k = xhat.shape[1]
        if self.weight is not None:
            self.weight.add_grad(_col_sums(dy * xhat).reshape(self.normalized_shape))
            if self.bias is not None:
                self.bias.add_grad(_col_sums(dy).reshape(self.normalized_shape))
            g = dy * self.weight.data.reshape(k)
        else:
            g = dy
        mean_g = _row_sums(g) / k
        mean_gx = _row_sums(g * xhat) / k
        dx: Array = g - mean_g[:, None]
        dx -= xhat * mean_gx[:, None]
        dx *= invstd
        return dx.reshape(self._shape)

    def get_config(self) -> dict[str, Any]:
        return {
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
            "bias": self._bias,
            "dtype": self._dtype_name(),
        }

    def _dtype_name(self) -> str:
        dtype = self._dtype if self.weight is None else self.weight.dtype
        return str(dtype.name)
