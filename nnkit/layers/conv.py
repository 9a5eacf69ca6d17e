"""Convolutions: ``Conv1d``, ``Conv2d`` and ``ConvTranspose2d``.

They take PyTorch's arguments and use PyTorch's layouts, parameter names and shapes, and
its default initialisation, so weights carry over in both directions. The windowing (im2col
and col2im) lives in ``nnkit.layers._windows``; here each layer is matrix products around it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import DTypeLike

from nnkit import init
from nnkit._checks import as_generator, check_int
from nnkit.layers._windows import Windows, Workspace, output_size, spatial_tuple, windows
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose2d"]

Size = int | tuple[int, ...]


def _channel_sums(dy: Array, n: int, channels: int, positions: int) -> Array:
    """``dy.sum(axis=(0, 2, ...))`` for dy (N, C, *spatial), as a matrix-vector product over
    the positions, then a sum over the batch: 2-6 times faster than the two-axis reduction."""
    per_sample: Array = dy.reshape(n * channels, positions) @ np.ones(positions, dy.dtype)
    total: Array = per_sample.reshape(n, channels).sum(axis=0)
    return total


class _ConvBase(Module):
    """What the convolutions share: arguments, parameters, initialisation and input checks."""

    _rank: ClassVar[int]
    _axes: ClassVar[str]  # the spatial axes in error messages: "L" or "H, W"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size,
        stride: Size,
        dilation: Size,
        groups: int,
        bias: bool,
        rng: np.random.Generator | None,
        dtype: DTypeLike,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.in_channels = check_int(f"{name} in_channels", in_channels, 1)
        self.out_channels = check_int(f"{name} out_channels", out_channels, 1)
        self.groups = check_int(f"{name} groups", groups, 1)
        for which, channels in (("in_channels", self.in_channels),
                                ("out_channels", self.out_channels)):
            if channels % self.groups:
                raise ValueError(
                    f"{name} {which} ({channels}) must be divisible by groups ({self.groups})"
                )
        rank = self._rank
        self.kernel_size = spatial_tuple(name, "kernel_size", kernel_size, rank, 1)
        self.stride = spatial_tuple(name, "stride", stride, rank, 1)
        self.dilation = spatial_tuple(name, "dilation", dilation, rank, 1)
        self.weight = Parameter(np.zeros(self._weight_shape()), dtype=dtype)
        self.bias = Parameter(np.zeros(self.out_channels), dtype=dtype) if bias else None
        self._work = Workspace()
        self._last_geometry: tuple[tuple[int, ...], Windows] | None = None
        self.reset_parameters(rng)

    def _weight_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def reset_parameters(self, rng: np.random.Generator | None = None) -> None:
        """PyTorch's default: weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

        That is ``kaiming_uniform(a=sqrt(5))`` for the weight, with ``fan_in`` computed from
        the weight's shape as PyTorch does: ``weight.shape[1] * prod(kernel_size)``.
        """
        rng = as_generator(rng)
        shape = self.weight.data.shape
        dtype = self.weight.data.dtype
        self.weight.data[...] = init.kaiming_uniform(shape, rng, a=math.sqrt(5), dtype=dtype)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(init.fans(shape)[0])
            self.bias.data[...] = init.uniform(self.out_channels, rng, -bound, bound, dtype)

    def _title(self) -> str:
        return (
            f"{type(self).__name__}(in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, kernel_size={self.kernel_size})"
        )

    def _input(self, x: Any) -> Array:
        """``x`` in the weight's dtype, checked to be (N, in_channels, *spatial)."""
        array = as_float_array(x, self.weight.data.dtype)
        if array.ndim != self._rank + 2 or array.shape[1] != self.in_channels:
            raise ValueError(
                f"{self._title()} expected input of shape (N, {self.in_channels}, {self._axes}),"
                f" got {array.shape}"
            )
        return array



