"""The trace behind ``export``: two forward passes of a copy of the model, recording what
every module received and returned, merged into shapes with ``None`` for the axes that
follow the batch size or the sequence length."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from nnkit.module import Array, Module, add_note
from nnkit.onnx._context import ExportError, Opaque, SpecTree, TensorSpec, _Call

__all__ = ["TRACE_BATCHES", "TRACE_LENGTHS", "Input", "leaves", "trace"]

TRACE_BATCHES = (2, 3)
"""The batch sizes of the two traced forward passes. Axes whose size differs between them
follow the batch size, and the graph keeps them free. ``dynamic_batch=False`` traces both
passes at batch 1 instead, and the graph is fixed to it."""

TRACE_LENGTHS = (4, 2)
"""The sizes of the axes given as None in ``input_shape`` (a variable sequence length) in the
two traced passes; chosen so that neither they nor their products and sums with the batch
sizes coincide between the passes."""

Shape = tuple[int | None, ...]


class Input(NamedTuple):
    """One graph input: its name, one sample's shape (None: the sequence length), the axis
    the batch is inserted at (None: no batch axis) and its dtype."""

    name: str
    sample: Shape
    batch_axis: int | None
    dtype: np.dtype[Any]

    def shape(self, batch: int | None, length: int | None) -> Shape:
        dims = tuple(length if d is None else d for d in self.sample)
        if self.batch_axis is None:
            return dims
        return (*dims[: self.batch_axis], batch, *dims[self.batch_axis :])


def _example(shape: Shape, dtype: np.dtype[Any], rng: np.random.Generator) -> Array:
    """An example input: standard normal floats, zeros for indices (always in range) and
    masks (nothing masked)."""
    sizes = tuple(int(d) for d in shape if d is not None)
    if dtype.kind == "f":
        return rng.standard_normal(sizes).astype(dtype)
    return np.zeros(sizes, dtype)


def _spec(value: Any) -> SpecTree | Opaque:
    if isinstance(value, np.ndarray):
        return TensorSpec(value.shape, value.dtype)
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return tuple(_spec_item(v) for v in value)
    return Opaque(value)


def _spec_item(value: Any) -> SpecTree:
    spec = _spec(value)
    return None if isinstance(spec, Opaque) else spec


def _merge(runs: Sequence[Any]) -> SpecTree | Opaque:
    """One spec from the same value in each traced run: None for axes whose size changed."""
    first = runs[0]
    if isinstance(first, TensorSpec):
        if not all(isinstance(r, TensorSpec) and len(r.shape) == len(first.shape) for r in runs):
            return Opaque(None)
        shape = tuple(
            sizes[0] if len(set(sizes)) == 1 else None
            for sizes in zip(*(r.shape for r in runs), strict=True)
        )
        return TensorSpec(shape, first.dtype)
    if isinstance(first, tuple):
        if not all(isinstance(r, tuple) and len(r) == len(first) for r in runs):
            return Opaque(None)
        parts = [_merge([r[i] for r in runs]) for i in range(len(first))]
        return tuple(None if isinstance(p, Opaque) else p for p in parts)
    return first  # type: ignore[no-any-return]


def _outputs(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def trace(
    model: Module, inputs: list[Input], batches: tuple[int, int]
) -> tuple[dict[int, _Call], list[list[tuple[int, ...]]]]:
    """Run ``model`` (a copy in eval mode) on example inputs, recording what every module
    received and returned; returns the merged specs by module id and the shapes of the
    model's (flattened) outputs in each run."""
    current: dict[int, _Call] = {}
    for module in model.modules():

        def recorded(*args: Any, _forward: Any = module.forward, _id: int = id(module),
                     **kwargs: Any) -> Any:
            result = _forward(*args, **kwargs)
            current.setdefault(_id, _Call(
                tuple(_spec(a) for a in args),
                tuple(_spec(o) for o in _outputs(result)),
                {key: _spec(value) for key, value in kwargs.items()},
            ))
            return result

        setattr(module, "forward", recorded)  # noqa: B010 - an instance attribute, on a copy
    rng = np.random.default_rng(0)
    runs: list[dict[int, _Call]] = []
    root_shapes: list[list[tuple[int, ...]]] = []
    for batch, length in zip(batches, TRACE_LENGTHS, strict=True):
        current.clear()
        examples = [_example(i.shape(batch, length), i.dtype, rng) for i in inputs]
        try:
            result = model(*examples)
        except Exception as exc:
            described = ", ".join(f"{e.shape} {e.dtype}" for e in examples)
            add_note(
                exc,
                f"raised by the model's forward while tracing it for ONNX export, on example "
                f"input of shape and dtype {described} (one sample's shape is input_shape, "
                "batch_axis says where the batch goes, and token ids need "
                "input_dtype='int64')",
            )
            raise
        results = leaves(_outputs(result))
        bad = [
            type(o).__name__ for o in results if o is not None and not isinstance(o, np.ndarray)
        ]
        if bad:
            raise ExportError(
                f"the model ({type(model).__name__}) returned {', '.join(bad)} where an ONNX "
                "graph needs arrays: a model's outputs must be arrays or tuples of arrays"
            )
        root_shapes.append([o.shape for o in results if o is not None])
        runs.append(dict(current))
    calls = {}
    for key, first in runs[0].items():
        seen = [run.get(key) for run in runs]
        if any(
            call is None
            or len(call.inputs) != len(first.inputs)
            or len(call.outputs) != len(first.outputs)
            or call.keywords.keys() != first.keywords.keys()
            for call in seen
        ):
            continue  # ran differently in the passes: its converter will say it did not run
        calls[key] = _Call(
            tuple(_merge([c.inputs[i] for c in seen if c]) for i in range(len(first.inputs))),
            tuple(_merge([c.outputs[i] for c in seen if c]) for i in range(len(first.outputs))),
            {k: _merge([c.keywords[k] for c in seen if c]) for k in first.keywords},
        )
    return calls, root_shapes


def leaves(tree: Any) -> list[Any]:
    """The leaves of nested tuples, in order."""
    if isinstance(tree, tuple):
        return [leaf for item in tree for leaf in leaves(item)]
    return [tree]
