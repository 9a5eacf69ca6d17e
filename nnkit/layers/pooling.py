"""Pooling: ``MaxPool1d``, ``MaxPool2d``, ``AvgPool1d``, ``AvgPool2d`` and ``AdaptiveAvgPool2d``.

PyTorch's arguments and results (``ceil_mode=False``, and ``count_include_pad=True`` for the
average). None has parameters: they compute in the input's floating dtype, and integer input
becomes float32. Max and average pooling are the maximum and the sum of strided slices of
the input, one per kernel tap (``nnkit.layers._windows``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from nnkit.layers._windows import Windows, output_size, spatial_tuple, windows
from nnkit.module import Array, Module, as_float_array

__all__ = ["AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "MaxPool1d", "MaxPool2d"]

Size = int | tuple[int, ...]


class _Pool(Module):
    """Windows of ``kernel_size`` every ``stride`` over the last 1 or 2 axes."""

    _rank: ClassVar[int]
    _axes: ClassVar[str]

    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = spatial_tuple(name, "kernel_size", kernel_size, self._rank, 1)
        self.stride = (
            self.kernel_size if stride is None
            else spatial_tuple(name, "stride", stride, self._rank, 1)
        )
        self.padding = spatial_tuple(name, "padding", padding, self._rank, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(
                f"{name} padding {self.padding} must be at most half the kernel size "
                f"{self.kernel_size}, as in PyTorch (else a window could lie wholly in the "
                "padding)"
            )
        self._last_geometry: tuple[tuple[int, ...], Windows] | None = None

    def _title(self) -> str:
        return (
            f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding})"
        )

    def _geometry(self, x: Array) -> Windows:
        """The windows for input ``x``, after checking that it is (N, C, *spatial)."""
        if x.ndim != self._rank + 2:
            raise ValueError(
                f"{self._title()} expected input of shape (N, C, {self._axes}), got {x.shape}"
            )
        spatial = x.shape[2:]
        last = self._last_geometry
        if last is not None and last[0] == spatial:
            return last[1]
        out = tuple(
            output_size(n, k, s, 1, p, p)
            for n, k, s, p in zip(spatial, self.kernel_size, self.stride, self.padding,
                                  strict=True)
        )
        if min(out) < 1:
            padded = tuple(n + 2 * p for n, p in zip(spatial, self.padding, strict=True))
            raise ValueError(
                f"{self._title()}: the input's spatial size {spatial} padded to {padded} is "
                f"smaller than the kernel {self.kernel_size}"
            )
        geometry = windows(spatial, out, self.kernel_size, self.stride, (1,) * self._rank,
                           self.padding)
        self._last_geometry = (spatial, geometry)
        return geometry

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}


class _MaxPool(_Pool):
    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0) -> None:
        super().__init__(kernel_size, stride, padding)
        self._cache: tuple[Array, Array, Windows] | None = None

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        geometry = self._geometry(x)
        y = geometry.max(x)
        self._cache = (x, y, geometry)
        return y

    def backward(self, grad_out: Array) -> Array:
        if self._cache is None:
            raise self._no_cache_error()
        x, y, geometry = self._cache
        return geometry.max_backward(x, y, self._grad_like(grad_out, y.shape, y.dtype))


class MaxPool2d(_MaxPool):
    """The maximum over each window of an (N, C, H, W) input.

    Shapes: x: (N, C, H, W); y: (N, C, H_out, W_out) with
    ``H_out = (H + 2 * padding[0] - kernel_size[0]) // stride[0] + 1``, and ``W_out`` likewise.

    Forward, with ``xp`` the input padded with -inf::

        y[n, c, p, q] = max_{i, j} xp[n, c, p * stride[0] + i, q * stride[1] + j]

    Backward, for ``dy = dL/dy``: each window passes its whole gradient to the element that
    gave its maximum; when several are equal, to the first in row-major order inside the
    window, as in PyTorch (elements in several windows add up what they receive)::

        dL/dx[n, c, h, w] = sum over windows (p, q) whose argmax is (h, w) of dy[n, c, p, q]

    A window holding NaN outputs NaN and passes no gradient.

    Args:
        kernel_size: an int or (kH, kW).
        stride: an int or a pair; None (the default) means ``kernel_size``.
        padding: an int or a pair, at most half the kernel size (as in PyTorch).
    """

    _rank = 2
    _axes = "H, W"


class MaxPool1d(_MaxPool):
    """The maximum over each window of an (N, C, L) input (see :class:`MaxPool2d`).

    Shapes: x: (N, C, L); y: (N, C, L_out), ``L_out = (L + 2 * padding - kernel_size) //
    stride + 1``. Forward ``y[n, c, p] = max_i xp[n, c, p * stride + i]`` (``xp`` padded with
    -inf); backward gives each window's ``dy`` to its first maximal element.
    """

    _rank = 1
    _axes = "L"


class _AvgPool(_Pool):
    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0) -> None:
        super().__init__(kernel_size, stride, padding)
        self._count = math.prod(self.kernel_size)
        self._cache: tuple[tuple[int, ...], np.dtype[Any], Windows] | None = None

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        geometry = self._geometry(x)
        y = geometry.sum(x)
        y /= self._count
        self._cache = (x.shape, x.dtype, geometry)
        return y

    def backward(self, grad_out: Array) -> Array:
        if self._cache is None:
            raise self._no_cache_error()
        shape, dtype, geometry = self._cache
        dy = self._grad_like(grad_out, (*shape[:2], *geometry.out_size), dtype)
        return geometry.sum_backward(dy / self._count, shape)


class AvgPool2d(_AvgPool):
    """The mean over each window of an (N, C, H, W) input, padding counted as zeros
    (PyTorch's default ``count_include_pad=True``: every window divides by kH * kW).

    Shapes: x: (N, C, H, W); y: (N, C, H_out, W_out) with
    ``H_out = (H + 2 * padding[0] - kernel_size[0]) // stride[0] + 1``, and ``W_out`` likewise.

    Forward, with ``xp`` the zero-padded input::

        y[n, c, p, q] = sum_{i, j} xp[n, c, p * stride[0] + i, q * stride[1] + j] / (kH * kW)

    Backward, for ``dy = dL/dy``: every element receives ``dy / (kH * kW)`` from each window
    it lies in::

        dL/dx[n, c, h, w] = sum over windows (p, q) containing (h, w) of dy[n, c, p, q] / (kH * kW)

    Args:
        kernel_size: an int or (kH, kW).
        stride: an int or a pair; None (the default) means ``kernel_size``.
        padding: an int or a pair, at most half the kernel size (as in PyTorch).
    """

    _rank = 2
    _axes = "H, W"


class AvgPool1d(_AvgPool):
    """The mean over each window of an (N, C, L) input (see :class:`AvgPool2d`).

    Shapes: x: (N, C, L); y: (N, C, L_out), ``L_out = (L + 2 * padding - kernel_size) //
    stride + 1``. Forward ``y[n, c, p] = sum_i xp[n, c, p * stride + i] / kernel_size``
    (``xp`` zero-padded); backward gives ``dy / kernel_size`` to every element of the window.
    """

    _rank = 1
    _axes = "L"


def _adaptive_bins(size: int, out: int, dtype: np.dtype[Any]) -> Array:
    """The (out, size) averaging matrix of PyTorch's adaptive pooling along one axis: row ``i``
    averages positions ``floor(i * size / out)`` up to ``ceil((i + 1) * size / out)``."""
    bins = np.zeros((out, size), dtype)
    for i in range(out):  # a loop over output bins, once per geometry (the matrix is cached)
        start, stop = (i * size) // out, -((-(i + 1) * size) // out)
        bins[i, start:stop] = 1.0 / (stop - start)
    return bins


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, whatever the input size (PyTorch's
    ``AdaptiveAvgPool2d``). ``AdaptiveAvgPool2d(1)`` is global average pooling.

    Shapes: x: (N, C, H, W); y: (N, C, oH, oW) for ``output_size = (oH, oW)``.

    Output row ``i`` averages the input rows ``floor(i * H / oH)`` up to (not including)
    ``ceil((i + 1) * H / oH)``, and columns likewise; bins may overlap or differ in size when
    oH does not divide H. With ``A`` (oH, H) and ``B`` (oW, W) the averaging matrices of the
    two axes::

        y[n, c]     = A @ x[n, c] @ B.T          (for output_size 1: the mean over H and W)
        dL/dx[n, c] = A.T @ dy[n, c] @ B

    Args:
        output_size: an int (a square output) or (oH, oW).
    """

    def __init__(self, output_size: Size) -> None:
        super().__init__()
        self.output_size = spatial_tuple(type(self).__name__, "output_size", output_size, 2, 1)
        self._bins: tuple[tuple[int, int], np.dtype[Any], Array, Array] | None = None
        self._cache: tuple[tuple[int, ...], np.dtype[Any]] | None = None

    def _matrices(self, spatial: tuple[int, int], dtype: np.dtype[Any]) -> tuple[Array, Array]:
        bins = self._bins
        if bins is None or bins[0] != spatial or bins[1] != dtype:
            (h, w), (oh, ow) = spatial, self.output_size
            bins = (spatial, dtype, _adaptive_bins(h, oh, dtype), _adaptive_bins(w, ow, dtype))
            self._bins = bins
        return bins[2], bins[3]

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        if x.ndim != 4:
            raise ValueError(
                f"AdaptiveAvgPool2d(output_size={self.output_size}) expected input of shape "
                f"(N, C, H, W), got {x.shape}"
            )
        n, c, h, w = x.shape
        if h < 1 or w < 1:
            raise ValueError(
                f"AdaptiveAvgPool2d(output_size={self.output_size}) needs a non-empty image, "
                f"got input of shape {x.shape}"
            )
        self._cache = (x.shape, x.dtype)
        if self.output_size == (1, 1):
            y: Array = x.reshape(n, c, h * w).mean(axis=2).reshape(n, c, 1, 1)
            return y
        rows, cols = self._matrices((h, w), x.dtype)
        t = (x.reshape(-1, w) @ cols.T).reshape(n, c, h, len(cols))  # within column bins
        pooled: Array = np.matmul(rows, t)  # then within row bins
        return pooled

    def backward(self, grad_out: Array) -> Array:
        if self._cache is None:
            raise self._no_cache_error()
        shape, dtype = self._cache
        n, c, h, w = shape
        dy = self._grad_like(grad_out, (n, c, *self.output_size), dtype)
        if self.output_size == (1, 1):
            dx = np.empty(shape, dtype)
            dx[...] = dy / (h * w)
            return dx
        rows, cols = self._matrices((h, w), dtype)
        t: Array = np.matmul(rows.T, dy)  # (N, C, H, oW)
        return (t.reshape(-1, t.shape[3]) @ cols).reshape(shape)

    def get_config(self) -> dict[str, Any]:
        return {"output_size": self.output_size}
