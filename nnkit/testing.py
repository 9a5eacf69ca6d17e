"""The conformance harness: one call checks that a layer or loss keeps the nnkit contract.

Run it on every custom layer::

    from nnkit.testing import check_module
    check_module(MyLayer(...), x)                   # a Module and an input batch
    check_module(MyLoss(), pred, target)            # a Loss, its prediction and target

It raises :class:`ConformanceError` (or :class:`nnkit.GradcheckError` for a wrong gradient)
saying which check failed. Pass a freshly built module: one check calls backward before any
forward. The module itself is not modified; every check runs on a copy.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from nnkit.gradcheck import gradcheck
from nnkit.losses import Loss
from nnkit.module import Array, Module

__all__ = ["ConformanceError", "check_module"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ConformanceError(AssertionError):
    """A module or loss breaks the nnkit contract."""


def check_module(
    module: Module | Loss,
    x: Any,
    target: Any = None,
    *,
    batch_independent: bool = True,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> None:
    """Check the contract of a Module on input ``x`` (or of a Loss on ``x``, ``target``).

    Checks, for a Module:

    - ``repr`` works; ``backward`` before any ``forward`` raises RuntimeError;
    - input and parameter gradients match central differences in float64 (:func:`gradcheck`);
    - for float32 and float64 the output, the input gradient and every parameter gradient
      have the parameters' dtype (the input's, for a module without parameters), also when
      ``grad_out`` comes in the other dtype, and float64 input into a float32 module with
      parameters gives float32 output;
    - ``forward`` does not mutate ``x`` and ``backward`` does not mutate ``grad_out``;
    - batch independence (``batch_independent=True``): row i of a batched forward equals the
      forward of row i alone;
    - gradients accumulate: a second backward adds the same gradient again, and
      ``zero_grad`` clears it; ``accumulate_grad`` gives the same parameter gradients;
    - a ``state_dict`` round trip into a perturbed copy reproduces the output exactly, and the
      returned arrays are copies;
    - an empty batch (N = 0) gives an empty output of the right shape, and its backward works.

    For a Loss: ``repr``, backward before forward, the gradient of ``pred`` in float64, a
    Python float result, dtype of the gradient, no mutation of ``pred`` or ``target``,
    repeated ``backward`` calls agreeing, the sum of per-sample losses equalling the
    ``reduction="sum"`` loss of the batch, and ``"mean"`` refusing an empty batch.

    Raises:
        ConformanceError: naming the failed check.
        nnkit.GradcheckError: a gradient disagrees with finite differences.
    """
    if isinstance(module, Loss):
        if target is None:
            raise TypeError("check_module of a Loss needs check_module(loss, pred, target)")
        _check_loss(module, x, target, atol, rtol)
    elif isinstance(module, Module):
        if target is not None:
            raise TypeError("check_module of a Module takes (module, x); target is for losses")
        _check_layer(module, x, batch_independent, atol, rtol, seed)
    else:
        raise TypeError(f"check_module takes a Module or a Loss, got {type(module).__name__}")


def _fail(what: Any, message: str) -> ConformanceError:
    return ConformanceError(f"{type(what).__name__}: {message}")


def _check_repr(obj: Any) -> None:
    text = repr(obj)
    if not isinstance(text, str) or not text:
        raise _fail(obj, "repr() must return a non-empty string")


def _check_backward_first(obj: Any, call: Any) -> None:
    try:
        call()
    except RuntimeError:
        return
    except Exception as exc:
        raise _fail(
            obj,
            "backward() before forward() must raise RuntimeError, "
            f"raised {type(exc).__name__}: {exc} (pass a freshly built module)",
        ) from exc
    raise _fail(obj, "backward() before forward() must raise RuntimeError (pass a fresh module)")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_layer(
    module: Module, x: Any, batch_independent: bool, atol: float, rtol: float, seed: int
) -> None:
    x = np.asarray(x)
    _check_repr(module)
    fresh = copy.deepcopy(module)
    _check_backward_first(module, lambda: fresh.backward(np.ones(x.shape)))

    for dtype in _FLOAT_DTYPES:
        m = copy.deepcopy(module).astype(dtype)
        xd = x.astype(dtype) if x.dtype.kind == "f" else x
        x_before = xd.copy()
        y = m.forward(xd)
        if not np.array_equal(xd, x_before, equal_nan=True):
            raise _fail(module, "forward() mutated its input")
        if y.dtype != dtype:
            raise _fail(module, f"forward() in {dtype} (input and parameters) returned {y.dtype}")
        dy = _rng(seed).standard_normal(y.shape).astype(dtype)
        dy_before = dy.copy()
        dx = m.backward(dy)
        if not np.array_equal(dy, dy_before):
            raise _fail(module, "backward() mutated grad_out")
        if x.dtype.kind == "f" and dx.dtype != dtype:
            raise _fail(module, f"backward() in {dtype} (input and parameters) returned {dx.dtype}")
        for name, param in m.named_parameters():
            if param.data.dtype != dtype or param.grad.dtype != dtype:
                raise _fail(module, f"parameter {name!r} is not {dtype} after astype({dtype})")
        other = _FLOAT_DTYPES[1] if dtype == _FLOAT_DTYPES[0] else _FLOAT_DTYPES[0]
        dx = m.backward(dy.astype(other))
        if x.dtype.kind == "f" and dx.dtype != dtype:
            raise _fail(
                module, f"backward() of a {dtype} forward given a {other} grad_out returned "
                f"{dx.dtype}; convert grad_out to the forward's dtype (self._grad_like)"
            )

    has_params = any(True for _ in module.parameters())
    if has_params and x.dtype.kind == "f":
        m = copy.deepcopy(module).astype(np.float32)
        y = m.forward(x.astype(np.float64))
        if y.dtype != np.float32:
            raise _fail(
                module, f"float64 input into a float32 module gave {y.dtype} output; compute "
                "in the parameters' dtype (nnkit.module.as_float_array(x, param.dtype))"
            )

    gradcheck(module, x, atol=atol, rtol=rtol, seed=seed)
    m = copy.deepcopy(module).astype(np.float64)
    x64 = x.astype(np.float64) if x.dtype.kind == "f" else x
    y = m.forward(x64)
    if batch_independent:
        for i in range(min(len(x64), 3)):
            row = m.forward(x64[i : i + 1])
            if row.shape != y[i : i + 1].shape or not np.allclose(row, y[i : i + 1], 1e-7, 1e-10):
                raise _fail(
                    module,
                    f"row {i} of a batched forward differs from the forward of row {i} alone "
                    "(pass batch_independent=False for layers that mix samples)",
                )
    _check_accumulation(module, m, x64, seed)
    _check_state_round_trip(module, m, x64)

    empty = m.forward(x64[:0])
    if empty.shape != (0, *y.shape[1:]):
        raise _fail(module, f"an empty batch gave output shape {empty.shape}, expected (0, ...)")
    dx_empty = m.backward(np.zeros(empty.shape))
    if dx_empty.shape != x64[:0].shape:
        raise _fail(module, f"an empty batch gave input-gradient shape {dx_empty.shape}")


def _grads(module: Module) -> dict[str, Array]:
    return {name: p.grad.copy() for name, p in module.named_parameters()}


def _check_accumulation(original: Module, m: Module, x: Array, seed: int) -> None:
    m.zero_grad()
    y = m.forward(x)
    dy = _rng(seed + 1).standard_normal(y.shape)
    dx1 = m.backward(dy)
    once = _grads(m)
    dx2 = m.backward(dy)
    if not np.allclose(dx1, dx2, rtol=1e-12, atol=0):
        raise _fail(original, "a second backward() after one forward() gave a different dx")
    for name, grad in _grads(m).items():
        if not np.allclose(grad, 2 * once[name], rtol=1e-12, atol=1e-300):
            raise _fail(
                original, f"gradient of {name!r} did not accumulate: two backward() calls "
                "must give twice the gradient of one (add into param.grad, do not assign)"
            )
    m.zero_grad()
    if any(np.any(g != 0) for g in _grads(m).values()):
        raise _fail(original, "zero_grad() left a non-zero gradient")
    m.forward(x)
    m.accumulate_grad(dy)
    for name, grad in _grads(m).items():
        if not np.allclose(grad, once[name], rtol=1e-12, atol=1e-300):
            raise _fail(original, f"accumulate_grad() and backward() disagree on {name!r}")
    m.zero_grad()


def _check_state_round_trip(original: Module, m: Module, x: Array) -> None:
    state = m.state_dict()
    names = [name for name, _ in m.named_parameters()]
    if list(state) != names:
        raise _fail(original, f"state_dict keys {list(state)} differ from parameters {names}")
    y = m.forward(x)
    for value in m.state_dict().values():
        value += 1.0  # must not reach the module: state_dict returns copies
    if not np.array_equal(m.forward(x), y):
        raise _fail(original, "state_dict() returned views of the parameters, not copies")
    other = copy.deepcopy(m)
    for param in other.parameters():
        param.data += 0.5
    other.load_state_dict(state)
    if not np.array_equal(other.forward(x), y):
        raise _fail(original, "a state_dict round trip did not reproduce the output")


def _check_loss(loss: Loss, pred: Any, target: Any, atol: float, rtol: float) -> None:
    pred = np.asarray(pred)
    target = np.asarray(target)
    _check_repr(loss)
    _check_backward_first(loss, copy.deepcopy(loss).backward)

    for dtype in _FLOAT_DTYPES:
        fn = copy.deepcopy(loss)
        p = pred.astype(dtype)
        t = target.astype(dtype) if target.dtype.kind == "f" else target
        p_before, t_before = p.copy(), t.copy()
        value = fn(p, t)
        if type(value) is not float:
            raise _fail(loss, f"a loss must return a Python float, got {type(value).__name__}")
        if not (np.array_equal(p, p_before) and np.array_equal(t, t_before)):
            raise _fail(loss, "forward mutated pred or target")
        grad = fn.backward()
        if grad.dtype != dtype or grad.shape != p.shape:
            raise _fail(
                loss, f"backward() for {dtype} pred {p.shape} returned {grad.dtype} {grad.shape}"
            )
        if not np.array_equal(fn.backward(), grad):
            raise _fail(loss, "two backward() calls after one forward disagree")
    gradcheck(loss, pred, target, atol=atol, rtol=rtol)

    config = {**loss.get_config(), "reduction": "sum"}
    summed = type(loss)(**config)
    total = summed(pred.astype(np.float64), target)
    parts = sum(
        summed(pred[i : i + 1].astype(np.float64), target[i : i + 1]) for i in range(len(pred))
    )
    if not np.isclose(total, parts, rtol=1e-10, atol=1e-12):
        raise _fail(
            loss, f"the summed loss of the batch ({total}) differs from the sum over its "
            f"samples ({parts}); check reduction and get_config()"
        )

    mean = type(loss)(**{**loss.get_config(), "reduction": "mean"})
    try:
        mean(pred[:0], target[:0])
    except ValueError:
        pass
    else:
        raise _fail(loss, "reduction='mean' over an empty batch must raise ValueError")
