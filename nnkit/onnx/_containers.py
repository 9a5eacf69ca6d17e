"""The ONNX converters of the containers: they convert their children and wire the values.

A container adds no nodes of its own except where it computes something: ``Residual`` its
Add, ``Concat`` its Concat. A ``Graph`` is converted node by node in a topological order of
its public configuration (``get_config``), with ``"node:i"`` sources picking one output.
"""

from __future__ import annotations

from typing import Any

from nnkit.containers import Concat, Parallel, Residual, Sequential
from nnkit.graph import Graph
from nnkit.module import Module
from nnkit.onnx._context import ExportContext, ExportError, Value, ValueTree, register_converter

__all__: list[str] = []

Inputs = tuple[ValueTree, ...]


@register_converter(Sequential)
def _sequential(ctx: ExportContext, module: Sequential, inputs: Inputs) -> Inputs:
    """Each child on the previous one's outputs (a tuple passed on as separate inputs)."""
    values = inputs
    for layer in module:
        values = ctx.convert(layer, values)
    return values


def _array(value: ValueTree, what: str) -> Value:
    if not isinstance(value, Value):
        raise ExportError(f"{what} is not one array")
    return value


def _one(ctx: ExportContext, child: Module, x: ValueTree) -> Value:
    outputs = ctx.convert(child, [x])
    if len(outputs) != 1:
        raise ExportError(f"{ctx.describe(child)} returns {len(outputs)} outputs, not one")
    return _array(outputs[0], f"the output of {ctx.describe(child)}")


@register_converter(Residual)
def _residual(ctx: ExportContext, module: Residual, inputs: Inputs) -> str:
    """``body(x) + shortcut(x)``, the shortcut the identity by default."""
    x = _array(inputs[0], "its input")
    y = _one(ctx, module.body, x)
    skip = x if module.shortcut is None else _one(ctx, module.shortcut, x)
    dtype = ctx.output_spec(module).dtype
    return ctx.op("Add", ctx.cast(y, dtype), ctx.cast(skip, dtype))


@register_converter(Concat)
def _concat(ctx: ExportContext, module: Concat, inputs: Inputs) -> str:
    """Every branch on the same input, concatenated along ``axis``."""
    (x,) = inputs
    dtype = ctx.output_spec(module).dtype
    outputs = [ctx.cast(_one(ctx, branch, x), dtype) for branch in module.branches]
    return ctx.op("Concat", *outputs, axis=module.axis)


@register_converter(Parallel)
def _parallel(ctx: ExportContext, module: Parallel, inputs: Inputs) -> Inputs:
    """Branch i on input i."""
    if len(inputs) != len(module.branches):
        raise ExportError(f"{len(module.branches)} branches but {len(inputs)} inputs")
    return tuple(_one(ctx, b, x) for b, x in zip(module.branches, inputs, strict=True))


def _ref(source: str) -> tuple[str, int | None]:
    name, colon, index = source.partition(":")
    return (name, int(index)) if colon else (name, None)


@register_converter(Graph)
def _graph(ctx: ExportContext, module: Graph, inputs: Inputs) -> Inputs:
    """The nodes in a topological order, each on the values of its sources."""
    config: dict[str, Any] = module.get_config()
    values: dict[str, Inputs] = {
        name: (value,) for name, value in zip(module.inputs, inputs, strict=True)
    }

    def get(source: str) -> ValueTree:
        name, index = _ref(source)
        outputs = values[name]
        if index is None:
            if len(outputs) != 1:
                raise ExportError(
                    f"source {source!r} is a tuple of {len(outputs)}; name one with "
                    f"'{name}:i'"
                )
            return outputs[0]
        return outputs[index]

    pending = {
        name: (spec[0], [spec[1]] if isinstance(spec[1], str) else list(spec[1]))
        for name, spec in config["nodes"].items()
    }
    while pending:
        ready = [
            name for name, (_, sources) in pending.items()
            if all(_ref(s)[0] in values for s in sources)
        ]
        if not ready:  # the Graph refuses cycles when it is built
            raise ExportError(f"nodes {sorted(pending)} wait on each other")
        for name in ready:
            child, sources = pending.pop(name)
            values[name] = ctx.convert(child, [get(s) for s in sources])
    return tuple(get(output) for output in module.outputs)
