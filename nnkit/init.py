"""Initialisers: functions that return a new array of a given shape.

They follow ``torch.nn.init`` (same fan modes, gains and bounds) with two differences of form:
they return a new array instead of filling a tensor, and the random ones take an explicit
``np.random.Generator`` so a seed given once reproduces a whole model.

Fans: for a 2-D shape ``(in_features, out_features)`` (nnkit's Dense layout, the transpose of
PyTorch's) ``fan_in = shape[0]`` and ``fan_out = shape[1]``. For more dimensions the layout is
PyTorch's convolution layout ``(out_channels, in_channels, *kernel)``:
``fan_in = in_channels * prod(kernel)`` and ``fan_out = out_channels * prod(kernel)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

__all__ = [
    "calculate_gain",
    "constant",
    "fans",
    "kaiming_normal",
    "kaiming_uniform",
    "normal",
    "ones",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Array = NDArray[Any]
Shape = int | tuple[int, ...]
FanMode = Literal["fan_in", "fan_out"]


def _shape(shape: Shape) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


def fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of this shape (see the module docstring)."""
    dims = _shape(shape)
    if len(dims) < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {dims}")
    if len(dims) == 2:
        return dims[0], dims[1]
    receptive = math.prod(dims[2:])
    return dims[1] * receptive, dims[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    linear, identity, sigmoid: 1; tanh: 5/3; relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + negative_slope^2)) with ``param`` the slope (default 0.01);
    selu: 3/4.
    """
    if nonlinearity in ("linear", "identity", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 0.75
    raise ValueError(
        f"unknown nonlinearity {nonlinearity!r}; expected one of linear, identity, sigmoid, "
        "tanh, relu, leaky_relu, selu"
    )


def zeros(shape: Shape, dtype: DTypeLike = np.float32) -> Array:
    """An array of zeros."""
    return np.zeros(_shape(shape), dtype=dtype)


def ones(shape: Shape, dtype: DTypeLike = np.float32) -> Array:
    """An array of ones."""
    return np.ones(_shape(shape), dtype=dtype)


def constant(shape: Shape, value: float, dtype: DTypeLike = np.float32) -> Array:
    """An array filled with ``value``."""
    return np.full(_shape(shape), value, dtype=dtype)


def uniform(
    shape: Shape,
    rng: np.random.Generator,
    a: float = 0.0,
    b: float = 1.0,
    dtype: DTypeLike = np.float32,
) -> Array:
    """Samples from U(a, b)."""
    if not a <= b:
        raise ValueError(f"uniform needs a <= b, got a={a}, b={b}")
    return rng.uniform(a, b, size=_shape(shape)).astype(dtype)


def normal(
    shape: Shape,
    rng: np.random.Generator,
    mean: float = 0.0,
    std: float = 1.0,
    dtype: DTypeLike = np.float32,
) -> Array:
    """Samples from N(mean, std^2)."""
    if std < 0:
        raise ValueError(f"normal needs std >= 0, got std={std}")
    return rng.normal(mean, std, size=_shape(shape)).astype(dtype)


def xavier_uniform(
    shape: Shape, rng: np.random.Generator, gain: float = 1.0, dtype: DTypeLike = np.float32
) -> Array:
    """Glorot uniform: U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, rng, -bound, bound, dtype)


def xavier_normal(
    shape: Shape, rng: np.random.Generator, gain: float = 1.0, dtype: DTypeLike = np.float32
) -> Array:
    """Glorot normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    return normal(shape, rng, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), dtype)


def _kaiming_std(shape: Shape, a: float, mode: FanMode, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform(
    shape: Shape,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    dtype: DTypeLike = np.float32,
) -> Array:
    """He uniform: U(-b, b) with ``b = sqrt(3) * gain / sqrt(fan)``, gain from ``calculate_gain``.

    ``a`` is the negative slope used by the leaky_relu gain (PyTorch's defaults).
    """
    bound = math.sqrt(3.0) * _kaiming_std(shape, a, mode, nonlinearity)
    return uniform(shape, rng, -bound, bound, dtype)


def kaiming_normal(
    shape: Shape,
    rng: np.random.Generator,
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "leaky_relu",
    dtype: DTypeLike = np.float32,
) -> Array:
    """He normal: N(0, std^2) with ``std = gain / sqrt(fan)``, gain from ``calculate_gain``."""
    return normal(shape, rng, 0.0, _kaiming_std(shape, a, mode, nonlinearity), dtype)
