"""Merge layers: several inputs of one shape in, one output out.

They join branches again, after a :class:`~nnkit.Parallel` in a ``Sequential`` or as a node
of a :class:`~nnkit.Graph` fed by several nodes. Inputs must have the same shape (no silent
broadcasting); backward returns one gradient per input, as a tuple. Those gradients may be
views of (or the very array) ``grad_out``: like every gradient, they are read, never modified.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnkit.containers import _concat_splits
from nnkit.module import Array, Module, as_float_array

__all__ = ["Add", "Concatenate", "Multiply"]


class _Merge(Module):
    """Checks and caches shared by the merge layers."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] | None = None
        self._dtype: np.dtype[Any] = np.dtype(np.float32)

    def _inputs(self, inputs: tuple[Any, ...], same_shape: bool = True) -> list[Array]:
        name = type(self).__name__
        if len(inputs) < 2:
            raise ValueError(f"{name} merges two or more inputs, got {len(inputs)}")
        arrays = [as_float_array(x) for x in inputs]
        dtype = np.result_type(*arrays)
        arrays = [a if a.dtype == dtype else a.astype(dtype) for a in arrays]
        if same_shape and len({a.shape for a in arrays}) != 1:
            raise ValueError(
                f"{name} takes inputs of one shape, got {[a.shape for a in arrays]}; nnkit does "
                "not broadcast silently"
            )
        self._dtype = dtype
        return arrays

    def _grad(self, grad_out: Any) -> Array:
        if self._shape is None:
            raise self._no_cache_error()
        return self.grad_like(grad_out, self._shape, self._dtype)


class Add(_Merge):
    """Elementwise sum of its inputs: ``y = x_1 + ... + x_k``; ``dx_i = dy`` for every i."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def forward(self, *inputs: Any) -> Array:
        arrays = self._inputs(inputs)
        y = arrays[0] + arrays[1]
        for a in arrays[2:]:
            y += a
        self._shape, self._count = y.shape, len(arrays)
        return y

    def backward(self, grad_out: Array) -> tuple[Array, ...]:
        dy = self._grad(grad_out)
        return (dy,) * self._count


class Multiply(_Merge):
    """Elementwise product of its inputs: ``y = x_1 * ... * x_k``.

    Backward: ``dx_i = dy * prod_{j != i} x_j`` (computed as products of the others, so a zero
    input gives no division by zero).
    """

    def __init__(self) -> None:
        super().__init__()
        self._arrays: list[Array] | None = None

    def forward(self, *inputs: Any) -> Array:
        arrays = self._inputs(inputs)
        y = arrays[0] * arrays[1]
        for a in arrays[2:]:
            y *= a
        self._shape, self._arrays = y.shape, arrays
        return y

    def backward(self, grad_out: Array) -> tuple[Array, ...]:
        dy = self._grad(grad_out)
        arrays = self._arrays or []
        grads = []
        for i in range(len(arrays)):
            g = dy.copy()
            for j, a in enumerate(arrays):
                if j != i:
                    g *= a
            grads.append(g)
        return tuple(grads)


class Concatenate(_Merge):
    """Concatenates its inputs along ``axis``: ``y = concatenate([x_1, ..., x_k], axis)``.

    The inputs agree on every axis but ``axis``; backward splits ``dy`` back into the inputs'
    parts along ``axis``.

    Args:
        axis: the axis to concatenate along (1, the feature or channel axis, by default).
    """

    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        if type(axis) is not int:
            raise TypeError(f"Concatenate axis must be an int, got {axis!r}")
        self.axis = axis
        self._splits: list[int] = []

    def forward(self, *inputs: Any) -> Array:
        arrays = self._inputs(inputs, same_shape=False)
        self._splits = _concat_splits(arrays, self.axis, "Concatenate")
        y = np.concatenate(arrays, axis=self.axis)
        self._shape = y.shape
        return y

    def backward(self, grad_out: Array) -> tuple[Array, ...]:
        dy = self._grad(grad_out)
        return tuple(np.split(dy, self._splits, axis=self.axis))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}
