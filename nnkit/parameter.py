"""Parameter (a trainable array and its gradient) and Buffer (non-trainable module state)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["Buffer", "Parameter"]


class Parameter:
    """A trainable array with its gradient.

    ``data`` holds the values and ``grad`` the accumulated gradient dL/d(data); both have the
    same shape and floating dtype, and ``grad`` starts at zeros. Layers *add* into ``grad`` in
    their backward pass; ``zero_grad()`` resets it, keeping the same array. Optimizers update
    ``data`` in place, so references to the parameter stay valid.

    ``zero_grad()`` costs nothing: it marks the gradient as zero, and the array is cleared
    when ``grad`` is next read, or overwritten (instead of added to) by the next
    :meth:`add_grad`, :meth:`add_grad_matmul` or :meth:`add_grad_sum`. Code that reads
    gradients through ``grad`` never sees the difference; only a reference to the array taken
    *before* ``zero_grad()`` and read *without* going through ``grad`` again would see the old
    values.

    Args:
        data: initial values; copied and converted to ``dtype`` (by default the array's own
            floating dtype, or float32 for integer and bool input).
        dtype: the floating dtype to store.
    """

    __slots__ = ("_grad", "_grad_is_zero", "data")

    data: NDArray[np.floating]
    _grad: NDArray[np.floating]
    _grad_is_zero: bool

    def __init__(self, data: ArrayLike, dtype: DTypeLike | None = None) -> None:
        array = np.asarray(data)
        if dtype is None:
            dtype = array.dtype if array.dtype.kind == "f" else np.float32
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"Parameter dtype must be floating, got {np.dtype(dtype)}")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Parameter data must be numeric, got dtype {array.dtype}")
        self.data = np.array(array, dtype=dtype, copy=True)
        self._grad = np.zeros_like(self.data)
        self._grad_is_zero = False

    @property
    def grad(self) -> NDArray[np.floating]:
        """The accumulated gradient, same shape and dtype as ``data``."""
        if self._grad_is_zero:
            self._grad.fill(0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value: NDArray[np.floating]) -> None:
        if not isinstance(value, np.ndarray):
            raise TypeError(f"grad must be an ndarray, got {type(value).__name__}")
        if value.shape != self.data.shape or value.dtype != self.data.dtype:
            raise ValueError(
                f"grad must have the parameter's shape {self.data.shape} and dtype "
                f"{self.data.dtype}, got {value.shape} {value.dtype}"
            )
        self._grad = value
        self._grad_is_zero = False

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
        """Reset the accumulated gradient to zeros (lazily, keeping the same array)."""
        self._grad_is_zero = True

    def add_grad(self, value: NDArray[np.floating]) -> None:
        """``grad += value``; after ``zero_grad()`` a copy instead of a fill and an add."""
        if value.shape != self._grad.shape:
            raise ValueError(
                f"add_grad got shape {value.shape} for a parameter of shape {self._grad.shape}"
            )
        if self._grad_is_zero:
            np.copyto(self._grad, value)
            self._grad_is_zero = False
        else:
            self._grad += value

    def add_grad_matmul(self, a: NDArray[np.floating], b: NDArray[np.floating]) -> None:
        """``grad += a @ b``; after ``zero_grad()`` the product is written straight into grad."""
        if self._grad_is_zero:
            try:
                np.matmul(a, b, out=self._grad)
            except ValueError:
                raise self._shape_error("add_grad_matmul", f"{a.shape} @ {b.shape}") from None
            self._grad_is_zero = False
        else:
            product = a @ b
            if product.shape != self._grad.shape:
                raise self._shape_error("add_grad_matmul", f"{a.shape} @ {b.shape}")
            self._grad += product

    def add_grad_sum(self, a: NDArray[np.floating], axis: int = 0) -> None:
        """``grad += a.sum(axis)``; after ``zero_grad()`` the sum is written straight into grad."""
        if self._grad_is_zero:
            try:
                np.add.reduce(a, axis=axis, out=self._grad)
            except ValueError:
                raise self._shape_error("add_grad_sum", f"{a.shape} over axis {axis}") from None
            self._grad_is_zero = False
        else:
            total = np.add.reduce(a, axis=axis)
            if total.shape != self._grad.shape:
                raise self._shape_error("add_grad_sum", f"{a.shape} over axis {axis}")
            self._grad += total

    def _shape_error(self, method: str, operands: str) -> ValueError:
        return ValueError(
            f"{method} of {operands} does not give the parameter's shape {self._grad.shape}"
        )

    def astype(self, dtype: DTypeLike) -> None:
        """Convert ``data`` and ``grad`` to another floating dtype (replaces both arrays)."""
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"Parameter dtype must be floating, got {np.dtype(dtype)}")
        self._grad = self.grad.astype(dtype)
        self.data = self.data.astype(dtype)

    def __copy__(self) -> Parameter:
        """An independent copy (values and gradient), as ``copy.deepcopy`` gives.

        Two Parameter objects cannot share one gradient array: each keeps its own lazy
        "is zero" mark. Share the Parameter object itself instead.
        """
        new = Parameter(self.data)
        np.copyto(new._grad, self.grad)
        return new

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Buffer:
    """Non-trainable state a module keeps: running statistics, a step count.

    A Buffer is found by the same attribute walk as a :class:`Parameter` and has a dotted name
    (``"1.running_mean"``), but it has no gradient and no optimizer updates it: the module
    that owns it writes ``data`` itself, usually in place (``buf.data *= 0.9``) or by
    assignment (``buf.data = new``, stored as an ndarray in the buffer's dtype: a 0-d count
    stays an int64 array, a float64 result does not promote a float32 buffer).
    ``state_dict()`` holds every *persistent* buffer beside the
    parameters, so saving, loading, checkpoints and ``astype`` carry it; a non-persistent
    buffer (``persistent=False``, e.g. a cache that can be recomputed) is neither saved nor
    loaded. ``astype`` converts floating buffers; integer and bool buffers (counts, masks)
    keep their dtype.

    Args:
        data: initial values; copied. Any numeric dtype (bool, integer, floating).
        dtype: the dtype to store (by default the array's own).
        persistent: whether ``state_dict()`` includes the buffer.
    """

    __slots__ = ("_data", "persistent")

    _data: NDArray[Any]
    persistent: bool

    def __init__(
        self, data: ArrayLike, dtype: DTypeLike | None = None, *, persistent: bool = True
    ) -> None:
        array = np.array(data, dtype=dtype, copy=True)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Buffer data must be numeric (bool, int, float), got {array.dtype}")
        if type(persistent) is not bool:
            raise TypeError(f"Buffer persistent must be True or False, got {persistent!r}")
        self._data = array
        self.persistent = persistent

    @property
    def data(self) -> NDArray[Any]:
        """The values (an ndarray, also for a 0-d count)."""
        return self._data

    @data.setter
    def data(self, value: ArrayLike) -> None:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Buffer data must be numeric (bool, int, float), got {array.dtype}")
        self._data = array.astype(self._data.dtype, copy=False)  # astype() changes the dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``data``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of ``data``."""
        return self.data.dtype

    @property
    def size(self) -> int:
        """The number of elements."""
        return self.data.size

    def astype(self, dtype: DTypeLike) -> None:
        """Convert a floating buffer to another floating ``dtype``; other buffers keep theirs."""
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"astype takes a floating dtype, got {np.dtype(dtype)}")
        if self._data.dtype.kind == "f":
            self._data = self._data.astype(dtype)

    def __repr__(self) -> str:
        extra = "" if self.persistent else ", persistent=False"
        return f"Buffer(shape={self.data.shape}, dtype={self.data.dtype}{extra})"
