"""``summary(model, input_shape)``: a text table of a model's layers, as Keras's summary.

One row per layer that does the work: every module without children (for nested containers,
with its dotted name such as ``"1.0"``), plus any module that holds parameters of its own
beside its children. Each row gives the module's name and class, the shape of its output and
its number of parameters (and floating buffers). Below the table: the trainable (parameters)
and non-trainable (buffers such as running statistics) counts, each shared object counted
once, and their size in memory.

The output shapes come from one forward pass over zeros of shape ``(1, *input_shape)`` through
a deep copy of the model in eval mode, so the model itself (weights, caches, gradients,
training flags) is not touched. The batch axis is shown as ``None``.

The function is public as ``nnkit.summary`` (this module is private, so no module shadows
the function's name).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit.module import Module
from nnkit.parameter import Buffer, Parameter

__all__ = ["summary"]


def summary(
    model: Module,
    input_shape: int | Sequence[int] | Sequence[Sequence[int]],
    *,
    dtype: DTypeLike | Sequence[DTypeLike] | None = None,
    batch_axis: int = 0,
) -> str:
    """Return the summary table of ``model`` for inputs of shape ``input_shape`` (as text).

    ``input_shape`` is the shape of one sample, without the batch axis: ``(2,)`` (or ``2``)
    for a model taking (N, 2) batches, ``(1, 28, 28)`` for (N, 1, 28, 28) images, or a list of
    shapes for a model with several inputs (``[(10,), (3,)]``). The text is returned, not
    printed: ``print(summary(model, (2,)))``. Example::

        Model: Sequential
        ---------------------------------------------------
        Layer (type)            Output shape        Param #
        ===================================================
        0 (Dense)               (None, 64)              192
        1 (ReLU)                (None, 64)                0
        2 (Dense)               (None, 3)               195
        ===================================================
        Total params: 387 (1.51 KB)
        Trainable params: 387
        Non-trainable params: 0
        Input shape: (None, 2)

    Param # counts a row's parameters and its floating buffers (running statistics). The
    trainable count is the parameters (every nnkit Parameter is trained by the optimizers
    built on ``model.parameters()``); the non-trainable count is the elements of floating
    persistent buffers; the total is their sum, each shared object counted once. A module
    with several outputs shows their shapes as a list.

    Args:
        model: the model.
        input_shape: one sample's shape, or a list of them (one per input).
        dtype: the dtype of the zeros fed in, one for all inputs or one per input; None
            gives floating inputs in the model's dtype. Pass an integer dtype for a model
            whose input is indices (``Embedding``): the zeros are then index 0.
        batch_axis: where the batch axis goes in each input (1 for time-major sequences);
            it is shown as ``None``.

    Raises:
        TypeError: ``model`` is not a Module, or ``input_shape`` is not a shape.
        ValueError: a dimension < 1, or the forward pass over zeros fails (the message says
            which layer, and the original exception is chained).
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary takes an nnkit Module, got {type(model).__name__}")
    shapes = _check_shapes(input_shape)
    if type(batch_axis) is not int or not all(0 <= batch_axis <= len(s) for s in shapes):
        raise ValueError(f"batch_axis {batch_axis!r} does not fit the input shapes {shapes}")
    replica = copy.deepcopy(model)
    params = list(replica.parameters())
    default = params[0].dtype if params else np.dtype(np.float32)
    dtypes = _check_dtypes(dtype, len(shapes), default)
    rows = [(name, module) for name, module in replica.named_modules() if _is_row(module)]
    runs: list[dict[int, Any]] = []  # each module's output shape, for a batch of 1 and of 2
    for _, module in rows:
        _record_output_shape(module, runs)
    batched = [(*s[:batch_axis], 1, *s[batch_axis:]) for s in shapes]
    replica.eval()
    for size in (1, 2):  # the axes whose size follows the batch's are shown as None
        runs.append({})
        sized = [(*s[:batch_axis], size, *s[batch_axis:]) for s in shapes]
        inputs = [np.zeros(s, dtype=d) for s, d in zip(sized, dtypes, strict=True)]
        try:
            replica(*inputs)
        except Exception as exc:
            where = "".join(f"; {note}" for note in getattr(exc, "__notes__", []))
            hint = (
                ""
                if any(d.kind in "iub" for d in dtypes)
                else "; for a model whose input is indices (an Embedding), pass dtype=np.int64"
            )
            raise ValueError(
                f"summary could not run {type(model).__name__} on inputs of shape "
                f"{', '.join(map(str, sized))} ({type(exc).__name__}: {exc}{where}); "
                f"input_shape must be the shape of one sample, without the batch axis{hint}"
            ) from exc
    one, two = runs

    def show(shape: Any, other: Any) -> str:
        if isinstance(shape, list):
            return "[" + ", ".join(show(a, b) for a, b in zip(shape, other, strict=True)) + "]"
        return _show(shape, other)

    table = [
        (
            f"{name} ({type(module).__name__})" if name else type(module).__name__,
            show(one[id(module)], two.get(id(module), one[id(module)]))
            if id(module) in one
            else "-",
            f"{sum(m.size for m in _own_state(module)):,}",
        )
        for name, module in rows
    ]
    header = ("Layer (type)", "Output shape", "Param #")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(3)]
    widths[0], widths[1] = max(widths[0], 20), max(widths[1], 16)

    def line(cells: tuple[str, str, str]) -> str:
        return f"{cells[0]:<{widths[0]}}    {cells[1]:<{widths[1]}}    {cells[2]:>{widths[2]}}"

    rule = sum(widths) + 8
    trainable = model.num_parameters()
    frozen = _floating_buffers(model)
    non_trainable = sum(b.size for b in frozen)
    size = sum(p.data.nbytes for p in model.parameters()) + sum(b.data.nbytes for b in frozen)
    return "\n".join(
        [
            f"Model: {type(model).__name__}",
            "-" * rule,
            line(header),
            "=" * rule,
            *(line(row) for row in table),
            "=" * rule,
            f"Total params: {trainable + non_trainable:,} ({_bytes(size)})",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {non_trainable:,}",
            f"Input shape: {_show_inputs(batched, batch_axis)}",
        ]
    )


