"""Batch normalisation: BatchNorm1d and BatchNorm2d.

The equations are in the class docstrings; the reductions, and why they are einsum
reductions, are in ``nnkit/layers/normalization.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit._checks import check_int, check_real
from nnkit.layers._scratch import reuse
from nnkit.layers.normalization import _channel_dots, _channel_sums, _check_eps
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Buffer, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


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

    The per-channel sums are einsum reductions and dot products (nnkit/layers/normalization.py
    says why): no Python loop and no temporary for the products. A batch with one value per
    channel cannot be normalised by its own statistics: it raises ValueError, as in PyTorch.
    An empty batch in training gives an empty output, leaves the running statistics alone
    and still counts in ``num_batches_tracked`` (PyTorch's behaviour).

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