class _ConvNd(_ConvBase):
    """A convolution over the last 1 or 2 axes (see :class:`Conv2d` for the equations)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size,
        stride: Size = 1,
        padding: Size | str = 0,
        dilation: Size = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, dilation, groups, bias, rng, dtype
        )
        self.padding, self._pads = self._parse_padding(padding)
        self._cache: tuple[tuple[int, ...], Array, Windows] | None = None

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _parse_padding(
        self, padding: Any
    ) -> tuple[tuple[int, ...] | str, tuple[tuple[int, int], ...]]:
        """The padding as given (a tuple, or "same" / "valid") and as (before, after) pairs."""
        name = type(self).__name__
        if isinstance(padding, str):
            if padding == "valid":
                return padding, ((0, 0),) * self._rank
            if padding != "same":
                raise ValueError(
                    f"{name} padding {padding!r} is not a padding string; use 'valid', 'same', "
                    f"an int or {self._rank} ints"
                )
            if any(s != 1 for s in self.stride):
                raise ValueError(
                    f"{name} padding='same' is not supported for strided convolutions (stride="
                    f"{self.stride}), as in PyTorch; give the padding as numbers instead"
                )
            pads = []
            for k, d in zip(self.kernel_size, self.dilation, strict=True):
                total = d * (k - 1)  # PyTorch's rule: the odd one out goes after (right, bottom)
                pads.append((total // 2, total - total // 2))
            return padding, tuple(pads)
        numbers = spatial_tuple(name, "padding", padding, self._rank, 0)
        return numbers, tuple((p, p) for p in numbers)

    def _geometry(self, spatial: tuple[int, ...]) -> Windows:
        last = self._last_geometry
        if last is not None and last[0] == spatial:
            return last[1]
        out = tuple(
            output_size(n, k, s, d, a, b)
            for n, k, s, d, (a, b) in zip(
                spatial, self.kernel_size, self.stride, self.dilation, self._pads, strict=True
            )
        )
        if min(out) < 1:
            padded = tuple(n + a + b for n, (a, b) in zip(spatial, self._pads, strict=True))
            reach = tuple(
                (k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation, strict=True)
            )
            raise ValueError(
                f"{self._title()}: the input's spatial size {spatial} padded to {padded} is "
                f"smaller than the kernel, which spans {reach} with dilation {self.dilation}; "
                "use a larger input, more padding or a smaller kernel"
            )
        geometry = windows(
            spatial, out, self.kernel_size, self.stride, self.dilation,
            tuple(a for a, _ in self._pads),
        )
        self._last_geometry = (spatial, geometry)
        return geometry

    def forward(self, x: Array) -> Array:
        x = self._input(x)
        n, g = x.shape[0], self.groups
        geometry = self._geometry(x.shape[2:])
        cols = self._work.zeros(
            "cols", (n, self.in_channels, *self.kernel_size, *geometry.out_size), x.dtype,
            key=x.shape[2:],
        )
        geometry.im2col(x, cols)
        weight = self.weight.data.reshape(g, self.out_channels // g, -1)
        positions = math.prod(geometry.out_size)
        y: Array = np.matmul(weight, cols.reshape(n, g, weight.shape[2], positions))
        y = y.reshape(n, self.out_channels, *geometry.out_size)
        if self.bias is not None:
            y += self.bias.data.reshape(-1, *(1,) * self._rank)
        self._cache = (x.shape, cols, geometry)
        return y

    def backward(self, grad_out: Array) -> Array:
        dy, (x_shape, cols, geometry) = self._accumulate(grad_out)
        n, g = x_shape[0], self.groups
        weight = self.weight.data.reshape(g, self.out_channels // g, -1)
        positions = math.prod(geometry.out_size)
        dcols = self._work.empty("dcols", cols.shape, cols.dtype)
        np.matmul(
            weight.transpose(0, 2, 1), dy.reshape(n, g, weight.shape[1], positions),
            out=dcols.reshape(n, g, weight.shape[2], positions),
        )
        return geometry.col2im(dcols, x_shape)

    def accumulate_grad(self, grad_out: Array) -> None:
        self._accumulate(grad_out)

    def _accumulate(
        self, grad_out: Array
    ) -> tuple[Array, tuple[tuple[int, ...], Array, Windows]]:
        """Add dL/dweight and dL/dbias into the gradients; returns the checked dy and the
        cache."""
        cache = self._cache
        if cache is None:
            raise self._no_cache_error()
        x_shape, cols, geometry = cache
        n, g = x_shape[0], self.groups
        dy = self._grad_like(grad_out, (n, self.out_channels, *geometry.out_size), cols.dtype)
        positions = math.prod(geometry.out_size)
        per_group = dy.reshape(n, g, self.out_channels // g, positions)
        window = math.prod(self.weight.data.shape[1:])
        cols_t = cols.reshape(n, g, window, positions).transpose(0, 1, 3, 2)
        self.weight.add_grad_sum(
            np.matmul(per_group, cols_t).reshape(n, *self.weight.data.shape), axis=0
        )
        if self.bias is not None:
            self.bias.add_grad(_channel_sums(dy, n, self.out_channels, positions))
        return dy, cache

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "bias": self.bias is not None,
            "dtype": self.weight.data.dtype.name,
        }


class Conv2d(_ConvNd):
    """A 2-D convolution (cross-correlation, as in PyTorch) over (N, C, H, W) images.

    Shapes:
        x: (N, C_in, H, W); y: (N, C_out, H_out, W_out);
        weight: (C_out, C_in / groups, kH, kW); bias: (C_out,).
        ``H_out = (H + pad_top + pad_bottom - dilation[0] * (kH - 1) - 1) // stride[0] + 1``,
        and ``W_out`` likewise along the width. Any input size works, including sizes the
        stride does not divide (the last rows and columns that no window reaches get a zero
        gradient).

    Forward, with ``xp`` the zero-padded input, ``G = C_in / groups`` input channels per group
    and ``g(o)`` the group of output channel ``o``::

        y[n, o, p, q] = bias[o] + sum_{c < G, i, j} weight[o, c, i, j]
                                     * xp[n, g(o) * G + c, p * stride[0] + i * dilation[0],
                                                           q * stride[1] + j * dilation[1]]

    As matrices, per sample and group: ``cols[n]`` holds the windows of ``x[n]`` as a
    (G * kH * kW, H_out * W_out) matrix (im2col), ``Wm = weight.reshape(C_out, -1)``, and
    ``y[n] = Wm @ cols[n] + bias``. Backward, for ``dy = dL/dy`` (as (C_out, H_out * W_out)
    matrices per sample)::

        dL/dweight += sum_n dy[n] @ cols[n].T
        dL/dbias   += sum_{n, p, q} dy[n, :, p, q]
        dL/dx       = col2im(Wm.T @ dy[n])   (each window entry's gradient added back to the
                                              input position it was copied from; entries in
                                              the padding are dropped)

    Initialisation (PyTorch's default): weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    with ``fan_in = C_in / groups * kH * kW``.

    Args:
        in_channels, out_channels: C_in and C_out, both divisible by ``groups``.
        kernel_size: an int or (kH, kW).
        stride: an int or a pair.
        padding: an int or a pair (zeros on both sides of each axis); ``"valid"`` (none); or
            ``"same"`` (output size = input size; stride 1 only, as in PyTorch; when the total
            ``dilation * (k - 1)`` is odd, the extra row and column go at the bottom and right,
            as in PyTorch).
        dilation: spacing between kernel taps: an int or a pair.
        groups: split the channels into this many independent convolutions.
        bias: learn an additive bias per output channel.
        rng: the random generator for the initial parameters (None: a fresh unseeded one).
        dtype: floating dtype of the parameters and of the computation.
    """

    _rank = 2
    _axes = "H, W"


class Conv1d(_ConvNd):
    """A 1-D convolution (cross-correlation, as in PyTorch) over (N, C, L) signals.

    Shapes:
        x: (N, C_in, L); y: (N, C_out, L_out); weight: (C_out, C_in / groups, k);
        bias: (C_out,). ``L_out = (L + pad_left + pad_right - dilation * (k - 1) - 1) // stride
        + 1``.

    Forward, with ``xp`` the zero-padded input and ``G = C_in / groups``::

        y[n, o, p] = bias[o] + sum_{c < G, i} weight[o, c, i] * xp[n, g(o) * G + c,
                                                                   p * stride + i * dilation]

    Backward, with ``cols[n]`` the (G * k, L_out) im2col matrix of ``x[n]``,
    ``Wm = weight.reshape(C_out, -1)`` and ``dy = dL/dy``::

        dL/dweight += sum_n dy[n] @ cols[n].T
        dL/dbias   += sum_{n, p} dy[n, :, p]
        dL/dx       = col2im(Wm.T @ dy[n])

    The arguments are those of :class:`Conv2d`, with ints (or 1-tuples) for the sizes.
    """

    _rank = 1
    _axes = "L"


class ConvTranspose2d(_ConvBase):
    """The transposed 2-D convolution: the gradient of :class:`Conv2d` with respect to its
    input, used for learned upsampling (PyTorch's ``ConvTranspose2d``).

    Shapes:
        x: (N, C_in, H, W); y: (N, C_out, H_out, W_out);
        weight: (C_in, C_out / groups, kH, kW) (PyTorch's layout); bias: (C_out,).
        ``H_out = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kH - 1)
        + output_padding[0] + 1``, and ``W_out`` likewise.

    Forward: every input position scatters its kernel-weighted values into the output, which
    is then cropped by ``padding`` on each side. With ``Wm`` the weight as a
    (C_in, C_out / groups * kH * kW) matrix per group::

        cols[n] = Wm.T @ x[n]                 (x[n] as a (C_in, H * W) matrix)
        y[n]    = col2im(cols[n]) + bias      (the col2im of a Conv2d(C_out, C_in, ...) whose
                                               input has y's size and whose output has x's)

    Backward, for ``dy = dL/dy``, with ``dcols[n] = im2col(dy[n])`` in that same geometry::

        dL/dweight += sum_n x[n] @ dcols[n].T
        dL/dbias   += sum_{n, p, q} dy[n, :, p, q]
        dL/dx       = Wm @ dcols[n]

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias, rng, dtype:
            as for :class:`Conv2d`.
        padding: an int or a pair: ``dilation * (k - 1) - padding`` zeros are implicitly
            added around the input, as in PyTorch (so that the layer inverts the shape change
            of a Conv2d with the same arguments). Strings are not accepted, as in PyTorch.
        output_padding: an int or a pair added to one side (bottom, right) of the output
            shape, to pick among the input sizes a strided Conv2d maps to one output size;
            each must be smaller than the stride or the dilation of its axis.
    """

    _rank = 2
    _axes = "H, W"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size,
        stride: Size = 1,
        padding: Size = 0,
        output_padding: Size = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Size = 1,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, dilation, groups, bias, rng, dtype
        )
        name = type(self).__name__
        if isinstance(padding, str):
            raise ValueError(
                f"{name} padding must be an int or 2 ints, got {padding!r} (PyTorch's "
                "ConvTranspose2d takes no padding strings either)"
            )
        self.padding = spatial_tuple(name, "padding", padding, 2, 0)
        self.output_padding = spatial_tuple(name, "output_padding", output_padding, 2, 0)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if op >= max(s, d):
                raise ValueError(
                    f"{name} output_padding {self.output_padding} must be smaller than the "
                    f"stride {self.stride} or the dilation {self.dilation} on each axis"
                )
        self._cache: tuple[Array, Windows] | None = None

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    def _geometry(self, spatial: tuple[int, ...]) -> Windows:
        last = self._last_geometry
        if last is not None and last[0] == spatial:
            return last[1]
        out = tuple(
            (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            for n, k, s, d, p, op in zip(
                spatial, self.kernel_size, self.stride, self.dilation, self.padding,
                self.output_padding, strict=True,
            )
        )
        if min(out) < 1:
            raise ValueError(
                f"{self._title()}: an input of spatial size {spatial} gives an output of size "
                f"{out} with padding {self.padding}; use less padding or a larger input"
            )
        # the windows of the Conv2d this layer is the adjoint of: its input has y's size
        geometry = windows(out, spatial, self.kernel_size, self.stride, self.dilation,
                           self.padding)
        self._last_geometry = (spatial, geometry)
        return geometry

    def forward(self, x: Array) -> Array:
        x = self._input(x)
        n, g = x.shape[0], self.groups
        geometry = self._geometry(x.shape[2:])
        weight = self.weight.data.reshape(g, self.in_channels // g, -1)
        cols = self._work.empty(
            "cols", (n, self.out_channels, *self.kernel_size, *x.shape[2:]), x.dtype
        )
        positions = math.prod(x.shape[2:])
        np.matmul(
            weight.transpose(0, 2, 1), x.reshape(n, g, weight.shape[1], positions),
            out=cols.reshape(n, g, weight.shape[2], positions),
        )
        y = geometry.col2im(cols, (n, self.out_channels, *geometry.in_size))
        if self.bias is not None:
            y += self.bias.data.reshape(-1, 1, 1)
        self._cache = (x, geometry)
        return y

    def backward(self, grad_out: Array) -> Array:
        dcols, x = self._accumulate(grad_out)
        n, g = x.shape[0], self.groups
        weight = self.weight.data.reshape(g, self.in_channels // g, -1)
        positions = math.prod(x.shape[2:])
        dx: Array = np.matmul(weight, dcols.reshape(n, g, weight.shape[2], positions))
        return dx.reshape(x.shape)

    def accumulate_grad(self, grad_out: Array) -> None:
        self._accumulate(grad_out)

    def _accumulate(self, grad_out: Array) -> tuple[Array, Array]:
        """Add dL/dweight and dL/dbias into the gradients; returns im2col(dy) and x."""
        if self._cache is None:
            raise self._no_cache_error()
        x, geometry = self._cache
        n, g = x.shape[0], self.groups
        dy = self._grad_like(grad_out, (n, self.out_channels, *geometry.in_size), x.dtype)
        dcols = self._work.zeros(
            "dcols", (n, self.out_channels, *self.kernel_size, *x.shape[2:]), x.dtype,
            key=x.shape[2:],
        )
        geometry.im2col(dy, dcols)
        positions = math.prod(x.shape[2:])
        per_group = x.reshape(n, g, self.in_channels // g, positions)
        window = math.prod(self.weight.data.shape[1:])
        dcols_t = dcols.reshape(n, g, window, positions).transpose(0, 1, 3, 2)
        self.weight.add_grad_sum(
            np.matmul(per_group, dcols_t).reshape(n, *self.weight.data.shape), axis=0
        )
        if self.bias is not None:
            out_positions = math.prod(geometry.in_size)
            self.bias.add_grad(_channel_sums(dy, n, self.out_channels, out_positions))
        return dcols, x

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "groups": self.groups,
            "bias": self.bias is not None,
            "dilation": self.dilation,
            "dtype": self.weight.data.dtype.name,
        }
