"""Dense: the fully connected (affine) layer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit import init
from nnkit._checks import as_generator, check_bool
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = ["Dense"]

Initializer = Callable[[tuple[int, int], np.random.Generator], Array]

_NAMED_INITIALIZERS: dict[str, Initializer] = {
    "xavier_uniform": init.xavier_uniform,
    "xavier_normal": init.xavier_normal,
    "kaiming_uniform": init.kaiming_uniform,
    "kaiming_normal": init.kaiming_normal,
    "he_uniform": lambda shape, rng: init.kaiming_uniform(shape, rng, nonlinearity="relu"),
    "he_normal": lambda shape, rng: init.kaiming_normal(shape, rng, nonlinearity="relu"),
}


def _float_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    """``dtype`` as a NumPy floating dtype, or a TypeError naming it."""
    try:
        kind = np.dtype(dtype)
    except TypeError:
        kind = None
    if kind is None or kind.kind != "f":
        raise TypeError(f"Dense dtype must be a floating dtype such as 'float32', got {dtype!r}")
    return kind


class Dense(Module):
    """A fully connected layer: ``y = x @ weight + bias``.

    Shapes:
        x: (N, in_features) or (N, *, in_features); y: (N, out_features) or
        (N, *, out_features); weight: (in_features, out_features); bias: (out_features,).

    Like PyTorch's ``nn.Linear``, the layer acts on the last axis: an input of shape
    (N, T, in_features) (a sequence) is computed as one (N*T, in_features) matrix product, and
    the sums below then run over all N*T rows.

    Backward, for ``dy = dL/dy`` (as rows of shape (N*..., out_features))::

        dL/dweight += x.T @ dy
        dL/dbias   += sum(dy, axis=0)
        dL/dx       = dy @ weight.T

    The input is cached as given, not copied (it is needed for ``dL/dweight``): do not modify
    ``x`` in place between forward and backward (docs/architecture.md, the contract).

    Initialisation: by default PyTorch's ``nn.Linear`` scheme, weight and bias both drawn from
    U(-1/sqrt(in_features), 1/sqrt(in_features)). ``weight_init`` chooses another scheme for
    the weight, and the bias then starts at zero: a name (``"xavier_uniform"``,
    ``"xavier_normal"``, ``"kaiming_uniform"``, ``"kaiming_normal"``, and ``"he_uniform"`` /
    ``"he_normal"`` for Kaiming with the ReLU gain) or a callable ``(shape, rng) -> array``
    such as ``functools.partial(nnkit.init.xavier_uniform, gain=5/3)``.

    Args:
        in_features: size of each input row.
        out_features: size of each output row.
        bias: learn an additive bias.
        rng: the random generator for the initial weights (None: a fresh unseeded one).
        dtype: floating dtype of the parameters and of the computation.
        weight_init: the weight initialiser (see above); None for the default.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
        weight_init: str | Initializer | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Dense {name} must be a positive integer, got {value!r}")
        check_bool("Dense bias", bias)
        if isinstance(weight_init, str) and weight_init not in _NAMED_INITIALIZERS:
            raise ValueError(
                f"unknown weight_init {weight_init!r}; expected one of "
                f"{', '.join(_NAMED_INITIALIZERS)} or a callable (shape, rng) -> array"
            )
        if not (weight_init is None or isinstance(weight_init, str) or callable(weight_init)):
            raise TypeError(
                f"weight_init must be None, a name or a callable (shape, rng) -> array, got "
                f"{weight_init!r}"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight_init = weight_init
        kind = _float_dtype(dtype)
        self.weight = Parameter(self._allocate((self.in_features, self.out_features), kind))
        self.bias = Parameter(self._allocate((self.out_features,), kind)) if bias else None
        self._x: Array | None = None  # the input as rows, (N*..., in_features)
        self._lead: tuple[int, ...] = ()  # the input's shape without its last axis
        self.reset_parameters(rng)

    def _allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
        """Zeros of ``shape``, or an error that says which layer is too large and by how much."""
        count = math.prod(shape)
        size = f"{count:,} values ({count * dtype.itemsize / 2**30:,.1f} GiB of {dtype})"
        where = f"Dense(in_features={self.in_features}, out_features={self.out_features})"
        if count * dtype.itemsize > np.iinfo(np.intp).max:
            raise ValueError(
                f"{where} would need an array of shape {shape}: {size}, more than this "
                "platform can address; check in_features and out_features"
            )
        try:
            return np.zeros(shape, dtype=dtype)
        except MemoryError:
            raise MemoryError(
                f"{where} needs an array of shape {shape}: {size}, more memory than is free; "
                "check in_features and out_features"
            ) from None

    def reset_parameters(self, rng: np.random.Generator | None = None) -> None:
        """Draw fresh initial values (see the class docstring)."""
        rng = as_generator(rng)
        shape = (self.in_features, self.out_features)
        if self.weight_init is None:
            bound = 1.0 / math.sqrt(self.in_features)
            self.weight.data[...] = rng.uniform(-bound, bound, size=shape)
            if self.bias is not None:
                self.bias.data[...] = rng.uniform(-bound, bound, size=self.out_features)
            return
        make = (
            _NAMED_INITIALIZERS[self.weight_init]
            if isinstance(self.weight_init, str)
            else self.weight_init
        )
        weight = np.asarray(make(shape, rng))
        if weight.shape != shape:
            raise ValueError(f"weight_init returned shape {weight.shape}, expected {shape}")
        self.weight.data[...] = weight
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, x: Array) -> Array:
        weight = self.weight.data
        if type(x) is not np.ndarray or x.dtype is not weight.dtype:  # else nothing to convert
            x = as_float_array(x, weight.dtype)
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            expected = "(N, *, " if x.ndim > 2 else "(N, "
            raise ValueError(
                f"Dense(in_features={self.in_features}, out_features={self.out_features}) "
                f"expected input of shape {expected}{self.in_features}), got {x.shape}"
            )
        lead = x.shape[:-1]
        if x.ndim > 2:
            x = x.reshape(-1, self.in_features)  # a view when x is contiguous
        self._x, self._lead = x, lead
        try:
            y: Array = x @ weight
        except ValueError:  # only a weight of the wrong shape gets here
            raise ValueError(
                f"Dense(in_features={self.in_features}, out_features={self.out_features}) has a "
                f"weight of shape {weight.shape}; a Parameter shared between layers "
                "(tied weights) must have the same shape in both"
            ) from None
        bias = self.bias
        if bias is not None:
            y += bias.data
        if len(lead) > 1:
            y = y.reshape(*lead, self.out_features)
        return y

    def backward(self, grad_out: Array) -> Array:
        dy = self._accumulate(grad_out)
        dx: Array = dy @ self.weight.data.T
        if len(self._lead) > 1:
            dx = dx.reshape(*self._lead, self.in_features)
        return dx

    def accumulate_grad(self, grad_out: Array) -> None:
        self._accumulate(grad_out)

    def _accumulate(self, grad_out: Array) -> Array:
        """Add dL/dweight and dL/dbias into the gradients; returns the checked dy."""
        x = self._x
        if x is None:
            raise self._no_cache_error()
        shape = (*self._lead, self.out_features)
        dy = grad_out
        if type(dy) is not np.ndarray or dy.dtype is not x.dtype or dy.shape != shape:
            dy = self.grad_like(grad_out, shape, x.dtype)  # converts, or says what is wrong
        if dy.ndim > 2:
            dy = dy.reshape(-1, self.out_features)
        self.weight.add_grad_matmul(x.T, dy)
        bias = self.bias
        if bias is not None:
            bias.add_grad_sum(dy, axis=0)
        return dy

    def get_config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.weight.data.dtype.name,
        }
