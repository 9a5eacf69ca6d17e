"""Small layers with buffers and generators, written on the public contract, for the core tests.

``Center`` keeps a running mean (a floating buffer) and a step count (an integer buffer), as
BatchNorm does; ``Noise`` keeps its own generator, as Dropout does. They are registered, so
models holding them save and load.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import nnkit
from nnkit.module import Array, as_float_array


@nnkit.register_module
class Center(nnkit.Module):
    """``y = x - mean``: the batch mean in training (updating the running mean), the running
    mean in eval. Backward: ``dx = dy - mean(dy)`` in training, ``dx = dy`` in eval."""

    def __init__(self, features: int, momentum: float = 0.5) -> None:
        super().__init__()
        self.features, self.momentum = features, momentum
        self.running_mean = nnkit.Buffer(np.zeros(features, dtype=np.float32))
        self.steps = nnkit.Buffer(np.zeros((), dtype=np.int64))
        self._shape: tuple[int, ...] | None = None
        self._dtype: Any = None
        self._trained = False

    def forward(self, x: Any) -> Array:
        x = as_float_array(x, self.running_mean.dtype)
        self._shape, self._dtype, self._trained = x.shape, x.dtype, self.training
        if self.training:
            mean = x.mean(axis=0)
            self.running_mean.data *= 1 - self.momentum
            self.running_mean.data += self.momentum * mean
            self.steps.data += 1
            return x - mean
        return x - self.running_mean.data

    def backward(self, grad_out: Any) -> Array:
        if self._shape is None:
            raise self._no_cache_error()
        dy = self.grad_like(grad_out, self._shape, self._dtype)
        return dy - dy.mean(axis=0) if self._trained else dy.copy()

    def get_config(self) -> dict[str, Any]:
        return {"features": self.features, "momentum": self.momentum}


@nnkit.register_module
class Noise(nnkit.Module):
    """Inverted dropout: ``y = x * mask / (1 - p)`` in training, ``y = x`` in eval."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()
        self._mask: Array | None = None

    def forward(self, x: Any) -> Array:
        x = as_float_array(x)
        if not self.training:
            self._mask = np.ones_like(x)
            return x.copy()
        self._mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * self._mask

    def backward(self, grad_out: Any) -> Array:
        if self._mask is None:
            raise self._no_cache_error()
        return self.grad_like(grad_out, self._mask.shape, self._mask.dtype) * self._mask

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}
