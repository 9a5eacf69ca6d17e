"""The ONNX converters of attention and the Transformer encoder: their matrix products, with
PyTorch's (out, in) weights kept under their state-dict names and multiplied by their
transposes in the graph. Masks are additive (0 or -inf, or the float mask), and a query whose
keys are all masked gets zero weights, as in nnkit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnkit.layers.attention import MultiheadAttention, causal_mask
from nnkit.layers.normalization import LayerNorm
from nnkit.layers.transformer import TransformerEncoder, TransformerEncoderLayer
from nnkit.onnx._context import ExportContext, ExportError, Value, register_converter
from nnkit.onnx._converters import gelu, layer_norm, reduce
from nnkit.onnx._sequences import Inputs, array, bind, time_size

__all__ = ["attention"]


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
        masks.append(_causal(ctx, time_size(ctx, query, t_axis), time_size(ctx, key, t_axis),
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
    q, k, v = (array(x, name) for x, name in zip(inputs, ("query", "key", "value"),
                                                  strict=False))
    options = bind(ctx, module, inputs, 3, _ATTENTION_OPTIONS)
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
    x = array(inputs[0], "src")
    settings = bind(
        ctx, module, inputs, 1,
        {"src_mask": None, "src_key_padding_mask": None, "is_causal": False},
    )
    mask, padding = _masks(settings, "src_mask")
    return _encoder_layer(ctx, module, x, mask, padding, bool(settings["is_causal"]))


@register_converter(TransformerEncoder)
def _transformer(ctx: ExportContext, module: TransformerEncoder, inputs: Inputs) -> Any:
    x = array(inputs[0], "src")
    settings = bind(
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
