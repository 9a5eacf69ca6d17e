"""The ONNX converters of the sequence layers: recurrent layers as ONNX's RNN, LSTM and GRU
ops, attention and the Transformer encoder as their matrix products, and the small layers
around them.

Weight layouts: ONNX's recurrent ops take one (directions, gates * hidden, input) tensor per
layer with the gates in their own order (LSTM: i, o, f, c; GRU: z, r, h), where PyTorch and
nnkit keep (gates * hidden, input) per direction in the order i, f, g, o and r, z, n; the
converter restacks the blocks. nnkit's GRU is PyTorch's, which applies the reset gate after
the hidden product: ONNX's ``linear_before_reset=1``. Attention and the encoder's linear maps
keep PyTorch's (out, in) layout and names, multiplied by their transposes in the graph.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnkit.layers.attention import MultiheadAttention, causal_mask
from nnkit.layers.normalization import LayerNorm
from nnkit.layers.recurrent import GRU, LSTM, RNN
from nnkit.layers.sequence import (
    FinalState,
    LastTimeStep,
    PositionalEmbedding,
    SequenceOutput,
    SinusoidalPositionalEncoding,
)
from nnkit.layers.transformer import TransformerEncoder, TransformerEncoderLayer
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
from nnkit.onnx._converters import gelu, layer_norm, reduce

__all__ = ["attention"]

Inputs = tuple[ValueTree, ...]

_GATE_ORDER = {RNN: [0], LSTM: [0, 3, 1, 2], GRU: [1, 0, 2]}
"""For each layer, the PyTorch gate blocks in ONNX's order (LSTM i,f,g,o -> i,o,f,c; GRU
r,z,n -> z,r,h)."""


def _array(value: ValueTree, what: str) -> Value:
    if not isinstance(value, Value):
        raise ExportError(f"{what} must be one array, got {value!r}")
    return value


def _bind(
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


def _time_size(ctx: ExportContext, x: Value, axis: int) -> int | str:
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
    x = _array(inputs[0], "the input")
    lstm = isinstance(module, LSTM)
    state = inputs[1] if len(inputs) > 1 else None
    h0: Value | None = None
    c0: Value | None = None
    if lstm and state is not None:
        if not isinstance(state, tuple) or len(state) != 2:
            raise ExportError("an LSTM's state must be the pair (h0, c0)")
        h0, c0 = _array(state[0], "h0"), _array(state[1], "c0")
    elif state is not None:
        h0 = _array(state, "h0")
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


# -- attention --------------------------------------------------------------------------------
def _torch_linear(
    ctx: ExportContext, x: str, weight: Any, bias: Any, name: str
) -> str:
    """``x @ weight.T + bias`` for a weight in PyTorch's (out, in) layout, kept as it is."""
    w = ctx.op("Transpose", ctx.constant(weight, f"{name}weight"), perm=[1, 0])
    y = ctx.op("MatMul", x, w)
    return y if bias is None else ctx.op("Add", y, ctx.constant(bias, f"{name}bias"))


def _additive(ctx: ExportContext, mask: Value, dtype: np.dtype[Any]) -> str:
    """A bool mask (True: not allowed) as 0 / -inf, or a float mask in ``dtype``."""
    if mask.dtype.kind == "b":
        return ctx.op(
            "Where", mask, ctx.scalar(-np.inf, dtype, "neg_inf"), ctx.scalar(0.0, dtype, "zero")
        )
    return ctx.cast(mask, dtype)


def _causal(
    ctx: ExportContext, length: int | str, source: int | str, dtype: np.dtype[Any]
) -> str:
    """nnkit.causal_mask(L, S) as an additive mask: a constant for fixed sizes, else built
    from the sizes with Trilu."""
    if isinstance(length, int) and isinstance(source, int):
        additive = np.where(causal_mask(length, source), -np.inf, 0.0).astype(dtype)
        return ctx.constant(additive, "causal_mask")

    def as_tensor(size: int | str) -> str:
        return ctx.int64s([size], "size") if isinstance(size, int) else size

    shape = ctx.op("Concat", as_tensor(length), as_tensor(source), axis=0)
    ones = ctx.op("ConstantOfShape", shape, value=_tensor(np.ones(1, dtype)))
    k = ctx.constant(np.asarray(1, np.int64), "k")
    above = ctx.op("Cast", ctx.op("Trilu", ones, k, upper=1), to=_elem_type(np.dtype(bool)))
    return ctx.op(
        "Where", above, ctx.scalar(-np.inf, dtype, "neg_inf"), ctx.scalar(0.0, dtype, "zero")
    )


