"""Dense: the fully connected (affine) layer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit import init
from nnkit._checks import as_generator
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
        if isinstance(weight_init, str) and weight_init not in _NAMED_INITIALIZERS:
            raise ValueError(
                f"unknown weight_init {weight_init!r}; expected one of "
                f"{', '.join(_NAMED_INITIALIZERS)} or a callable (shape, rng) -> array"
            )
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight_init = weight_init
        self.weight = Parameter(np.zeros((self.in_features, self.out_features)), dtype=dtype)
        self.bias = Parameter(np.zeros(self.out_features), dtype=dtype) if bias else None
        self._x: Array | None = None  # the input as rows, (N*..., in_features)
        self._lead: tuple[int, ...] = ()  # the input's shape without its last axis
        self.reset_parameters(rng)

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
        x = as_float_array(x, self.weight.data.dtype)
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
            y: Array = x @ self.weight.data
        except ValueError:  # only a weight of the wrong shape gets here
            raise ValueError(
                f"Dense(in_features={self.in_features}, out_features={self.out_features}) has a "
                f"weight of shape {self.weight.data.shape}; a Parameter shared between layers "
                "(tied weights) must have the same shape in both"
            ) from None
        if self.bias is not None:
            y += self.bias.data
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
        dy = self._grad_like(grad_out, (*self._lead, self.out_features), x.dtype)
        if dy.ndim > 2:
            dy = dy.reshape(-1, self.out_features)
        self.weight.add_grad_matmul(x.T, dy)
        if self.bias is not None:
            self.bias.add_grad_sum(dy, axis=0)
        return dy

    def get_config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "dtype": self.weight.data.dtype.name,
        }
