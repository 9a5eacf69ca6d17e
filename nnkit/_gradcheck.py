"""Finite-difference gradient checks for modules and losses."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from nnkit.losses import Loss
from nnkit.module import Array, Module

__all__ = ["GradcheckError", "gradcheck", "perturb_state"]

DEFAULT_MAX_ELEMENTS = 64
"""How many elements of each input and parameter gradcheck checks by default."""


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def gradcheck(
    fn: Module | Loss,
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    max_elements: int | None = DEFAULT_MAX_ELEMENTS,
    perturb: bool = True,
) -> bool:
    """Compare analytic gradients with central differences, in float64.

    For a Module, ``inputs`` are its forward's arguments. The scalar checked is
    ``sum_k sum(y_k * r_k)`` over its outputs ``y_k`` for fixed random ``r_k`` of their shapes,
    so ``backward(r_1, ..., r_k)`` must give its gradient with respect to each floating input
    and to every parameter. Integer and bool inputs (class indices, token ids, masks) are passed
    unchanged and not differentiated. For a Loss, ``inputs`` is ``(pred, target)`` and the
    scalar is the loss itself; only ``pred`` is differentiated.

    ``fn`` is not modified: the check runs on a float64 copy. With ``perturb`` (the default) the
    copy's parameters and floating buffers are first moved to generic values (see
    :func:`perturb_state`), so a backward that is right only at the initial values (a scale of
    exactly 1, a shift of 0) is caught. A module that draws random numbers has its generators
    put back to the same state before every forward, so each difference sees the same draws
    (the same dropout mask). The module is checked in the mode it is in (``fn.training``).

    Each element passes when ``|analytic - numeric| <= atol + rtol * |numeric|`` with
    ``numeric = (f(v + eps) - f(v - eps)) / (2 eps)``. Each input and parameter with more than
    ``max_elements`` elements is checked at that many elements drawn at random (seeded by
    ``seed``); ``max_elements=None`` checks every element (two forwards per element).

    Returns:
        True when every checked element passes.

    Raises:
        GradcheckError: naming the input or parameter, the element index and both values.
    """
    if max_elements is not None and (type(max_elements) is not int or max_elements < 1):
        raise ValueError(f"max_elements must be a positive int or None, got {max_elements!r}")
    sampler = _Sampler(seed, max_elements)
    if isinstance(fn, Loss):
        if len(inputs) != 2:
            raise TypeError(f"gradcheck of a Loss takes (pred, target), got {len(inputs)} inputs")
        _check_loss(copy.deepcopy(fn), inputs[0], inputs[1], eps, atol, rtol, sampler)
    elif isinstance(fn, Module):
        if not inputs:
            raise TypeError("gradcheck of a Module takes its input(s): gradcheck(module, x)")
        module = copy.deepcopy(fn).astype(np.float64)
        if perturb:
            perturb_state(module, np.random.default_rng(seed + 7))
        _check_module(module, inputs, eps, atol, rtol, seed, sampler)
    else:
        raise TypeError(f"gradcheck takes a Module or a Loss, got {type(fn).__name__}")
    return True


def perturb_state(module: Module, rng: np.random.Generator) -> None:
    """Move parameters and floating buffers away from special values, in place.

    Each parameter element becomes ``p * u + n`` with ``u ~ U(0.5, 1.5)`` and
    ``n ~ N(0, 0.2)``; each floating buffer element ``b * u + U(0.05, 0.2)`` (a positive shift,
    so a running variance stays positive). Integer buffers (counts) are left alone.
    """
    for param in module.parameters():
        shape = param.shape
        param.data[...] = param.data * rng.uniform(0.5, 1.5, shape) + rng.normal(0, 0.2, shape)
    for buffer in module.buffers():
        if buffer.dtype.kind == "f":
            shape = buffer.shape
            buffer.data[...] = buffer.data * rng.uniform(0.5, 1.5, shape) + rng.uniform(
                0.05, 0.2, shape
            )


class _Sampler:
    """Which flat indices of an array to check: all, or a seeded sample of at most ``limit``."""

    def __init__(self, seed: int, limit: int | None) -> None:
        self.rng = np.random.default_rng(seed + 13)
        self.limit = limit

    def indices(self, size: int) -> Array:
        if self.limit is None or size <= self.limit:
            return np.arange(size)
        return np.sort(self.rng.choice(size, self.limit, replace=False))


def as_inputs(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """Floating copies in float64 of floating inputs; integer and bool inputs as arrays, as
    they are; anything else (None, an option) unchanged."""
    out: list[Any] = []
    for x in inputs:
        if x is None or isinstance(x, (str, bool, int, float)):
            out.append(x)
            continue
        array = np.asarray(x)
        if array.dtype.kind == "f":
            out.append(np.array(array, dtype=np.float64, order="C", copy=True))
        elif array.dtype.kind in "iub":
            out.append(array)
        else:
            raise TypeError(f"gradcheck needs numeric inputs, got dtype {array.dtype}")
    return tuple(out)


def differentiable(x: Any) -> bool:
    """Whether an input is one gradcheck differentiates: a floating array."""
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def outputs_of(y: Any) -> tuple[Any, ...]:
    """A forward's result as a tuple of outputs (an output may itself be a tuple, as an
    LSTM's ``(h, c)``)."""
    return y if isinstance(y, tuple) else (y,)