def _tensor(array: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(array)


def _elem_type(dtype: np.dtype[Any]) -> int:
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(dtype))


def attention(
    ctx: ExportContext,
    module: MultiheadAttention,
    query: Value,
    key: Value,
    value: Value,
    *,
    key_padding_mask: Value | None = None,
    attn_mask: Value | None = None,
    need_weights: bool = True,
    average_attn_weights: bool = True,
    is_causal: bool = False,
    prefix: str = "",
) -> tuple[str, str | None]:
    """The nodes of ``module``'s eval forward, as nnkit computes it; returns the names of the
    output and of the attention weights (None without ``need_weights``).

    ``prefix`` names the constants (``"self_attn."`` from an encoder layer's converter). A
    query whose keys are all masked gets zero weights, as in nnkit (not NaN)."""
    dtype = module.dtype
    e, h, d = module.embed_dim, module.num_heads, module.head_dim
    batch_first = module.batch_first
    t_axis = 1 if batch_first else 0
    heads_perm = [0, 2, 1, 3] if batch_first else [1, 2, 0, 3]  # rows, h, d -> N, h, rows, d
    q_in, k_in, v_in = (ctx.cast(x, dtype) for x in (query, key, value))
    bias = module.in_proj_bias
    same = query.name == key.name == value.name

    def split_heads(p: str) -> str:
        return ctx.op("Transpose", ctx.op("Reshape", p, ctx.int64s([0, 0, h, d])),
                      perm=heads_perm)

    if module.packed and same:
        packed = _torch_linear(
            ctx, q_in, module.in_proj_weight.data, None if bias is None else bias.data,
            f"{prefix}in_proj_",
        )
        p5 = ctx.op("Reshape", packed, ctx.int64s([0, 0, 3, h, d]))
        qkv = ctx.op("Transpose", p5, perm=[2, 0, 3, 1, 4] if batch_first else [2, 1, 3, 0, 4])
        q, k, v = (
            ctx.op("Gather", qkv, ctx.constant(np.asarray(i, np.int64), "index"), axis=0)
            for i in range(3)
        )
    else:
        projected = []
        for i, (x, which) in enumerate(zip((q_in, k_in, v_in), "qkv", strict=True)):
            if module.packed:
                weight = module.in_proj_weight.data[i * e : (i + 1) * e]
                name = f"{prefix}in_proj_{which}_"
            else:
                weight = getattr(module, f"{which}_proj_weight").data
                name = f"{prefix}{which}_proj_"
            b = None if bias is None else bias.data[i * e : (i + 1) * e]
            projected.append(split_heads(_torch_linear(ctx, x, weight, b, name)))
        q, k, v = projected
    q = ctx.op("Mul", q, ctx.scalar(1.0 / math.sqrt(d), dtype, "scale"))
    scores = ctx.op("MatMul", q, ctx.op("Transpose", k, perm=[0, 1, 3, 2]))  # (N, h, L, S)
    masks = []
    if key_padding_mask is not None:
        masks.append(
            ctx.op("Unsqueeze", _additive(ctx, key_padding_mask, dtype), ctx.int64s([1, 2],
                                                                                    "axes"))
        )
    if attn_mask is None and is_causal:
        masks.append(_causal(ctx, _time_size(ctx, query, t_axis), _time_size(ctx, key, t_axis),
                             dtype))
    elif attn_mask is not None:
        additive = _additive(ctx, attn_mask, dtype)
        if attn_mask.rank == 3:  # (N * h, L, S) -> (N, h, L, S)
            sizes = ctx.op("Shape", attn_mask, start=1, end=3)
            shape = ctx.op("Concat", ctx.int64s([-1, h], "heads"), sizes, axis=0)
            additive = ctx.op("Reshape", additive, shape)
        masks.append(additive)
    for mask in masks:
        scores = ctx.op("Add", scores, mask)
    weights = ctx.op("Softmax", scores, axis=-1)
    if masks:  # a row with every key masked attends to nothing: zeros, as in nnkit
        top = reduce(ctx, "ReduceMax", scores, [-1])
        dead = ctx.op("IsInf", top, detect_negative=1, detect_positive=0)
        weights = ctx.op("Where", dead, ctx.scalar(0.0, dtype, "zero"), weights)
    o = ctx.op("MatMul", weights, v)  # (N, h, L, d)
    merged = ctx.op("Transpose", o, perm=[0, 2, 1, 3] if batch_first else [2, 0, 1, 3])
    merged = ctx.op("Reshape", merged, ctx.int64s([0, 0, e]))
    out_bias = module.out_proj.get("bias")
    y = _torch_linear(
        ctx, merged, module.out_proj["weight"].data,
        None if out_bias is None else out_bias.data, f"{prefix}out_proj.",
    )
    if not need_weights:
        return y, None
    if average_attn_weights:
        return y, reduce(ctx, "ReduceMean", weights, [1], keepdims=False)
    return y, weights


