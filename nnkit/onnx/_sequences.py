"""The ONNX converters of the recurrent layers (ONNX's RNN, LSTM and GRU ops) and of the small
layers around sequences (positions, last step, final state), and the helpers that the
attention converters (``_attention.py``) share.

Weight layouts: ONNX's recurrent ops take one (directions, gates * hidden, input) tensor per
layer with the gates in their own order (LSTM: i, o, f, c; GRU: z, r, h), where PyTorch and
nnkit keep (gates * hidden, input) per direction in the order i, f, g, o and r, z, n; the
converter restacks the blocks. nnkit's GRU is PyTorch's, which applies the reset gate after
the hidden product: ONNX's ``linear_before_reset=1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnkit.layers.recurrent import GRU, LSTM, RNN
from nnkit.layers.sequence import (
    FinalState,
    LastTimeStep,
    PositionalEmbedding,
    SequenceOutput,
    SinusoidalPositionalEncoding,
)
from nnkit.module import Module
from nnkit.onnx._context import (
    ExportContext,
    ExportError,
    Opaque,
    TensorSpec,
    Value,
    ValueTree,
    register_converter,
)

__all__ = ["Inputs", "array", "bind", "time_size"]

Inputs = tuple[ValueTree, ...]

_GATE_ORDER = {RNN: [0], LSTM: [0, 3, 1, 2], GRU: [1, 0, 2]}
"""For each layer, the PyTorch gate blocks in ONNX's order (LSTM i,f,g,o -> i,o,f,c; GRU
r,z,n -> z,r,h)."""


def array(value: ValueTree, what: str) -> Value:
    """``value`` if it is one array's value, else ExportError naming ``what`` it is."""
    if not isinstance(value, Value):
        raise ExportError(f"{what} must be one array, got {value!r}")
    return value


def bind(
    ctx: ExportContext, module: Module, inputs: Inputs, required: int, names: dict[str, Any]
) -> dict[str, Any]:
    """The forward's options by name (``names``: name -> default): values among the converted
    ``inputs`` after the ``required`` ones, else what the trace saw the forward receive
    (flags, None), positionally or by keyword. An array option must come as a converted
    input."""
    traced = ctx.input_specs(module)
    keywords = ctx.keyword_specs(module)
    settings = dict(names)
    for position, name in enumerate(names, start=required):
        if name in keywords:
            spec = keywords[name]
        elif position < len(traced):
            spec = traced[position]
        else:
            continue
        if position < len(inputs) and inputs[position] is not None:
            settings[name] = inputs[position]
        elif isinstance(spec, Opaque):
            settings[name] = spec.value
        elif spec is None:
            settings[name] = None
        else:
            raise ExportError(
                f"its forward received {name} as an array that is not an input of the graph "
                "(passed by keyword?); pass it positionally from a graph input"
            )
    return settings


def time_size(ctx: ExportContext, x: Value, axis: int) -> int | str:
    """The size of ``x``'s ``axis``: the int when fixed, else a 1-D int64 tensor's name."""
    size = x.shape[axis]
    if size is not None:
        return size
    return ctx.op("Shape", x, start=axis, end=axis + 1)


# -- recurrent layers -------------------------------------------------------------------------
def _restack(blocks: list[Any], order: list[int]) -> Any:
    """Gate blocks of a (gates * hidden, ...) array, reordered."""
    return np.concatenate([blocks[i] for i in order], axis=0)


def _recurrent(ctx: ExportContext, module: RNN | LSTM | GRU, inputs: Inputs) -> Any:
    """One ONNX RNN, LSTM or GRU node per layer (both directions in one), time-major inside;
    inter-layer dropout is left out (eval mode)."""
    x = array(inputs[0], "the input")
    lstm = isinstance(module, LSTM)
    state = inputs[1] if len(inputs) > 1 else None
    h0: Value | None = None
    c0: Value | None = None
    if lstm and state is not None:
        if not isinstance(state, tuple) or len(state) != 2:
            raise ExportError("an LSTM's state must be the pair (h0, c0)")
        h0, c0 = array(state[0], "h0"), array(state[1], "c0")
    elif state is not None:
        h0 = array(state, "h0")
    dtype = ctx.output_spec(module).dtype  # the parameters' dtype
    base = next(c for c in type(module).__mro__ if c in _GATE_ORDER)  # a subclass: its base's
    order = _GATE_ORDER[base]
    gates, hidden, directions = len(order), module.hidden_size, module.directions
    seq = ctx.cast(x, dtype)
    if module.batch_first:
        seq = ctx.op("Transpose", seq, perm=[1, 0, 2])
    op_type = {1: "RNN", 4: "LSTM", 3: "GRU"}[gates]
    attributes: dict[str, Any] = {
        "hidden_size": hidden,
        "direction": "bidirectional" if directions == 2 else "forward",
    }
    if isinstance(module, RNN):
        attributes["activations"] = [module.nonlinearity.capitalize()] * directions
    if isinstance(module, GRU):
        attributes["linear_before_reset"] = 1
    finals_h, finals_c = [], []
    for layer in range(module.num_layers):
        suffixes = [f"_l{layer}" + ("_reverse" if d else "") for d in range(directions)]

        def stacked(kind: str, suffixes: list[str] = suffixes) -> Any:
            return np.stack([
                _restack(np.split(getattr(module, f"{kind}{s}").data, gates), order)
                for s in suffixes
            ])

        w = ctx.constant(stacked("weight_ih"), f"W_l{layer}")
        r = ctx.constant(stacked("weight_hh"), f"R_l{layer}")
        b = None
        if module.bias:
            b = ctx.constant(
                np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1), f"B_l{layer}"
            )
        rows = [layer * directions, (layer + 1) * directions]

        def initial(state: Value | None, rows: list[int] = rows) -> str | None:
            if state is None:
                return None
            start, stop = ctx.int64s(rows[:1], "starts"), ctx.int64s(rows[1:], "ends")
            return ctx.op("Slice", ctx.cast(state, dtype), start, stop, ctx.int64s([0], "axes"))

        outputs = ctx.op_multi(
            op_type,
            [seq, w, r, b, None, initial(h0), initial(c0) if lstm else None],
            3 if lstm else 2,
            **attributes,
        )
        finals_h.append(outputs[1])
        if lstm:
            finals_c.append(outputs[2])
        # Y (T, D, N, H) -> (T, N, D * H), the next layer's input and the output
        seq = ctx.op("Transpose", outputs[0], perm=[0, 2, 1, 3])
        seq = ctx.op("Reshape", seq, ctx.int64s([0, 0, directions * hidden]))
    output = ctx.op("Transpose", seq, perm=[1, 0, 2]) if module.batch_first else seq

    def joined(parts: list[str]) -> str:
        return parts[0] if len(parts) == 1 else ctx.op("Concat", *parts, axis=0)

    if lstm:
        return output, (joined(finals_h), joined(finals_c))
    return output, joined(finals_h)


