"""The conformance harness: one call checks that a layer or loss keeps the nnkit contract.

Run it on every custom layer::

    from nnkit.testing import check_module
    check_module(MyLayer(...), x)                   # a Module and its input batch
    check_module(MyAttention(...), q, k, v)         # several inputs
    check_module(MyLoss(), pred, target)            # a Loss, its prediction and target

It raises :class:`ConformanceError` (or :class:`nnkit.GradcheckError` for a wrong gradient)
saying which check failed. Pass a freshly built module: one check calls backward before any
forward. The module itself is not modified; every check runs on a copy.

The harness learns what kind of module it checks from the module and from keyword traits
(as PyTorch's ModuleInfo does): whether training and evaluation differ (then every check runs
in both modes), whether it draws random numbers (then its generators are reset before each
forward that must repeat the same draws), which axis of each input is the batch axis, whether
an empty batch is meaningful. The defaults infer what they can.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from nnkit._gradcheck import (
    DEFAULT_MAX_ELEMENTS,
    GradcheckError,
    as_inputs,
    differentiable,
    grad_tree,
    gradcheck,
    input_grads,
    leaves,
    outputs_of,
    perturb_state,
)
from nnkit.losses import Loss
from nnkit.module import Array, Module

__all__ = ["ConformanceError", "GradcheckError", "check_module", "gradcheck"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

Mode = Literal["train", "eval"]
ModeFlag = bool | Literal["train", "eval"]
"""True (both modes), False (neither), or the one mode in which a property holds."""


class ConformanceError(AssertionError):
    """A module or loss breaks the nnkit contract."""


def check_module(
    module: Module | Loss,
    *inputs: Any,
    modes: Sequence[Mode] | None = None,
    batch_axis: int | Sequence[int | None] | None = 0,
    batch_independent: ModeFlag = True,
    empty_batch: ModeFlag = True,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    max_elements: int | None = DEFAULT_MAX_ELEMENTS,
    perturb: bool = True,
) -> None:
    """Check the contract of a Module on its ``inputs`` (or of a Loss on ``pred, target``).

    Checks, for a Module, in each of ``modes``:

    - ``repr`` works; ``backward`` before any ``forward`` raises RuntimeError;
    - input and parameter gradients match central differences in float64
      (:func:`nnkit.gradcheck`, at generic parameter values unless ``perturb=False``, on at
      most ``max_elements`` elements of each input and parameter; None checks all);
    - for float32 and float64 every floating output, input gradient, parameter gradient and
      floating buffer has the module's dtype (the input's, for a module without parameters),
      given ``grad_out`` in the output's dtype, as nnkit's losses send it; float64 input into
      a float32 module with parameters gives float32 output;
    - ``forward`` does not mutate its inputs and ``backward`` does not mutate ``grad_out``;
    - batch independence: sample i of a batched forward equals the forward of sample i alone;
    - gradients accumulate: a second backward adds the same gradient again, ``zero_grad``
      clears it; ``accumulate_grad`` gives the same parameter gradients;
    - state: ``state_dict`` holds exactly the parameters and persistent buffers and returns
      copies; loading it into a perturbed copy restores every parameter and buffer and
      reproduces the output exactly; generator states round-trip the same way;
    - in eval mode the output is deterministic: two forwards give identical results;
    - an empty batch gives empty outputs of the right shape, and its backward works.

    Integer and bool inputs (indices, masks) are passed unchanged and not differentiated.

    Traits:
        modes: the modes to check in; None infers: both ``("train", "eval")`` when the module
            has buffers or generators or its train and eval outputs differ, else ``train``.
        batch_axis: the batch axis of the inputs, one int for all, or one per input (None for
            an input without a batch axis, such as an attention mask); 1 for time-major
            sequences. Outputs are sliced along the first input's batch axis.
        batch_independent: whether samples are independent (False for a layer that mixes the
            batch, ``"eval"`` for one that does so only in training, as BatchNorm).
        empty_batch: whether a batch of zero samples is meaningful (``"eval"``: only there).
        The module is stochastic when it keeps a ``np.random.Generator`` (found by
        ``named_generators``); nothing needs declaring.

    For a Loss: ``repr``, backward before forward, the gradient of ``pred`` in float64, a
    Python float result, dtype of the gradient, no mutation of ``pred`` or ``target``,
    repeated ``backward`` calls agreeing, the sum of per-sample losses equalling the
    ``reduction="sum"`` loss of the batch, and ``"mean"`` refusing an empty batch.

    Raises:
        ConformanceError: naming the failed check (and the mode).
        nnkit.GradcheckError: a gradient disagrees with finite differences.
    """
    if isinstance(module, Loss):
        if len(inputs) != 2:
            raise TypeError(
                "check_module of a Loss needs check_module(loss, pred, target), got "
                f"{len(inputs)} arrays"
            )
        _check_loss(module, inputs[0], inputs[1], atol, rtol, max_elements)
        return
    if not isinstance(module, Module):
        raise TypeError(f"check_module takes a Module or a Loss, got {type(module).__name__}")
    if not inputs:
        raise TypeError("check_module of a Module takes its input(s): check_module(layer, x)")
    xs = as_inputs(inputs)
    axes = _batch_axes(batch_axis, xs)
    _check_repr(module)
    fresh = copy.deepcopy(module)
    probe = copy.deepcopy(module).astype(np.float64)  # learns the outputs' shapes
    ones = grad_tree(outputs_of(probe.forward(*xs)), np.ones)
    _check_backward_first(module, lambda: fresh.backward(*ones))
    for mode in _modes(module, xs, modes):
        checker = _LayerChecker(module, xs, axes, mode, seed)
        checker.dtypes()
        if mode == "eval":
            checker.eval_determinism()
        try:
            gradcheck(
                _in_mode(module, mode),
                *xs,
                atol=atol,
                rtol=rtol,
                seed=seed,
                max_elements=max_elements,
                perturb=perturb,
            )
        except GradcheckError as exc:
            raise GradcheckError(
                f"{type(module).__name__} (in {mode} mode): {exc}. If the backward looks "
                "right, check that the forward is a function of its inputs and parameters "
                "alone: state it keeps between calls belongs in nnkit.Buffer (read, not "
                "updated, by a repeated forward in eval mode), random draws in a generator "
                "attribute (which the check resets)"
            ) from exc
        if _holds(batch_independent, mode) and any(a is not None for a in axes):
            checker.batch_independence()
        checker.accumulation()
        checker.state_round_trip()
        if _holds(empty_batch, mode) and any(a is not None for a in axes):
            checker.empty_batch()


def _holds(flag: ModeFlag, mode: Mode) -> bool:
    return flag is True or flag == mode


def _fail(what: Any, message: str) -> ConformanceError:
    return ConformanceError(f"{type(what).__name__}: {message}")


def _check_repr(obj: Any) -> None:
    text = repr(obj)
    if not isinstance(text, str) or not text:
        raise _fail(obj, "repr() must return a non-empty string")


def _check_backward_first(obj: Any, call: Callable[[], Any]) -> None:
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


def _in_mode(module: Module, mode: Mode) -> Module:
    return copy.deepcopy(module).train(mode == "train")


def _batch_axes(
    batch_axis: int | Sequence[int | None] | None, xs: tuple[Any, ...]
) -> list[int | None]:
    if batch_axis is None or isinstance(batch_axis, int):
        axes: list[int | None] = [batch_axis] * len(xs)
    else:
        axes = list(batch_axis)
        if len(axes) != len(xs):
            raise TypeError(f"batch_axis has {len(axes)} entries for {len(xs)} inputs")
    return [
        a if isinstance(x, np.ndarray) and x.ndim > 0 else None
        for a, x in zip(axes, xs, strict=True)
    ]


def _modes(module: Module, xs: tuple[Any, ...], modes: Sequence[Mode] | None) -> list[Mode]:
    if modes is not None:
        chosen = list(modes)
        if not chosen or any(m not in ("train", "eval") for m in chosen):
            raise ValueError(f"modes must be a non-empty list of 'train' and 'eval', got {modes!r}")
        return chosen
    has_state = any(True for _ in module.buffers()) or any(True for _ in module.named_generators())
    if has_state:
        return ["train", "eval"]
    m = copy.deepcopy(module).astype(np.float64)
    outputs = []
    for training in (True, False):
        m.train(training)
        outputs.append(leaves(outputs_of(m.forward(*xs))))
    same = all(
        np.shape(a) == np.shape(b) and np.array_equal(a, b, equal_nan=True)
        for a, b in zip(*outputs, strict=True)
    )
    return ["train"] if same else ["train", "eval"]


def _take(x: Any, axis: int | None, index: slice) -> Any:
    if axis is None:
        return x
    return x[(slice(None),) * axis + (index,)]


class _LayerChecker:
    """The checks of one module in one mode, each on its own copy."""

    def __init__(
        self, module: Module, xs: tuple[Any, ...], axes: list[int | None], mode: Mode, seed: int
    ) -> None:
        self.original = module
        self.xs = xs
        self.axes = axes
        self.mode = mode
        self.seed = seed
        self.out_axis = next((a for a in axes if a is not None), 0)

    def fail(self, message: str) -> ConformanceError:
        return _fail(self.original, f"{message} (in {self.mode} mode)")

    def copy(self, dtype: Any = np.float64) -> Module:
        return _in_mode(self.original, self.mode).astype(dtype)

    def inputs(self, dtype: Any) -> tuple[Any, ...]:
        return tuple(x.astype(dtype) if differentiable(x) else x for x in self.xs)

    def run(self, m: Module, xs: tuple[Any, ...], draws: dict[str, Any]) -> tuple[Any, ...]:
        """Forward with the generators reset to ``draws`` (the same random numbers each time)."""
        if draws:
            m.load_generator_state(draws)
        return outputs_of(m.forward(*xs))

    def grads_for(self, ys: tuple[Any, ...], seed: int, dtype: Any) -> Any:
        rng = _rng(seed)
        return grad_tree(ys, lambda shape: rng.standard_normal(shape).astype(dtype))

    # -- the checks ------------------------------------------------------------------------
    def dtypes(self) -> None:
        for dtype in _FLOAT_DTYPES:
            m = self.copy(dtype)
            xs = self.inputs(dtype)
            before = [x.copy() if isinstance(x, np.ndarray) else x for x in xs]
            ys = self.run(m, xs, m.generator_state())
            for x, x0 in zip(xs, before, strict=True):
                if isinstance(x, np.ndarray) and not np.array_equal(x, x0, equal_nan=True):
                    raise self.fail("forward() mutated its input")
            for y in leaves(ys):
                if isinstance(y, np.ndarray) and y.dtype.kind == "f" and y.dtype != dtype:
                    raise self.fail(
                        f"forward() in {dtype} (input and parameters) returned {y.dtype}"
                    )
            dys = self.grads_for(ys, self.seed, dtype)
            dys_before = [None if g is None else g.copy() for g in leaves(dys)]
            dxs = input_grads(m.backward(*dys), len(xs))
            for g, g0 in zip(leaves(dys), dys_before, strict=True):
                if g is not None and g0 is not None and not np.array_equal(g, g0):
                    raise self.fail("backward() mutated grad_out")
            for x, dx in zip(xs, dxs, strict=True):
                if differentiable(x) and getattr(dx, "dtype", None) != dtype:
                    raise self.fail(
                        f"backward() in {dtype} (input and parameters) returned "
                        f"{getattr(dx, 'dtype', type(dx).__name__)}; convert grad_out with "
                        "self.grad_like(grad_out, shape, dtype) and compute in that dtype"
                    )
            for name, param in m.named_parameters():
                if param.data.dtype != dtype or param.grad.dtype != dtype:
                    raise self.fail(f"parameter {name!r} is not {dtype} after astype({dtype})")
            for name, buffer in m.named_buffers():
                was = dict(self.original.named_buffers())[name].dtype
                if was.kind == "f" and buffer.dtype != dtype:
                    raise self.fail(f"floating buffer {name!r} is not {dtype} after astype")
                if was.kind != "f" and buffer.dtype != was:
                    raise self.fail(f"buffer {name!r} of dtype {was} changed dtype in astype")

        has_params = any(True for _ in self.original.parameters())
        if has_params and any(differentiable(x) for x in self.xs):
            m = self.copy(np.float32)
            ys = self.run(m, self.inputs(np.float64), m.generator_state())
            for y in leaves(ys):
                if isinstance(y, np.ndarray) and y.dtype.kind == "f" and y.dtype != np.float32:
                    raise self.fail(
                        f"float64 input into a float32 module gave {y.dtype} output; compute "
                        "in the parameters' dtype (nnkit.module.as_float_array(x, param.dtype))"
                    )

    def batch_independence(self) -> None:
        m = self.copy()
        draws = m.generator_state()
        if draws:
            return  # a stochastic layer draws per batch: a sample alone gets other draws
        ys = self.run(m, self.xs, draws)
        n = next((x.shape[a] for x, a in zip(self.xs, self.axes, strict=True) if a is not None), 0)
        for i in range(min(n, 3)):
            part = tuple(
                _take(x, a, slice(i, i + 1)) for x, a in zip(self.xs, self.axes, strict=True)
            )
            rows = self.run(m, part, draws)
            for y, row in zip(leaves(ys), leaves(rows), strict=True):
                expected = _take(y, self.out_axis, slice(i, i + 1))
                if np.shape(row) != np.shape(expected) or not np.allclose(
                    row, expected, 1e-7, 1e-10
                ):
                    raise self.fail(
                        f"sample {i} of a batched forward differs from the forward of sample {i} "
                        "alone (pass batch_independent=False, or 'eval', for layers that mix "
                        "samples)"
                    )

    def accumulation(self) -> None:
        m = self.copy()
        draws = m.generator_state()
        m.zero_grad()
        ys = self.run(m, self.xs, draws)
        dys = self.grads_for(ys, self.seed + 1, np.float64)
        dx1 = input_grads(m.backward(*dys), len(self.xs))  # dys: one tree per output
        once = _grads(m)
        dx2 = input_grads(m.backward(*dys), len(self.xs))
        for x, a, b in zip(self.xs, dx1, dx2, strict=True):
            if differentiable(x) and not np.allclose(a, b, rtol=1e-12, atol=0):
                raise self.fail("a second backward() after one forward() gave a different dx")
        for name, grad in _grads(m).items():
            if not np.allclose(grad, 2 * once[name], rtol=1e-12, atol=1e-300):
                raise self.fail(
                    f"gradient of {name!r} did not accumulate: two backward() calls must give "
                    "twice the gradient of one (add into param.grad, do not assign)"
                )
        m.zero_grad()
        if any(np.any(g != 0) for g in _grads(m).values()):
            raise self.fail("zero_grad() left a non-zero gradient")
        self.run(m, self.xs, draws)
        m.accumulate_grad(*dys)
        for name, grad in _grads(m).items():
            if not np.allclose(grad, once[name], rtol=1e-12, atol=1e-300):
                raise self.fail(f"accumulate_grad() and backward() disagree on {name!r}")

    def state_round_trip(self) -> None:
        m = self.copy()
        m.train()
        for _ in range(2):  # training forwards move the running statistics, if any
            m.forward(*self.xs)
        m.train(self.mode == "train")
        draws = m.generator_state()
        ys = self.run(m, self.xs, draws)
        state = m.state_dict()
        expected = {name for name, _ in m.named_parameters()} | {
            name for name, buffer in m.named_buffers() if buffer.persistent
        }
        if set(state) != expected:
            raise self.fail(
                f"state_dict keys {sorted(state)} differ from the parameters and persistent "
                f"buffers {sorted(expected)}"
            )
        members = dict(m.named_parameters()) | dict(m.named_buffers())
        shared = [k for k, v in state.items() if np.shares_memory(v, members[k].data)]
        if shared:
            raise self.fail(f"state_dict() returned views of {shared}, not copies")
        other = self.copy()  # built as given: state kept outside parameters and buffers is lost
        perturb_state(other, _rng(self.seed + 3))
        other.load_state_dict(state)
        for name, value in other.state_dict().items():
            if not np.array_equal(value, state[name]):
                raise self.fail(f"load_state_dict did not restore {name!r}")
        if draws:
            for generator in dict(other.named_generators()).values():
                generator.random(3)  # advance, so that the load has something to undo
            other.load_generator_state(draws)
            if not _same_tree(other.generator_state(), draws):
                raise self.fail("load_generator_state did not restore the generator states")
        reference = self.run(m, self.xs, draws)
        again = self.run(other, self.xs, draws)
        for a, b in zip(leaves(reference), leaves(again), strict=True):
            if not np.array_equal(a, b):
                raise self.fail(
                    "a state_dict round trip did not reproduce the output: the module keeps "
                    "state that state_dict does not hold (keep running statistics in "
                    "nnkit.Buffer, random generators as attributes)"
                )
        if self.mode == "eval":
            for a, b in zip(leaves(ys), leaves(reference), strict=True):
                if not np.array_equal(a, b):
                    raise self.fail("the output changed although the state was the same")

    def eval_determinism(self) -> None:
        m = self.copy()
        first = leaves(outputs_of(m.forward(*self.xs)))
        second = leaves(outputs_of(m.forward(*self.xs)))
        for a, b in zip(first, second, strict=True):
            if not np.array_equal(a, b, equal_nan=True):
                raise self.fail("two forwards of the same input gave different outputs")

    def empty_batch(self) -> None:
        m = self.copy()
        xs = tuple(_take(x, a, slice(0, 0)) for x, a in zip(self.xs, self.axes, strict=True))
        ys = self.run(m, xs, m.generator_state())
        for y in leaves(ys):
            if isinstance(y, np.ndarray) and y.ndim > self.out_axis and y.shape[self.out_axis] != 0:
                raise self.fail(
                    f"an empty batch gave output shape {y.shape}, expected 0 along axis "
                    f"{self.out_axis}"
                )
        dxs = input_grads(m.backward(*grad_tree(ys, np.zeros)), len(xs))
        for x, dx in zip(xs, dxs, strict=True):
            if differentiable(x) and np.shape(dx) != x.shape:
                raise self.fail(f"an empty batch gave input-gradient shape {np.shape(dx)}")


def _same_tree(a: Any, b: Any) -> bool:
    """Exact equality of nested dicts, lists and arrays (generator states hold arrays)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_tree(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def _grads(module: Module) -> dict[str, Array]:
    return {name: p.grad.copy() for name, p in module.named_parameters()}


def _check_loss(
    loss: Loss, pred: Any, target: Any, atol: float, rtol: float, max_elements: int | None
) -> None:
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
    gradcheck(loss, pred, target, atol=atol, rtol=rtol, max_elements=max_elements)

    config = {**loss.get_config(), "reduction": "sum"}
    summed = type(loss)(**config)
    total = summed(pred.astype(np.float64), target)
    parts = sum(
        summed(pred[i : i + 1].astype(np.float64), target[i : i + 1]) for i in range(len(pred))
    )
    if not np.isclose(total, parts, rtol=1e-10, atol=1e-12):
        raise _fail(
            loss,
            f"the summed loss of the batch ({total}) differs from the sum over its "
            f"samples ({parts}); check reduction and get_config()",
        )

    mean = type(loss)(**{**loss.get_config(), "reduction": "mean"})
    try:
        mean(pred[:0], target[:0])
    except ValueError:
        pass
    else:
        raise _fail(loss, "reduction='mean' over an empty batch must raise ValueError")