_ATTENTION_OPTIONS = {
    "key_padding_mask": None,
    "need_weights": True,
    "attn_mask": None,
    "average_attn_weights": True,
    "is_causal": False,
}


@register_converter(MultiheadAttention)
def _attention(ctx: ExportContext, module: MultiheadAttention, inputs: Inputs) -> Any:
    if len(inputs) < 3:
        raise ExportError(f"attention takes query, key and value, got {len(inputs)} inputs")
    q, k, v = (_array(x, name) for x, name in zip(inputs, ("query", "key", "value"),
                                                  strict=False))
    options = _bind(ctx, module, inputs, 3, _ATTENTION_OPTIONS)
    y, weights = attention(ctx, module, q, k, v, **options)
    return y, weights


# -- the Transformer encoder ------------------------------------------------------------------
def _encoder_layer(
    ctx: ExportContext,
    layer: TransformerEncoderLayer,
    x: Value,
    mask: Value | None,
    padding: Value | None,
    is_causal: bool,
) -> str:
    """One encoder layer's eval forward (``layer.encode``), inside ``ctx.scope(layer)``."""
    dtype = layer.dtype

    def norm(module: LayerNorm, value: str) -> str:
        with ctx.scope(module):
            return layer_norm(ctx, module, value, dtype)

    def self_attention(value: str) -> str:
        v = Value(value, x.shape, dtype)
        out, _ = attention(
            ctx, layer.self_attn, v, v, v, key_padding_mask=padding, attn_mask=mask,
            need_weights=False, is_causal=(is_causal or layer.causal) and mask is None,
            prefix="self_attn.",
        )
        return out

    def feed_forward(value: str) -> str:
        hidden = _torch_linear(
            ctx, value, layer.linear1["weight"].data,
            layer.linear1["bias"].data if "bias" in layer.linear1 else None, "linear1.",
        )
        hidden = ctx.op("Relu", hidden) if layer.activation_name == "relu" else gelu(
            ctx, hidden, dtype
        )
        return _torch_linear(
            ctx, hidden, layer.linear2["weight"].data,
            layer.linear2["bias"].data if "bias" in layer.linear2 else None, "linear2.",
        )

    src = ctx.cast(x, dtype)
    if layer.norm_first:
        x1 = ctx.op("Add", src, self_attention(norm(layer.norm1, src)))
        return ctx.op("Add", x1, feed_forward(norm(layer.norm2, x1)))
    x1 = norm(layer.norm1, ctx.op("Add", src, self_attention(src)))
    return norm(layer.norm2, ctx.op("Add", x1, feed_forward(x1)))


