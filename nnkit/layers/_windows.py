"""Sliding windows over the spatial axes: the one place where convolution and pooling meet NumPy.

Every conv and pool layer describes its geometry once per input shape as a :class:`Windows`,
and this module does the array work for all of them: im2col and col2im for the
convolutions, the max and sum of windows for pooling. Nothing else in nnkit slices windows.

Arrays are ``(N, C, *spatial)`` with one or two spatial axes. Along each axis, output
position ``o`` looks at the input positions ``o * stride - pad_before + i * dilation`` for
the kernel taps ``i = 0 .. kernel - 1``, so::

    out_size = (in_size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1

Padding is never materialised. Each kernel tap maps a strided slice of the input onto the
block of output positions at which that tap lands inside the input; at the other positions
it lands in the padding, and the tap is skipped there. Zero padding is then the zeros that an
im2col buffer holds where no tap writes (:class:`Workspace` keeps such a buffer, and its
zeros, while the input shape repeats); max pooling skips padded positions, which is the
same as padding with -inf. A tap that falls wholly into the padding is dropped.

The loops here run over the kernel taps (at most ``k * k`` iterations); each iteration is
one NumPy operation over the whole batch, every channel and every output position. Sizes that
the stride does not divide need no special case: input rows that no window reaches simply
receive no gradient, and input gradients have the input's exact shape.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

__all__ = ["Windows", "Workspace", "output_size", "spatial_tuple", "windows"]

Array = NDArray[Any]
Index = tuple[slice | int, ...]


def spatial_tuple(layer: str, name: str, value: Any, rank: int, minimum: int) -> tuple[int, ...]:
    """``value`` (an int, or a tuple or list of ``rank`` ints) as a tuple of ``rank`` ints.

    Raises TypeError for anything but ints (bools included) and ValueError below ``minimum``
    or for the wrong length, naming the layer and the argument.
    """
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank
    if len(items) != rank:
        raise ValueError(f"{layer} {name} must be an int or {rank} ints, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{layer} {name} must be an int or {rank} ints, got {value!r}")
        if item < minimum:
            raise ValueError(f"{layer} {name} must be >= {minimum}, got {value!r}")
    return tuple(int(item) for item in items)


def output_size(
    size: int, kernel: int, stride: int, dilation: int, pad_before: int, pad_after: int
) -> int:
    """The number of window positions along one axis (less than 1: the kernel does not fit)."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def _axis_taps(
    size: int, out: int, kernel: int, stride: int, dilation: int, pad: int
) -> list[tuple[slice, slice] | None]:
    """For each tap of one axis: (input slice, output slice) where it lands in the input."""
    taps: list[tuple[slice, slice] | None] = []
    for i in range(kernel):
        offset = i * dilation - pad  # the input position of this tap at output position 0
        first = 0 if offset >= 0 else (stride - 1 - offset) // stride  # ceil(-offset / stride)
        stop = min(out, (size - 1 - offset) // stride + 1) if offset < size else 0
        if stop <= first:
            taps.append(None)
            continue
        start = offset + stride * first
        taps.append((slice(start, start + stride * (stop - 1 - first) + 1, stride),
                     slice(first, stop)))
    return taps


@dataclass(frozen=True, eq=False)
class Tap:
    """One kernel offset: where it reads (``src``, into the input) and writes (``dst``, into
    the output), as full indices of ``(N, C, *spatial)`` arrays; ``col`` indexes the im2col
    array ``(N, C, *kernel, *out_size)``."""

    src: Index
    dst: Index
    col: Index

    def __deepcopy__(self, memo: dict[int, Any]) -> Tap:
        return self  # immutable


@dataclass(frozen=True, eq=False)
class Windows:
    """The windows of one geometry: input and output sizes, and the kernel taps.

    Attributes:
        in_size, out_size, kernel: spatial sizes.
        taps: the taps that land inside the input somewhere, in the kernel's row-major order
            (the order in which PyTorch scans a window, which decides max-pool ties).
        overlapping: whether an input position can lie under two (tap, output) pairs; if
            not, scatters assign instead of adding.
        covers_input: a tap whose ``src`` is the whole input (stride 1), or None.
        covers_output: a tap whose ``dst`` is the whole output (no padding in the way), or None.
    """

    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    taps: tuple[Tap, ...]
    overlapping: bool
    covers_input: Tap | None
    covers_output: Tap | None

    def __deepcopy__(self, memo: dict[int, Any]) -> Windows:
        return self  # immutable, and shared through the cache of windows()

    # -- convolution ----------------------------------------------------------------------
    def im2col(self, x: Array, cols: Array) -> Array:
        """Fill ``cols`` (N, C, *kernel, *out_size) with the windows of ``x`` (N, C, *in_size).

        ``cols[n, c, i, j, p, q] = x[n, c, p * s - pad + i * d, q * s - pad + j * d]``; the
        entries that fall into the padding are not written, so ``cols`` must hold zeros there
        (a fresh ``np.zeros``, or the same buffer from a call with the same geometry).
        """
        for tap in self.taps:
            cols[tap.col] = x[tap.src]
        return cols

    def col2im(self, cols: Array, shape: tuple[int, ...]) -> Array:
        """The adjoint of :meth:`im2col`: a new array of ``shape`` (N, C, *in_size) in which
        each input position holds the sum of the ``cols`` entries that were copied from it."""
        first = self.covers_input
        if first is not None:
            out = np.empty(shape, cols.dtype)
            out[first.src] = cols[first.col]
        else:
            out = np.zeros(shape, cols.dtype)
        for tap in self.taps:
            if tap is first:
                continue
            if self.overlapping:
                out[tap.src] += cols[tap.col]
            else:
                out[tap.src] = cols[tap.col]
        return out

    # -- pooling ----------------------------------------------------------------------------
    def _reduce(self, x: Array, op: Any, empty: float) -> Array:
        first = self.covers_output
        if first is None:
            out = np.full((*x.shape[:2], *self.out_size), empty, x.dtype)
        else:
            out = x[first.src].copy()
        for tap in self.taps:
            if tap is not first:
                view = out[tap.dst]
                op(view, x[tap.src], out=view)
        return out

    def max(self, x: Array) -> Array:
        """The maximum of each window (padding counts as -inf)."""
        return self._reduce(x, np.maximum, -np.inf)

    def sum(self, x: Array) -> Array:
        """The sum of each window (padding counts as 0)."""
        return self._reduce(x, np.add, 0.0)

    def max_backward(self, x: Array, y: Array, dy: Array) -> Array:
        """dL/dx of ``y = max(x)``: each window's gradient goes to the first element (in scan
        order) equal to its maximum, as in PyTorch. A window holding NaN passes none, and
        an infinite ``dy`` makes its window's gradients NaN (``inf * 0``).

        ``rest`` holds what each window has not passed on yet: a tap takes ``rest * hit``
        and leaves ``rest - taken``, so a later tap that also holds the maximum gets 0.
        (Multiplying by the mask is several times faster than ``np.copyto(where=...)``.)
        """
        dx = np.zeros(x.shape, dy.dtype)
        rest = dy
        last = len(self.taps) - 1
        for k, tap in enumerate(self.taps):
            hit = x[tap.src] == y[tap.dst]
            if self.overlapping:
                taken = np.multiply(rest[tap.dst], hit)
                dx[tap.src] += taken
            else:  # each input element is under one tap: write into dx directly
                taken = dx[tap.src]
                np.multiply(rest[tap.dst], hit, out=taken)
            if k < last:
                if rest is dy:
                    rest = dy.copy()  # never modify the caller's gradient
                view = rest[tap.dst]
                np.subtract(view, taken, out=view)
        return dx

    def sum_backward(self, g: Array, shape: tuple[int, ...]) -> Array:
        """dL/dx of ``y = sum(x)``: every element gets the gradient of each window it is in."""
        first = self.covers_input
        if first is not None:
            dx = np.empty(shape, g.dtype)
            dx[first.src] = g[first.dst]
        else:
            dx = np.zeros(shape, g.dtype)
        for tap in self.taps:
            if tap is first:
                continue
            if self.overlapping:
                dx[tap.src] += g[tap.dst]
            else:
                dx[tap.src] = g[tap.dst]
        return dx


@functools.lru_cache(maxsize=512)
def windows(
    in_size: tuple[int, ...],
    out_size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    pad_before: tuple[int, ...],
) -> Windows:
    """The :class:`Windows` of a geometry (cached: layers call this on every forward).

    ``out_size`` is given rather than derived, so a transposed convolution can ask for the
    windows of the convolution it is the adjoint of, including ``output_padding``.
    """
    per_axis = [
        _axis_taps(*sizes)
        for sizes in zip(in_size, out_size, kernel, stride, dilation, pad_before, strict=True)
    ]
    every = slice(None)
    taps = []
    covers_input = covers_output = None
    for index in itertools.product(*(range(k) for k in kernel)):
        parts = [axis[i] for axis, i in zip(per_axis, index, strict=True)]
        if any(part is None for part in parts):
            continue
        src = tuple(part[0] for part in parts if part is not None)
        dst = tuple(part[1] for part in parts if part is not None)
        tap = Tap((every, every, *src), (every, every, *dst), (every, every, *index, *dst))
        taps.append(tap)
        if covers_input is None and all(
            s.indices(n) == (0, n, 1) for s, n in zip(src, in_size, strict=True)
        ):
            covers_input = tap
        if covers_output is None and all(
            s.indices(n) == (0, n, 1) for s, n in zip(dst, out_size, strict=True)
        ):
            covers_output = tap
    overlapping = any(
        (k - 1) * d + 1 > s for k, s, d in zip(kernel, stride, dilation, strict=True)
    )
    return Windows(
        in_size, out_size, kernel, tuple(taps), overlapping, covers_input, covers_output
    )


class Workspace:
    """Scratch arrays a layer keeps between calls while their shape repeats.

    Multi-megabyte NumPy buffers allocated afresh on every step are returned to the kernel when
    freed and faulted in again on the next step (docs/performance.md); keeping them avoids
    that. A workspace is a cache, not state: a deep copy of a layer starts with an empty one.
    Never return a workspace array to the caller, since the next call overwrites it.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, tuple[Any, Array]] = {}

    def zeros(self, name: str, shape: tuple[int, ...], dtype: DTypeLike, key: Any) -> Array:
        """A buffer of ``shape`` that was all zeros when first made, kept for as long as
        ``(shape, dtype, key)`` repeats: with ``key`` the geometry, the entries a caller never
        writes for that geometry (im2col's padding) stay zero."""
        full_key = (shape, np.dtype(dtype), key)
        kept = self._arrays.get(name)
        if kept is not None and kept[0] == full_key:
            return kept[1]
        array = np.zeros(shape, dtype)
        self._arrays[name] = (full_key, array)
        return array

    def empty(self, name: str, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
        """A buffer of ``shape`` and ``dtype`` with undefined contents, reused while they repeat."""
        return self.zeros(name, shape, dtype, None)

    def __deepcopy__(self, memo: dict[int, Any]) -> Workspace:
        return Workspace()
