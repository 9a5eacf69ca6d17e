"""Normalisation layers: BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm.

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
from nnkit.parameter import Buffer, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm", "LayerNorm"]


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


class _BatchNorm(Module):
    """The batch normalisation of BatchNorm1d and BatchNorm2d, on inputs viewed as (N, C, L)."""

    _layout = ""  # the accepted shapes, for messages: "(N, C) or (N, C, L)"
    _ndims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_features = check_int(f"{name} num_features", num_features, 1)
        self.eps = _check_eps(name, eps)
        if momentum is not None:
            momentum = check_real(f"{name} momentum", momentum, minimum=0.0)
            if momentum > 1:
                raise ValueError(f"{name} momentum must be in [0, 1] or None, got {momentum}")
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self._dtype = np.dtype(dtype)
        if self._dtype.kind != "f":
            raise TypeError(f"{name} dtype must be floating, got {self._dtype}")
        c = self.num_features
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        if self.affine:
            self.weight = Parameter(np.ones(c), dtype=self._dtype)
            self.bias = Parameter(np.zeros(c), dtype=self._dtype)
        self.running_mean: Buffer | None = None
        self.running_var: Buffer | None = None
        self.num_batches_tracked: Buffer | None = None
        if self.track_running_stats:
            self.running_mean = Buffer(np.zeros(c), dtype=self._dtype)
            self.running_var = Buffer(np.ones(c), dtype=self._dtype)
            self.num_batches_tracked = Buffer(np.zeros((), dtype=np.int64))
        # the cache: batch mode keeps x - mean, eval mode keeps x (both (N, C, L)), and the
        # per-channel mean and 1/sqrt(var + eps) that were used
        self._x3: Array | None = None
        self._xc: Array | None = None  # x - mean, rewritten by every training forward
        self._scratch: Array | None = None  # backward's temporary, kept between steps
        self._mean: Array | None = None
        self._invstd: Array | None = None
        self._batch_stats = False
        self._shape: tuple[int, ...] = ()

    def reset_running_stats(self) -> None:
        """running_mean = 0, running_var = 1, num_batches_tracked = 0."""
        if self.running_mean is not None and self.running_var is not None:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        """Reset the running statistics, and weight = 1, bias = 0."""
        self.reset_running_stats()
        if self.weight is not None and self.bias is not None:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _compute_dtype(self) -> np.dtype[Any] | None:
        if self.weight is not None:
            return self.weight.dtype
        if self.running_mean is not None:
            return self.running_mean.dtype
        return None  # no state: the input's floating dtype

    def forward(self, x: Any) -> Array:
        x = as_float_array(x, self._compute_dtype())
        c = self.num_features
        if x.ndim not in self._ndims or x.shape[1] != c:
            raise ValueError(
                f"{self._describe()} expected input of shape {self._layout.format(C=c)}, "
                f"got {x.shape}"
            )
        n = x.shape[0]
        x3 = x.reshape(n, c, math.prod(x.shape[2:]))
        count = n * x3.shape[2]  # values per channel
        dtype = x.dtype.type
        scale: Array  # gamma / sqrt(var + eps), per channel
        rm, rv, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        if not self.training and rm is not None and rv is not None:  # running statistics
            mean = rm.data.copy()
            invstd = 1.0 / np.sqrt(rv.data + dtype(self.eps))
            scale = invstd if self.weight is None else invstd * self.weight.data
            y = x3 * scale[:, None]
            y -= (mean * scale)[:, None]
            self._x3, self._batch_stats = x3, False
        else:  # batch statistics
            if count == 1:
                raise ValueError(
                    f"{self._describe()}: Expected more than 1 value per channel when "
                    f"training, got input of shape {x.shape}; batch statistics need 2 or more "
                    "values per channel (a bigger batch, or eval() with running statistics)"
                )
            if self.training and tracked is not None:
                tracked.data += 1
            mean = _channel_sums(x3) / dtype(max(count, 1))  # an empty batch: zeros
            xc = self._xc = reuse(self._xc, x3.shape, x.dtype)
            np.subtract(x3, mean[:, None], out=xc)
            var = _channel_dots(xc, xc) / dtype(max(count, 1))  # biased: to normalise
            if (
                self.training
                and rm is not None
                and rv is not None
                and tracked is not None
                and count
            ):
                f = 1.0 / float(tracked.data) if self.momentum is None else self.momentum
                rm.data *= 1 - f
                rm.data += f * mean
                rv.data *= 1 - f
                rv.data += (f * count / (count - 1)) * var  # unbiased, as PyTorch
            invstd = 1.0 / np.sqrt(var + dtype(self.eps))
            scale = invstd if self.weight is None else invstd * self.weight.data
            y = xc * scale[:, None]
            self._x3, self._batch_stats = xc, True
        self._mean, self._invstd, self._shape = mean, invstd, x.shape
        if self.bias is not None:
            y += self.bias.data[:, None]
        out: Array = y.reshape(x.shape)
        return out

    def backward(self, grad_out: Any) -> Array:
        x3, mean, invstd = self._x3, self._mean, self._invstd
        if x3 is None or mean is None or invstd is None:
            raise self._no_cache_error()
        dy = self.grad_like(grad_out, self._shape, x3.dtype).reshape(x3.shape)
        count = x3.shape[0] * x3.shape[2]
        sum_dy = _channel_sums(dy)
        if self._batch_stats:  # x3 is x - mean
            sum_dy_xc = _channel_dots(dy, x3)
        else:  # x3 is x: sum(dy * (x - mean)) = sum(dy * x) - mean * sum(dy)
            sum_dy_xc = _channel_dots(dy, x3) - mean * sum_dy
        if self.weight is not None and self.bias is not None:
            self.weight.add_grad(sum_dy_xc * invstd)  # sum(dy * xhat)
            self.bias.add_grad(sum_dy)
        k = invstd if self.weight is None else invstd * self.weight.data  # gamma / sqrt(var+eps)
        dx: Array = dy * k[:, None]
        if self._batch_stats and count:
            # dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * invstd
            dtype = x3.dtype.type
            scratch = self._scratch = reuse(self._scratch, x3.shape, x3.dtype)
            np.multiply(x3, (k * invstd * invstd * sum_dy_xc / dtype(count))[:, None], out=scratch)
            dx -= scratch
            dx -= (k * sum_dy / dtype(count))[:, None]
        return dx.reshape(self._shape)

    def _describe(self) -> str:
        return f"{type(self).__name__}(num_features={self.num_features})"

    def get_config(self) -> dict[str, Any]:
        dtype = self._compute_dtype() or self._dtype
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "track_running_stats": self.track_running_stats,
            "dtype": str(dtype.name),
        }


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over the batch (and length) of each channel, as
    ``torch.nn.BatchNorm1d``.

    Shapes: x and y are (N, C) or (N, C, L) with ``C = num_features``; weight, bias and the
    running statistics are (C,). With ``m = N`` (or ``N * L``) values per channel, in training
    (and in eval when ``track_running_stats=False``), per channel::

        mean = sum(x) / m,   var = sum((x - mean)^2) / m          (biased: to normalise)
        xhat = (x - mean) / sqrt(var + eps)
        y    = xhat * weight + bias
        running_mean = (1 - f) running_mean + f mean
        running_var  = (1 - f) running_var  + f var * m / (m - 1) (unbiased, as PyTorch)
        num_batches_tracked += 1

    with ``f = momentum``, or ``f = 1 / num_batches_tracked`` (a cumulative average) when
    ``momentum=None``. In eval mode ``mean`` and ``var`` are the running statistics, and no
    statistic changes.

    Backward, with ``k = weight / sqrt(var + eps)`` and sums over the values of a channel::

        dL/dweight += sum(dy * xhat)
        dL/dbias   += sum(dy)
        dL/dx       = k * (dy - sum(dy) / m - xhat * sum(dy * xhat) / m)     (batch statistics)
        dL/dx       = k * dy                                             (running statistics)

    The per-channel sums are GEMVs with vectors of ones and einsum dot products: no Python
    loop and no temporary for the products. A batch with one value per channel cannot be
    normalised by its own statistics: it raises ValueError, as in PyTorch. An empty batch
    in training gives an empty output, leaves the running statistics alone and still counts
    in ``num_batches_tracked`` (PyTorch's behaviour).

    State: parameters ``weight`` (1) and ``bias`` (0) when ``affine``; buffers
    ``running_mean`` (0), ``running_var`` (1) and ``num_batches_tracked`` (int64) when
    ``track_running_stats``, saved with the model and in checkpoints.

    Args:
        num_features: the number of channels C.
        eps: added to the variance before the square root.
        momentum: the weight of the newest batch in the running statistics, or None for a
            cumulative average.
        affine: learn a per-channel ``weight`` and ``bias``.
        track_running_stats: keep running statistics for eval mode; without them eval mode
            normalises with the batch's statistics too.
        dtype: floating dtype of the parameters, the running statistics and the computation.
    """

    _layout = "(N, {C}) or (N, {C}, L)"
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images, per channel over (N, H, W), as ``torch.nn.BatchNorm2d``.

    Shapes: x and y are (N, C, H, W) with ``C = num_features``; weight, bias and the running
    statistics are (C,). The equations, the state and the arguments are those of
    :class:`BatchNorm1d` with ``m = N * H * W`` values per channel.
    """

    _layout = "(N, {C}, H, W)"
    _ndims = (4,)


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
