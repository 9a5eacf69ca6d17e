"""Finite-difference gradient checks for modules and losses."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from nnkit.losses import Loss
from nnkit.module import Array, Module

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def gradcheck(
    fn: Module | Loss,
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Compare analytic gradients with central differences, in float64.

    For a Module, ``inputs`` is ``(x,)``; the scalar checked is ``sum(module(x) * r)`` for a
    fixed random ``r`` of the output's shape, so ``backward(r)`` must give its gradient with
    respect to ``x`` and to every parameter. For a Loss, ``inputs`` is ``(pred, target)`` and
    the scalar is the loss itself; only ``pred`` is differentiated. ``fn`` is not modified:
    the check runs on a float64 copy.

    Each element passes when ``|analytic - numeric| <= atol + rtol * |numeric|`` with
    ``numeric = (f(v + eps) - f(v - eps)) / (2 eps)``.

    Returns:
        True when every element passes.

    Raises:
        GradcheckError: naming the input or parameter, the element index and both values.
    """
    if isinstance(fn, Loss):
        if len(inputs) != 2:
            raise TypeError(f"gradcheck of a Loss takes (pred, target), got {len(inputs)} inputs")
        _check_loss(copy.deepcopy(fn), inputs[0], inputs[1], eps, atol, rtol)
    elif isinstance(fn, Module):
        if len(inputs) != 1:
            raise TypeError(f"gradcheck of a Module takes one input x, got {len(inputs)} inputs")
        _check_module(copy.deepcopy(fn).astype(np.float64), inputs[0], eps, atol, rtol, seed)
    else:
        raise TypeError(f"gradcheck takes a Module or a Loss, got {type(fn).__name__}")
    return True


def _float64_copy(x: Any) -> Array:
    array = np.asarray(x)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"gradcheck needs numeric inputs, got dtype {array.dtype}")
    return np.array(array, dtype=np.float64, copy=True)


def _check_loss(loss: Loss, pred: Any, target: Any, eps: float, atol: float, rtol: float) -> None:
    pred64 = _float64_copy(pred)
    target_array = np.asarray(target)
    if target_array.dtype.kind == "f":
        target_array = target_array.astype(np.float64)
    loss.forward(pred64, target_array)
    analytic = loss.backward()
    def objective() -> float:
        return loss.forward(pred64, target_array)

    _compare("input pred", analytic, pred64, objective, eps, atol, rtol)


def _check_module(module: Module, x: Any, eps: float, atol: float, rtol: float, seed: int) -> None:
    x64 = _float64_copy(x)
    r = np.random.default_rng(seed).standard_normal(module.forward(x64).shape)

    def objective() -> float:
        return float(np.sum(module.forward(x64) * r))

    module.zero_grad()
    module.forward(x64)
    dx = module.backward(r.copy())
    _compare("input x", dx, x64, objective, eps, atol, rtol)
    for name, param in module.named_parameters():
        _compare(f"parameter {name!r}", param.grad.copy(), param.data, objective, eps, atol, rtol)


def _numeric(values: Array, objective: Callable[[], float], eps: float) -> Iterator[float]:
    """Central differences of ``objective`` with respect to each element of ``values``."""
    flat = values.reshape(-1)  # a view: values is contiguous
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = objective()
        flat[i] = original - eps
        minus = objective()
        flat[i] = original
        yield (plus - minus) / (2 * eps)


def _compare(
    what: str,
    analytic: Array,
    values: Array,
    objective: Callable[[], float],
    eps: float,
    atol: float,
    rtol: float,
) -> None:
    if analytic.shape != values.shape:
        raise GradcheckError(
            f"gradient of {what} has shape {analytic.shape}, expected {values.shape}"
        )
    flat_analytic = analytic.reshape(-1)
    for i, numeric in enumerate(_numeric(values, objective, eps)):
        a = float(flat_analytic[i])
        if not abs(a - numeric) <= atol + rtol * abs(numeric):
            index = tuple(int(k) for k in np.unravel_index(i, values.shape))
            raise GradcheckError(
                f"gradient of {what} at index {index}: analytic {a:.8g}, numeric {numeric:.8g} "
                f"(difference {abs(a - numeric):.3g} > atol + rtol * |numeric| = "
                f"{atol + rtol * abs(numeric):.3g})"
            )