for _cls in (RNN, LSTM, GRU):
    register_converter(_cls, _recurrent)


# -- around sequence layers -------------------------------------------------------------------
@register_converter(SequenceOutput)
def _sequence_output(ctx: ExportContext, module: SequenceOutput, inputs: Inputs) -> str:
    output = array(inputs[0], "the output sequence")
    return ctx.cast(output, ctx.output_spec(module).dtype)


@register_converter(LastTimeStep)
def _last_time_step(ctx: ExportContext, module: LastTimeStep, inputs: Inputs) -> str:
    output = array(inputs[0], "the output sequence")
    x = ctx.cast(output, ctx.output_spec(module).dtype)
    last = ctx.constant(np.asarray(-1, np.int64), "last")
    return ctx.op("Gather", x, last, axis=1 if module.batch_first else 0)


@register_converter(FinalState)
def _final_state(ctx: ExportContext, module: FinalState, inputs: Inputs) -> str:
    """The last layer's rows of h_n, every direction side by side: (N, D * hidden)."""
    if len(inputs) != 2:
        raise ExportError(f"FinalState takes (output, state), got {len(inputs)} inputs")
    output = array(inputs[0], "the output sequence")
    state = inputs[1]
    h_n = array(state[0] if isinstance(state, tuple) else state, "h_n")
    dtype = ctx.output_spec(module).dtype
    rows = ctx.cast(h_n, dtype)
    if h_n.rank == 4:  # (h_n, c_n) stacked into one array
        rows = ctx.op("Gather", rows, ctx.constant(np.asarray(0, np.int64), "index"), axis=0)
    layers_d, hidden = h_n.shape[-3], h_n.shape[-1]
    features = output.shape[-1]
    if layers_d is None or hidden is None or features is None:
        raise ExportError(f"needs fixed state sizes, got h_n {h_n.shape}")
    directions = features // hidden
    last = ctx.op(
        "Slice", rows, ctx.int64s([layers_d - directions], "starts"),
        ctx.int64s([layers_d], "ends"), ctx.int64s([0], "axes"),
    )
    side_by_side = ctx.op("Transpose", last, perm=[1, 0, 2])
    return ctx.op("Reshape", side_by_side, ctx.int64s([0, directions * hidden]))


def _add_positions(
    ctx: ExportContext, x: Value, table: Any, table_name: str, batch_first: bool,
    dtype: np.dtype[Any], fixed_table: bool,
) -> str:
    """``x + table[:L]`` broadcast over the batch (table (max_len, d_model))."""
    t_axis = 1 if batch_first else 0
    length = x.shape[t_axis]
    xs = ctx.cast(x, dtype)
    if length is not None and fixed_table:
        rows = ctx.constant(np.asarray(table[:length], dtype), table_name)
    else:
        full = ctx.constant(np.asarray(table, dtype), table_name)
        size = time_size(ctx, x, t_axis)
        stop = ctx.int64s([size], "ends") if isinstance(size, int) else size
        rows = ctx.op("Slice", full, ctx.int64s([0], "starts"), stop, ctx.int64s([0], "axes"))
    if not batch_first:
        rows = ctx.op("Unsqueeze", rows, ctx.int64s([1], "axes"))
    return ctx.op("Add", xs, rows)


@register_converter(PositionalEmbedding)
def _positional_embedding(
    ctx: ExportContext, module: PositionalEmbedding, inputs: Inputs
) -> str:
    """The learned table (kept whole, under its state-dict name) sliced to the length."""
    x = array(inputs[0], "the input")
    return _add_positions(
        ctx, x, module.weight.data, "weight", module.batch_first, module.weight.dtype, False
    )


@register_converter(SinusoidalPositionalEncoding)
def _sinusoidal(
    ctx: ExportContext, module: SinusoidalPositionalEncoding, inputs: Inputs
) -> str:
    """The fixed table, recomputed as the layer computes it (float64, then the input's
    dtype): only its first L rows for a fixed length."""
    x = array(inputs[0], "the input")
    position = np.arange(module.max_len, dtype=np.float64)[:, None]
    rates = np.exp(np.arange(0, module.d_model, 2) * (-math.log(10000.0) / module.d_model))
    table = np.zeros((module.max_len, module.d_model))
    table[:, 0::2] = np.sin(position * rates)
    table[:, 1::2] = np.cos(position * rates[: module.d_model // 2])
    spec: TensorSpec = ctx.output_spec(module)
    return _add_positions(ctx, x, table, "table", module.batch_first, spec.dtype, True)
