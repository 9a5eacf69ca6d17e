"""``summary(model, input_shape)``: a text table of a model's layers, as Keras's summary.

One row per layer that does the work: every module without children (for nested containers,
with its dotted name such as ``"1.0"``), plus any module that holds parameters of its own
beside its children. Each row gives the module's name and class, the shape of its output and
its number of parameters. Below the table: the total number of parameters (a parameter shared
by several layers counted once) and their size in memory.

The output shapes come from one forward pass over zeros of shape ``(1, *input_shape)`` through
a deep copy of the model in eval mode, so the model itself (weights, caches, gradients,
training flags) is not touched. The batch axis is shown as ``None``.

The package re-exports the function under this module's name, so ``nnkit.summary`` is the
function: call ``nnkit.summary(model, input_shape)`` (or ``from nnkit import summary``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from nnkit.module import Array, Module
from nnkit.parameter import Parameter

__all__ = ["summary"]


def summary(model: Module, input_shape: int | Sequence[int]) -> str:
    """Return the summary table of ``model`` for inputs of shape ``input_shape`` (as text).

    ``input_shape`` is the shape of one sample, without the batch axis: ``(2,)`` (or ``2``)
    for a model taking (N, 2) batches. The text is returned, not printed:
    ``print(summary(model, (2,)))``. Example::

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
        Input shape: (None, 2)

    Every nnkit Parameter is trained by the optimizers built on ``model.parameters()``, so
    the trainable count equals the total.

    Raises:
        TypeError: ``model`` is not a Module, or ``input_shape`` is not a shape.
        ValueError: a dimension < 1, or the forward pass over zeros fails (the message says
            which layer, and the original exception is chained).
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary takes an nnkit Module, got {type(model).__name__}")
    shape = _check_shape(input_shape)

    replica = copy.deepcopy(model)
    rows = [(name, module) for name, module in replica.named_modules() if _is_row(module)]
    outputs: dict[int, tuple[int, ...]] = {}
    for _, module in rows:
        _record_output_shape(module, outputs)
    params = list(replica.parameters())
    dtype = params[0].dtype if params else np.dtype(np.float32)
    try:
        replica.eval()(np.zeros((1, *shape), dtype=dtype))
    except Exception as exc:
        where = "".join(f"; {note}" for note in getattr(exc, "__notes__", []))
        raise ValueError(
            f"summary could not run {type(model).__name__} on an input of shape "
            f"{(1, *shape)} ({type(exc).__name__}: {exc}{where}); input_shape must be the "
            "shape of one sample, without the batch axis"
        ) from exc

    table = [
        (
            f"{name} ({type(module).__name__})" if name else type(module).__name__,
            _show(outputs.get(id(module))),
            f"{sum(p.size for p in _own_parameters(module)):,}",
        )
        for name, module in rows
    ]
    header = ("Layer (type)", "Output shape", "Param #")
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(3)]
    widths[0], widths[1] = max(widths[0], 20), max(widths[1], 16)

    def line(cells: tuple[str, str, str]) -> str:
        return f"{cells[0]:<{widths[0]}}    {cells[1]:<{widths[1]}}    {cells[2]:>{widths[2]}}"

    rule = sum(widths) + 8
    total = model.num_parameters()
    size = sum(p.data.nbytes for p in model.parameters())
    return "\n".join(
        [
            f"Model: {type(model).__name__}",
            "-" * rule,
            line(header),
            "=" * rule,
            *(line(row) for row in table),
            "=" * rule,
            f"Total params: {total:,} ({_bytes(size)})",
            f"Trainable params: {total:,}",
            f"Input shape: {_show((1, *shape))}",
        ]
    )


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


def _own_parameters(module: Module) -> list[Parameter]:
    """The parameters a module holds directly (not through a child)."""
    in_children = {id(p) for child in module.children() for p in child.parameters()}
    return [p for p in module.parameters() if id(p) not in in_children]


def _is_row(module: Module) -> bool:
    return next(module.children(), None) is None or bool(_own_parameters(module))


def _record_output_shape(module: Module, outputs: dict[int, tuple[int, ...]]) -> None:
    """Wrap the (replica's) module's forward so that it records its output's shape."""
    forward = module.forward

    def recording_forward(x: Array) -> Array:
        y = forward(x)
        outputs[id(module)] = np.shape(y)
        return y

    module.forward = recording_forward  # type: ignore[method-assign]


def _show(shape: tuple[int, ...] | None) -> str:
    """``(None, 64)`` for a batch shape; ``-`` for a layer the forward pass did not use."""
    if shape is None:
        return "-"
    if not shape:
        return "()"
    return "(" + ", ".join(["None", *map(str, shape[1:])]) + (",)" if len(shape) == 1 else ")")


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.2f} KB"
    return f"{n / 1024**2:.2f} MB"
