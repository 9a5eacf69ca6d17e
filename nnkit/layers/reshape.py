"""Reshaping layers: ``Flatten``, ``Unflatten`` and ``Reshape``.

They move no data: the output is a reshaped view of the input where NumPy can make one, and
the input gradient a reshaped view of the output gradient. Axis 0 is always the batch, and
none of them merges or splits it. No parameters: they compute in the input's floating
dtype (integer input becomes float32).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnkit.module import Array, Module, as_float_array

__all__ = ["Flatten", "Reshape", "Unflatten"]


def _int(layer: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer} {name} must be an int, got {value!r}")
    return int(value)


def _sizes(layer: str, name: str, sizes: Any) -> tuple[int, ...]:
    """A target shape: ints >= 1, with at most one -1 (inferred, as in NumPy and PyTorch)."""
    if not isinstance(sizes, (tuple, list)):
        raise TypeError(f"{layer} {name} must be a tuple of ints, got {sizes!r}")
    values = tuple(_int(layer, name, v) for v in sizes)
    if any(v < 1 and v != -1 for v in values) or values.count(-1) > 1:
        raise ValueError(
            f"{layer} {name} must hold sizes >= 1 and at most one -1, got {tuple(sizes)}"
        )
    return values


def _resolve(sizes: tuple[int, ...], total: int) -> tuple[int, ...] | None:
    """``sizes`` with its -1 filled in so that they multiply to ``total``; None if impossible."""
    known = math.prod(v for v in sizes if v != -1)
    if -1 in sizes:
        if total % known:
            return None
        return tuple(total // known if v == -1 else v for v in sizes)
    return sizes if known == total else None


class _Reshaping(Module):
    """Caches the input's shape and dtype; backward reshapes dy back to that shape."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[tuple[int, ...], tuple[int, ...], np.dtype[Any]] | None = None

    def _reshape(self, x: Array, shape: tuple[int, ...]) -> Array:
        self._cache = (x.shape, shape, x.dtype)
        return x.reshape(shape)

    def backward(self, grad_out: Array) -> Array:
        if self._cache is None:
            raise self._no_cache_error()
        x_shape, y_shape, dtype = self._cache
        return self._grad_like(grad_out, y_shape, dtype).reshape(x_shape)


class Flatten(_Reshaping):
    """Merges the axes ``start_dim`` to ``end_dim`` (both included) into one, as PyTorch's
    ``nn.Flatten``: by default (N, C, H, W) -> (N, C * H * W).

    Axes count from the batch axis 0, and negative values from the end; ``start_dim`` must
    resolve to 1 or more, since the batch axis is never merged. ``y = x.reshape(...)`` and
    ``dx = dy.reshape(x.shape)``.

    Args:
        start_dim: the first axis to merge (default 1).
        end_dim: the last axis to merge (default -1, the last).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = _int("Flatten", "start_dim", start_dim)
        self.end_dim = _int("Flatten", "end_dim", end_dim)
        if self.start_dim == 0 or self.end_dim == 0:
            raise ValueError(
                f"Flatten(start_dim={start_dim}, end_dim={end_dim}) would merge the batch axis "
                "0; nnkit layers keep it, so start counting the axes to merge at 1"
            )

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        ndim = x.ndim
        start = self.start_dim if self.start_dim >= 0 else ndim + self.start_dim
        end = self.end_dim if self.end_dim >= 0 else ndim + self.end_dim
        if not 1 <= start <= end < ndim:
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) cannot merge "
                f"axes {self.start_dim} to {self.end_dim} of an input of shape {x.shape}: they "
                f"must be axes 1 to {ndim - 1} (0 is the batch), in order"
            )
        merged = math.prod(x.shape[start : end + 1])
        return self._reshape(x, (*x.shape[:start], merged, *x.shape[end + 1 :]))

    def get_config(self) -> dict[str, Any]:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}


class Unflatten(_Reshaping):
    """Splits axis ``dim`` into ``unflattened_size``, as PyTorch's ``nn.Unflatten``:
    ``Unflatten(1, (16, 7, 7))`` turns (N, 784) into (N, 16, 7, 7).

    ``dim`` counts from the batch axis 0 (negative: from the end) and must resolve to 1 or
    more. One size may be -1, inferred from the others. ``y = x.reshape(...)`` and
    ``dx = dy.reshape(x.shape)``.

    Args:
        dim: the axis to split.
        unflattened_size: the sizes it becomes; their product must equal its size.
    """

    def __init__(self, dim: int, unflattened_size: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        self.dim = _int("Unflatten", "dim", dim)
        if self.dim == 0:
            raise ValueError("Unflatten dim must not be 0, the batch axis")
        self.unflattened_size = _sizes("Unflatten", "unflattened_size", unflattened_size)

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        dim = self.dim if self.dim >= 0 else x.ndim + self.dim
        title = f"Unflatten(dim={self.dim}, unflattened_size={self.unflattened_size})"
        if not 1 <= dim < x.ndim:
            raise ValueError(
                f"{title} cannot split axis {self.dim} of an input of shape {x.shape}: it "
                f"must be one of the axes 1 to {x.ndim - 1} (0 is the batch)"
            )
        sizes = _resolve(self.unflattened_size, x.shape[dim])
        if sizes is None:
            raise ValueError(
                f"{title} cannot split axis {dim} of size {x.shape[dim]} (input of shape "
                f"{x.shape}) into {self.unflattened_size}"
            )
        return self._reshape(x, (*x.shape[:dim], *sizes, *x.shape[dim + 1 :]))

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim, "unflattened_size": self.unflattened_size}


class Reshape(_Reshaping):
    """Reshapes each sample: ``Reshape(16, 7, 7)`` turns (N, 784) into (N, 16, 7, 7).

    ``shape`` is the shape of one sample and **excludes the batch axis**, which is kept:
    ``y = x.reshape(N, *shape)`` and ``dx = dy.reshape(x.shape)``. One size may be -1,
    inferred from the others (also for an empty batch). ``Reshape()`` turns (N, 1) into (N,).

    Args:
        *shape: the sizes of one output sample.
    """

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = _sizes("Reshape", "shape", shape)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Reshape:
        """Rebuild from :meth:`get_config` (the shape is passed as ``*shape``)."""
        return cls(*config["shape"])

    def forward(self, x: Array) -> Array:
        x = as_float_array(x)
        per_sample = math.prod(x.shape[1:]) if x.ndim else 0
        sizes = _resolve(self.shape, per_sample) if x.ndim else None
        if sizes is None:
            raise ValueError(
                f"Reshape({self.extra_repr()}) cannot reshape an input of shape {x.shape} "
                f"({per_sample} values per sample) to {self.shape} per sample"
            )
        return self._reshape(x, (x.shape[0], *sizes))

    def get_config(self) -> dict[str, Any]:
        return {"shape": self.shape}

    def extra_repr(self) -> str:
        return ", ".join(str(size) for size in self.shape)