def leaves(tree: Any) -> list[Any]:
    """The arrays of a nested tuple, in order."""
    if isinstance(tree, tuple):
        return [leaf for item in tree for leaf in leaves(item)]
    return [tree]


def grad_tree(tree: Any, make: Callable[[tuple[int, ...]], Array]) -> Any:
    """A gradient of the same nested structure: ``make(shape)`` for each floating array,
    None for anything else (an integer output has no gradient)."""
    if isinstance(tree, tuple):
        return tuple(grad_tree(item, make) for item in tree)
    return make(tree.shape) if differentiable(tree) else None


def input_grads(dx: Any, count: int) -> tuple[Any, ...]:
    """A backward's result as a tuple of one gradient per input."""
    if count == 1:
        return (dx,)
    if not isinstance(dx, tuple) or len(dx) != count:
        raise GradcheckError(
            f"backward of a module with {count} inputs must return a tuple of {count} input "
            f"gradients, got {type(dx).__name__}"
        )
    return dx


def _check_loss(
    loss: Loss,
    pred: Any,
    target: Any,
    eps: float,
    atol: float,
    rtol: float,
    sampler: _Sampler,
) -> None:
    (pred64,) = as_inputs((pred,))
    if not differentiable(pred64):
        raise TypeError(f"gradcheck of a Loss needs a floating pred, got {np.asarray(pred).dtype}")
    target_array = np.asarray(target)
    if target_array.dtype.kind == "f":
        target_array = target_array.astype(np.float64)
    loss.forward(pred64, target_array)
    analytic = loss.backward()

    def objective() -> float:
        return loss.forward(pred64, target_array)

    _compare("input pred", analytic, pred64, objective, eps, atol, rtol, sampler)


def _check_module(
    module: Module,
    inputs: tuple[Any, ...],
    eps: float,
    atol: float,
    rtol: float,
    seed: int,
    sampler: _Sampler,
) -> None:
    xs = as_inputs(inputs)
    draws = module.generator_state()

    def run() -> tuple[Any, ...]:
        if draws:
            module.load_generator_state(draws)
        return outputs_of(module.forward(*xs))

    rng = np.random.default_rng(seed)
    rs = grad_tree(run(), rng.standard_normal)

    def objective() -> float:
        pairs = zip(leaves(run()), leaves(rs), strict=True)
        return float(sum(np.sum(y * r) for y, r in pairs if r is not None))

    module.zero_grad()
    run()
    dxs = input_grads(module.backward(*_copy_tree(rs)), len(xs))
    for i, (x, dx) in enumerate(zip(xs, dxs, strict=True)):
        if differentiable(x):
            what = "input x" if len(xs) == 1 else f"input {i}"
            if not isinstance(dx, np.ndarray):
                raise GradcheckError(
                    f"backward returned {type(dx).__name__} as the gradient of {what}, a "
                    "floating input; it must return an array of the input's shape"
                )
            _compare(what, dx, x, objective, eps, atol, rtol, sampler)
    for name, param in module.named_parameters():
        _compare(
            f"parameter {name!r}",
            param.grad.copy(),
            param.data,
            objective,
            eps,
            atol,
            rtol,
            sampler,
        )


def _copy_tree(tree: Any) -> Any:
    if isinstance(tree, tuple):
        return tuple(_copy_tree(item) for item in tree)
    return None if tree is None else tree.copy()


def _compare(
    what: str,
    analytic: Array,
    values: Array,
    objective: Callable[[], float],
    eps: float,
    atol: float,
    rtol: float,
    sampler: _Sampler,
) -> None:
    if analytic.shape != values.shape:
        raise GradcheckError(
            f"gradient of {what} has shape {analytic.shape}, expected {values.shape}"
        )
    for i in sampler.indices(values.size):
        index = tuple(int(k) for k in np.unravel_index(i, values.shape))  # any memory layout
        original = values[index]
        values[index] = original + eps
        plus = objective()
        values[index] = original - eps
        minus = objective()
        values[index] = original
        numeric = (plus - minus) / (2 * eps)
        a = float(analytic[index])
        if not abs(a - numeric) <= atol + rtol * abs(numeric):
            raise GradcheckError(
                f"gradient of {what} at index {index}: analytic {a:.8g}, numeric {numeric:.8g} "
                f"(difference {abs(a - numeric):.3g} > atol + rtol * |numeric| = "
                f"{atol + rtol * abs(numeric):.3g})"
            )