def _check_shapes(input_shape: Any) -> list[tuple[int, ...]]:
    """One shape or a list of shapes, as a list of tuples."""
    if (
        isinstance(input_shape, Sequence)
        and input_shape
        and all(isinstance(s, Sequence) and not isinstance(s, (str, bytes)) for s in input_shape)
    ):
        return [_check_shape(s) for s in input_shape]
    return [_check_shape(input_shape)]


def _check_dtypes(dtype: Any, count: int, default: np.dtype[Any]) -> list[np.dtype[Any]]:
    if dtype is None:
        return [default] * count
    if isinstance(dtype, (list, tuple)):
        if len(dtype) != count:
            raise ValueError(f"summary got {len(dtype)} dtypes for {count} inputs")
        return [np.dtype(d) for d in dtype]
    return [np.dtype(dtype)] * count


def _floating_buffers(module: Module) -> list[Buffer]:
    return [b for b in module.buffers() if b.persistent and b.dtype.kind == "f"]


def _check_shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (input_shape,) if isinstance(input_shape, (int, np.integer)) else input_shape
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise TypeError(
            f"input_shape must be an int or a tuple of ints (one sample's shape), got "
            f"{input_shape!r}"
        )
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"input_shape must hold ints, got {input_shape!r}")
        if d < 1:
            raise ValueError(
                f"input_shape must hold sizes >= 1 without the batch axis, got {input_shape!r}"
            )
    return tuple(int(d) for d in dims)


def _own_state(module: Module) -> list[Parameter | Buffer]:
    """The parameters and floating buffers a module holds directly (not through a child)."""
    in_children = {
        id(m) for child in module.children() for m in [*child.parameters(), *child.buffers()]
    }
    own: list[Parameter | Buffer] = [*module.parameters(), *_floating_buffers(module)]
    return [m for m in own if id(m) not in in_children]


def _is_row(module: Module) -> bool:
    return next(module.children(), None) is None or bool(_own_state(module))


def _record_output_shape(module: Module, runs: list[dict[int, Any]]) -> None:
    """Wrap the (replica's) module's forward so that it records its output's shape (a list
    of shapes for a tuple of outputs) in the current run, the last of ``runs``."""
    forward = module.forward

    def recording_forward(*inputs: Any, **options: Any) -> Any:
        y = forward(*inputs, **options)
        runs[-1][id(module)] = _shape_of(y)
        return y

    module.forward = recording_forward  # type: ignore[method-assign]


def _shape_of(y: Any) -> Any:
    if isinstance(y, tuple):
        return [_shape_of(v) for v in y]
    return tuple(int(d) for d in np.shape(y))


def _show(shape: tuple[int, ...], other: Any) -> str:
    """``(None, 64)``: an axis whose size differs between the runs with a batch of 1 and of 2
    (the batch axis, wherever a layer puts it: an LSTM's h_n has it second) shown as None."""
    if not shape:
        return "()"
    same_rank = isinstance(other, tuple) and len(other) == len(shape)
    dims = ["None" if same_rank and other[i] != d else str(d) for i, d in enumerate(shape)]
    return "(" + ", ".join(dims) + (",)" if len(shape) == 1 else ")")


def _show_inputs(shapes: list[tuple[int, ...]], batch_axis: int) -> str:
    shown = [
        "("
        + ", ".join("None" if i == batch_axis else str(d) for i, d in enumerate(s))
        + (",)" if len(s) == 1 else ")")
        for s in shapes
    ]
    return shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]"


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.2f} KB"
    return f"{n / 1024**2:.2f} MB"
