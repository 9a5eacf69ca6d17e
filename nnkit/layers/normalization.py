"""Normalisation layers: LayerNorm and GroupNorm, and the reductions that BatchNorm1d and
BatchNorm2d (``nnkit/layers/batchnorm.py``) share with them.

Each normalises groups of values to zero mean and unit (biased) variance, then applies an
optional per-feature affine map. With ``xhat = (x - mean) / sqrt(var + eps)`` over a group of
``K`` values and ``g = dy * gamma`` (``g = dy`` without affine), the input gradient of one
group is the same for all of them::

    dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)

All the sums (over a group, over the batch, and the sums of products such as
``sum(dy * xhat)`` and the variance) are ``np.einsum`` reductions: one pass, vectorised, and
no temporary array for a product (2x faster than forming it and summing). ``np.sum`` along an
axis is 2-7x slower on these shapes. Matrix-vector products with a vector of ones (BLAS GEMV)
win in a tight loop of GEMVs, but interleaved with the other operations of a layer, waking
OpenBLAS's threads for each one made LayerNorm and BatchNorm 3-8x slower on the 2-core
machine of docs/performance.md. The cache (``x - mean`` or ``xhat``) and backward's scratch
array are kept and rewritten between steps (``nnkit/layers/_scratch.py``), so a step does not
fault fresh pages in for them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit._checks import check_int, check_real
from nnkit.layers._scratch import reuse
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = ["GroupNorm", "LayerNorm"]


def _row_sums(a: Array) -> Array:
    """``a.sum(axis=1)`` of a 2-D array."""
    out: Array = np.einsum("ij->i", a)
    return out


def _col_sums(a: Array) -> Array:
    """``a.sum(axis=0)`` of a 2-D array."""
    out: Array = np.einsum("ij->j", a)
    return out


def _row_dots(a: Array, b: Array) -> Array:
    """``(a * b).sum(axis=1)`` of two 2-D arrays, without the product's temporary array."""
    out: Array = np.einsum("ij,ij->i", a, b)
    return out


def _col_dots(a: Array, b: Array) -> Array:
    """``(a * b).sum(axis=0)`` of two 2-D arrays, without the product's temporary array."""
    out: Array = np.einsum("ij,ij->j", a, b)
    return out


def _normalize_rows(x2: Array, eps: float, xhat: Array) -> Array:
    """Write ``(x - mean) / sqrt(var + eps)`` of each row of ``x2`` into ``xhat``; return the
    rows' ``1 / sqrt(var + eps)`` as a column (M, 1)."""
    k = x2.shape[1]
    dtype = x2.dtype.type
    mean = _row_sums(x2) / dtype(k)
    np.subtract(x2, mean[:, None], out=xhat)
    var = _row_dots(xhat, xhat) / dtype(k)  # biased
    invstd: Array = (1.0 / np.sqrt(var + dtype(eps)))[:, None]
    xhat *= invstd
    return invstd


def _rows_backward(g: Array, xhat: Array, invstd: Array, scratch: Array) -> Array:
    """``(g - mean(g) - xhat * mean(g * xhat)) * invstd`` per row, written into ``g`` (a new
    array the caller owns) with ``scratch`` for the product; returns ``g``."""
    k = g.shape[1]
    dtype = g.dtype.type
    mean_g = _row_sums(g) / dtype(k)
    mean_gx = _row_dots(g, xhat) / dtype(k)
    g -= mean_g[:, None]
    np.multiply(xhat, mean_gx[:, None], out=scratch)
    g -= scratch
    g *= invstd
    return g


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
        self._xhat: Array | None = None  # (M, K), rewritten by every forward
        self._invstd: Array | None = None  # (M, 1)
        self._scratch: Array | None = None  # backward's temporary, kept between steps
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
        xhat = self._xhat = reuse(self._xhat, x2.shape, x.dtype)
        self._invstd = _normalize_rows(x2, self.eps, xhat)
        self._shape = x.shape
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
        if self.weight is not None:
            self.weight.add_grad(_col_dots(dy, xhat).reshape(self.normalized_shape))
            if self.bias is not None:
                self.bias.add_grad(_col_sums(dy).reshape(self.normalized_shape))
            g = dy * self.weight.data.reshape(xhat.shape[1])
        else:
            g = dy.copy()
        self._scratch = reuse(self._scratch, xhat.shape, xhat.dtype)
        dx = _rows_backward(g, xhat, invstd, self._scratch)
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


def _channel_sums(a: Array) -> Array:
    """``a.sum(axis=(0, 2))`` of an (N, C, L) array."""
    out: Array = np.einsum("ncl->c", a)
    return out


def _channel_dots(a: Array, b: Array) -> Array:
    """``(a * b).sum(axis=(0, 2))`` of two (N, C, L) arrays, without the product's temporary."""
    out: Array = np.einsum("ncl,ncl->c", a, b)
    return out


