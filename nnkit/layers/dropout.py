"""Dropout layers: inverted dropout of elements (Dropout) and of whole channels (Dropout2d).

Both keep their own ``np.random.Generator`` in the attribute ``rng``. It is part of the
module's state the way PyTorch's global generator is not: ``generator_state()`` reports it
(as ``"rng"``, ``"3.rng"`` inside a Sequential), and ``nnkit.save`` and
``nnkit.save_checkpoint`` store it, so a loaded model or a resumed run draws the same masks
as the original would have.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np

from nnkit._checks import as_generator
from nnkit.layers._scratch import reuse
from nnkit.module import Array, Module, as_float_array

__all__ = ["Dropout", "Dropout2d"]


def _check_p(layer: str, p: object) -> float:
    """``p`` as a float in [0, 1], or a clear error naming the layer."""
    if isinstance(p, bool) or not isinstance(p, Real):
        raise TypeError(f"{layer} p must be a real number in [0, 1], got {p!r}")
    value = float(p)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{layer}: dropout probability has to be between 0 and 1, but got {p} (p is the "
            "probability of zeroing an element)"
        )
    return value


class _Dropout(Module):
    """Shared by Dropout and Dropout2d: the mask of the last training forward, as the
    multiplier ``keep / (1 - p)`` in the input's dtype (None in eval mode or with p = 0)."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = _check_p(type(self).__name__, p)
        self.rng = as_generator(rng)
        self._multiplier: Array | None = None  # the mask of the last forward, or None
        self._buffer: Array | None = None  # the multiplier's array, kept between steps
        self._keep: Array | None = None  # the boolean mask's array, kept between steps
        self._like: tuple[tuple[int, ...], np.dtype[Any]] | None = None

    def _mask_shape(self, x: Array) -> tuple[int, ...]:
        raise NotImplementedError

    def forward(self, x: Any) -> Array:
        x = as_float_array(x)
        mask_shape = self._mask_shape(x)
        self._like = (x.shape, x.dtype)
        if not self.training or self.p == 0.0:
            self._multiplier = None
            same: Array = x
            return same
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        keep = self._keep = reuse(self._keep, mask_shape, np.bool_)
        if x.dtype in (np.float32, np.float64):  # the uniforms' array becomes the multiplier
            m = self._buffer = reuse(self._buffer, mask_shape, x.dtype)
            self.rng.random(dtype=x.dtype.type, out=m)
            np.greater_equal(m, self.p, out=keep)  # P(keep) = 1 - p
            np.multiply(keep, m.dtype.type(scale), out=m)
        else:  # float16: draw in float64
            np.greater_equal(self.rng.random(mask_shape), self.p, out=keep)
            m = np.multiply(keep, x.dtype.type(scale), dtype=x.dtype)
        self._multiplier = m
        y: Array = x * m
        return y

    def backward(self, grad_out: Any) -> Array:
        if self._like is None:
            raise self._no_cache_error()
        dy = self.grad_like(grad_out, *self._like)
        if self._multiplier is None:
            return dy
        dx: Array = dy * self._multiplier
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}


class Dropout(_Dropout):
    """Inverted dropout, as ``torch.nn.Dropout``: zero each element with probability ``p``.

    Training::

        m  = keep / (1 - p),   keep ~ Bernoulli(1 - p), one draw per element of x
        y  = x * m
        dx = dy * m            (the same mask: backward uses the forward's draw)

    Eval: ``y = x`` and ``dx = dy`` (nothing is scaled at test time). ``p = 0`` is the identity
    in both modes and draws nothing. ``p = 1`` is allowed, as in PyTorch, and zeroes
    everything (output and gradient) in training.

    Shapes: x and y of any shape, the same.

    The mask is drawn from the layer's own generator ``rng`` (uniforms in the input's dtype,
    compared with ``p``) and kept as the scaled multiplier ``m`` in the input's dtype, one
    array of x's size that the next forward of the same shape overwrites: forward and
    backward are one multiply each.

    Args:
        p: the probability of zeroing an element, in [0, 1].
        rng: the generator the masks are drawn from (None: a fresh unseeded one). Its state
            is saved with the model and restored by checkpoints.
    """

    def _mask_shape(self, x: Array) -> tuple[int, ...]:
        shape: tuple[int, ...] = x.shape
        return shape


class Dropout2d(_Dropout):
    """Channel dropout, as ``torch.nn.Dropout2d``: zero whole channels with probability ``p``.

    Input (N, C, H, W), or (N, C, L) (PyTorch treats 3-D input the same way, channel-wise,
    with a warning; nnkit does so without one). One draw per (sample, channel)::

        m  = keep / (1 - p),   keep ~ Bernoulli(1 - p) of shape (N, C, 1, 1) (or (N, C, 1))
        y  = x * m             (broadcast over H, W)
        dx = dy * m

    Eval: ``y = x``, ``dx = dy``. ``p = 1`` zeroes everything in training, as in PyTorch.
    Channel dropout suits convolutional feature maps, whose neighbouring elements are
    correlated so that element-wise dropout barely regularises them.

    Args:
        p: the probability of zeroing a channel, in [0, 1].
        rng: the generator the masks are drawn from (None: a fresh unseeded one). Its state
            is saved with the model and restored by checkpoints.
    """

    def _mask_shape(self, x: Array) -> tuple[int, ...]:
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Dropout2d(p={self.p}) expected input of shape (N, C, H, W) or (N, C, L), got "
                f"{x.shape}; use Dropout for element-wise dropout"
            )
        return x.shape[:2] + (1,) * (x.ndim - 2)