def _masks(settings: dict[str, Any], mask_name: str) -> tuple[Value | None, Value | None]:
    mask, padding = settings[mask_name], settings["src_key_padding_mask"]
    for name, value in ((mask_name, mask), ("src_key_padding_mask", padding)):
        if value is not None and not isinstance(value, Value):
            raise ExportError(f"{name} must be an array input of the graph, got {value!r}")
    return mask, padding


@register_converter(TransformerEncoderLayer)
def _transformer_layer(
    ctx: ExportContext, module: TransformerEncoderLayer, inputs: Inputs
) -> str:
    x = _array(inputs[0], "src")
    settings = _bind(
        ctx, module, inputs, 1,
        {"src_mask": None, "src_key_padding_mask": None, "is_causal": False},
    )
    mask, padding = _masks(settings, "src_mask")
    return _encoder_layer(ctx, module, x, mask, padding, bool(settings["is_causal"]))


@register_converter(TransformerEncoder)
def _transformer(ctx: ExportContext, module: TransformerEncoder, inputs: Inputs) -> Any:
    x = _array(inputs[0], "src")
    settings = _bind(
        ctx, module, inputs, 1, {"mask": None, "src_key_padding_mask": None, "is_causal": False}
    )
    mask, padding = _masks(settings, "mask")
    causal = bool(settings["is_causal"]) or module.causal
    dtype = module.layers[0].dtype
    value = Value(ctx.cast(x, dtype), x.shape, dtype)
    for layer in module.layers:
        with ctx.scope(layer):
            value = Value(_encoder_layer(ctx, layer, value, mask, padding, causal), x.shape,
                          dtype)
    if module.norm is None:
        return value
    return ctx.convert(module.norm, [value])


# -- around sequence layers -------------------------------------------------------------------
@register_converter(SequenceOutput)
def _sequence_output(ctx: ExportContext, module: SequenceOutput, inputs: Inputs) -> str:
    output = _array(inputs[0], "the output sequence")
    return ctx.cast(output, ctx.output_spec(module).dtype)


@register_converter(LastTimeStep)
def _last_time_step(ctx: ExportContext, module: LastTimeStep, inputs: Inputs) -> str:
    output = _array(inputs[0], "the output sequence")
    x = ctx.cast(output, ctx.output_spec(module).dtype)
    last = ctx.constant(np.asarray(-1, np.int64), "last")
    return ctx.op("Gather", x, last, axis=1 if module.batch_first else 0)


@register_converter(FinalState)
def _final_state(ctx: ExportContext, module: FinalState, inputs: Inputs) -> str:
    """The last layer's rows of h_n, every direction side by side: (N, D * hidden)."""
    if len(inputs) != 2:
        raise ExportError(f"FinalState takes (output, state), got {len(inputs)} inputs")
    output = _array(inputs[0], "the output sequence")
    state = inputs[1]
    h_n = _array(state[0] if isinstance(state, tuple) else state, "h_n")
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
        size = _time_size(ctx, x, t_axis)
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
    x = _array(inputs[0], "the input")
    return _add_positions(
        ctx, x, module.weight.data, "weight", module.batch_first, module.weight.dtype, False
    )


@register_converter(SinusoidalPositionalEncoding)
def _sinusoidal(
    ctx: ExportContext, module: SinusoidalPositionalEncoding, inputs: Inputs
) -> str:
    """The fixed table, recomputed as the layer computes it (float64, then the input's
    dtype): only its first L rows for a fixed length."""
    x = _array(inputs[0], "the input")
    position = np.arange(module.max_len, dtype=np.float64)[:, None]
    rates = np.exp(np.arange(0, module.d_model, 2) * (-math.log(10000.0) / module.d_model))
    table = np.zeros((module.max_len, module.d_model))
    table[:, 0::2] = np.sin(position * rates)
    table[:, 1::2] = np.cos(position * rates[: module.d_model // 2])
    spec: TensorSpec = ctx.output_spec(module)
    return _add_positions(ctx, x, table, "table", module.batch_first, spec.dtype, True)
