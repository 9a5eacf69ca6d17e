"""Parameter: a trainable array and the gradient that accumulates into it."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["Parameter"]


class Parameter:
    """A trainable array with its gradient.

    ``data`` holds the values and ``grad`` the accumulated gradient dL/d(data); both have the
    same shape and floating dtype, and ``grad`` starts at zeros. Layers *add* into ``grad`` in
    their backward pass; ``zero_grad()`` resets it in place, so references held by optimizers
    stay valid. Optimizers update ``data`` in place for the same reason.

    Args:
        data: initial values; copied and converted to ``dtype`` (by default the array's own
            floating dtype, or float32 for integer and bool input).
        dtype: the floating dtype to store.
    """

    __slots__ = ("data", "grad")

    data: NDArray[np.floating]
    grad: NDArray[np.floating]

    def __init__(self, data: ArrayLike, dtype: DTypeLike | None = None) -> None:
        array = np.asarray(data)
        if dtype is None:
            dtype = array.dtype if array.dtype.kind == "f" else np.float32
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"Parameter dtype must be floating, got {np.dtype(dtype)}")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Parameter data must be numeric, got dtype {array.dtype}")
        self.data = np.array(array, dtype=dtype, copy=True)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``data`` (and of ``grad``)."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[np.floating]:
        """The dtype of ``data`` (and of ``grad``)."""
        return self.data.dtype

    @property
    def size(self) -> int:
        """The number of elements."""
        return self.data.size

    def zero_grad(self) -> None:
        """Reset the accumulated gradient to zeros, in place."""
        self.grad.fill(0)

    def astype(self, dtype: DTypeLike) -> None:
        """Convert ``data`` and ``grad`` to another floating dtype (replaces both arrays)."""
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"Parameter dtype must be floating, got {np.dtype(dtype)}")
        self.data = self.data.astype(dtype)
        self.grad = self.grad.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
