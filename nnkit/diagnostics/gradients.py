"""The gradient check of a whole model: each module on the activations it really receives."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from nnkit._gradcheck import GradcheckError, gradcheck
from nnkit.diagnostics.trace import Tracer, finite
from nnkit.losses import Loss
from nnkit.module import Module

__all__ = ["check_gradients", "first_bad_gradient"]


def check_gradients(
    model: Module,
    X: Any,
    y: Any = None,
    loss_fn: Loss | None = None,
    *,
    max_samples: int = 8,
    max_elements: int = 12,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    include_builtin: bool = False,
) -> None:
    """Check the backward of every module of ``model`` where it sits, naming the first faulty one.

    The model runs once on (up to ``max_samples`` of) ``X``, in float64 on a copy, in the
    training mode it is in. Every module, innermost first (children before their container,
    in the order their forwards finish), is then checked with :func:`nnkit.gradcheck` on the
    inputs it received in that run and with the model's real weights: its input and
    parameter gradients against central differences, at up to ``max_elements`` elements of
    each. A mismatch is confirmed on moved inputs (three tries), so a kink (ReLU at 0, a
    max-pool tie) is not reported as a bug, nor a container whose child has such a kink.
    The first module that fails is the culprit: its children passed. nnkit's own classes
    (``Dense``, ``Conv2d``, ``Sequential``, ...; not a subclass of yours) are skipped, since
    its conformance suite tests them; ``include_builtin=True`` checks them too. With ``y``
    and ``loss_fn`` the loss's gradient is checked too (as ``"loss"``).

    Works through Sequential, Residual, Concat, Graph and containers of your own. The model is
    not modified.

    Raises:
        GradcheckError: naming the module's dotted name and class, the input or parameter,
            the element and both values.
    """
    problem = first_bad_gradient(
        model,
        X,
        y,
        loss_fn,
        max_samples=max_samples,
        max_elements=max_elements,
        atol=atol,
        rtol=rtol,
        seed=seed,
        include_builtin=include_builtin,
    )
    if problem is not None:
        raise GradcheckError(problem[2])


JITTER_TRIES = 3
"""A mismatch counts as a bug only if it remains on this many independently moved inputs."""


def _is_builtin(module: Module) -> bool:
    """Whether ``module`` is exactly one of nnkit's own classes (not a user's subclass)."""
    from nnkit.serialization.architecture import _BUILTIN, _BY_CLASS

    return _BY_CLASS.get(type(module)) in _BUILTIN


def _take(x: Any, n: int) -> Any:
    array = np.asarray(x)
    if array.ndim == 0:
        return array
    part = array[:n]
    return part.astype(np.float64) if part.dtype.kind == "f" else part


def _jitter(inputs: tuple[Any, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    out = []
    for x in inputs:
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.size:
            scale = float(np.std(x)) or 1.0  # moves ties apart by far more than eps
            out.append(x + rng.normal(0.0, 1e-2 * scale, x.shape))
        else:
            out.append(x)
    return tuple(out)


def first_bad_gradient(
    model: Module,
    X: Any,
    y: Any = None,
    loss_fn: Loss | None = None,
    *,
    max_samples: int = 8,
    max_elements: int = 12,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    include_builtin: bool = False,
) -> tuple[str, Module, str] | None:
    """``(dotted name, module, message)`` of the first module whose backward is wrong, or None.

    See :func:`check_gradients`.
    """
    if not isinstance(model, Module):
        raise TypeError(f"check_gradients takes an nnkit Module, got {type(model).__name__}")
    replica = copy.deepcopy(model).astype(np.float64)
    inputs = tuple(_take(x, max_samples) for x in (X if isinstance(X, tuple) else (X,)))
    seen: dict[int, tuple[str, Module, tuple[Any, ...]]] = {}

    def record(name: str, module: Module, args: tuple[Any, ...], output: Any) -> None:
        if id(module) not in seen:
            seen[id(module)] = (name, module, args)

    with Tracer(replica, on_forward=record), np.errstate(all="ignore"):
        pred = replica(*inputs)
    rng = np.random.default_rng(seed)
    kinked: set[int] = set()  # modules whose check passed only once their inputs were moved
    for name, module, args in seen.values():  # children finish their forward first
        if not all(finite(a) for a in args):
            continue  # overflowed upstream: the probe of nnkit.diagnose reports where
        if not include_builtin and _is_builtin(module):
            continue  # tested by nnkit's own conformance suite
        inner = {id(m) for m in module.modules() if m is not module}
        with np.errstate(all="ignore"):
            message = _check(module, args, max_elements, atol, rtol, seed)
            if message is None:
                continue
            if any(
                _check(module, _jitter(args, rng), max_elements, atol, rtol, seed) is None
                for _ in range(JITTER_TRIES)
            ):
                kinked.add(id(module))
                continue  # a kink at these exact values (a ReLU at 0, a tie in a max)
        if inner & kinked:
            continue  # a child has a kink that moving this module's input does not undo
        where = "the model" if name == "model" else f"module {name!r}"
        return name, module, f"{where} ({type(module).__name__}): {message}"
    if loss_fn is not None and y is not None and isinstance(pred, np.ndarray):
        try:
            with np.errstate(all="ignore"):
                gradcheck(loss_fn, pred, _take(y, max_samples), atol=atol, rtol=rtol)
        except GradcheckError as exc:
            return "loss", replica, f"the loss ({type(loss_fn).__name__}): {exc}"
        except ValueError:
            pass  # pred at the edge of the loss's domain (a probability of 0 or 1)
    return None


def _check(
    module: Module, args: tuple[Any, ...], max_elements: int, atol: float, rtol: float, seed: int
) -> str | None:
    try:
        gradcheck(
            module,
            *args,
            atol=atol,
            rtol=rtol,
            seed=seed,
            max_elements=max_elements,
            perturb=False,
        )
    except GradcheckError as exc:
        return str(exc)
    return None