class GroupNorm(Module):
    """Group normalisation, as ``torch.nn.GroupNorm``: the C channels of each sample are split
    into ``num_groups`` groups of ``C / num_groups`` consecutive channels, and each group is
    normalised over its channels and positions, in training and eval alike.

    Shapes: x and y are (N, C, *) (e.g. (N, C), (N, C, L), (N, C, H, W)); weight and bias are
    (C,). With ``K = (C / num_groups) * prod(*)`` values per group::

        mean = sum(x) / K,   var = sum((x - mean)^2) / K         (biased, per sample and group)
        xhat = (x - mean) / sqrt(var + eps)
        y    = xhat * weight[c] + bias[c]

    Backward, with ``g = dy * weight[c]`` and means over each group::

        dL/dweight[c] += sum over N and * of dy * xhat
        dL/dbias[c]   += sum over N and * of dy
        dL/dx          = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)

    Initialisation: weight = 1, bias = 0.

    Args:
        num_groups: the number of groups; must divide ``num_channels``.
        num_channels: the number of channels C.
        eps: added to the variance before the square root.
        affine: learn a per-channel ``weight`` and ``bias``.
        dtype: floating dtype of the parameters and of the computation.
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.num_groups = check_int("GroupNorm num_groups", num_groups, 1)
        self.num_channels = check_int("GroupNorm num_channels", num_channels, 1)
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm num_channels must be divisible by num_groups: {self.num_channels} "
                f"channels do not split into {self.num_groups} equal groups"
            )
        self.eps = _check_eps("GroupNorm", eps)
        self.affine = bool(affine)
        self._dtype = np.dtype(dtype)
        if self._dtype.kind != "f":
            raise TypeError(f"GroupNorm dtype must be floating, got {self._dtype}")
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        if self.affine:
            self.weight = Parameter(np.ones(self.num_channels), dtype=self._dtype)
            self.bias = Parameter(np.zeros(self.num_channels), dtype=self._dtype)
        self._xhat: Array | None = None  # (N * G, K), rewritten by every forward
        self._invstd: Array | None = None  # (N * G, 1)
        self._scratch: Array | None = None  # backward's temporary, kept between steps
        self._shape: tuple[int, ...] = ()

    def reset_parameters(self) -> None:
        """weight = 1, bias = 0."""
        if self.weight is not None and self.bias is not None:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _describe(self) -> str:
        return f"GroupNorm(num_groups={self.num_groups}, num_channels={self.num_channels})"

    def forward(self, x: Any) -> Array:
        x = as_float_array(x, None if self.weight is None else self.weight.dtype)
        c = self.num_channels
        if x.ndim < 2 or x.shape[1] != c:
            raise ValueError(
                f"{self._describe()} expected input of shape (N, {c}, *), got {x.shape}"
            )
        n = x.shape[0]
        x2 = x.reshape(n * self.num_groups, math.prod(x.shape[1:]) // self.num_groups)
        xhat = self._xhat = reuse(self._xhat, x2.shape, x.dtype)
        self._invstd = _normalize_rows(x2, self.eps, xhat)
        self._shape = x.shape
        if self.weight is None or self.bias is None:
            out: Array = xhat.reshape(x.shape).copy()  # a new array: xhat is the cache
            return out
        y = xhat.reshape(n, c, math.prod(x.shape[2:])) * self.weight.data[:, None]
        y += self.bias.data[:, None]
        shaped: Array = y.reshape(x.shape)
        return shaped

    def backward(self, grad_out: Any) -> Array:
        xhat, invstd = self._xhat, self._invstd
        if xhat is None or invstd is None:
            raise self._no_cache_error()
        dy = self.grad_like(grad_out, self._shape, xhat.dtype)
        if self.weight is not None and self.bias is not None:
            dy3 = dy.reshape(self._shape[0], self.num_channels, math.prod(self._shape[2:]))
            self.weight.add_grad(_channel_dots(dy3, xhat.reshape(dy3.shape)))
            self.bias.add_grad(_channel_sums(dy3))
            g = (dy3 * self.weight.data[:, None]).reshape(xhat.shape)
        else:
            g = dy.reshape(xhat.shape).copy()
        self._scratch = reuse(self._scratch, xhat.shape, xhat.dtype)
        dx = _rows_backward(g, xhat, invstd, self._scratch)
        return dx.reshape(self._shape)

    def get_config(self) -> dict[str, Any]:
        dtype = self._dtype if self.weight is None else self.weight.dtype
        return {
            "num_groups": self.num_groups,
            "num_channels": self.num_channels,
            "eps": self.eps,
            "affine": self.affine,
            "dtype": str(dtype.name),
        }
