"""The ONNX converters of the built-in layers, one function per layer class.

Each computes what the layer computes in eval mode, with the layer's own arrays as
initializers (named by the state dict where they are stored unchanged). Where an op's
signature changed between opsets (the reductions' axes became an input in 18, GELU became an
op in 20), the converter writes the form of the opset being exported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnkit.layers.activations import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from nnkit.layers.batchnorm import BatchNorm1d, BatchNorm2d
from nnkit.layers.conv import Conv1d, Conv2d, ConvTranspose2d
from nnkit.layers.dense import Dense
from nnkit.layers.dropout import Dropout, Dropout2d
from nnkit.layers.embedding import Embedding
from nnkit.layers.merge import Add, Concatenate, Multiply
from nnkit.layers.normalization import GroupNorm, LayerNorm
from nnkit.layers.pooling import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from nnkit.layers.reshape import Flatten, Reshape, Unflatten
from nnkit.module import Module
from nnkit.onnx._context import ExportContext, ExportError, Value, register_converter

__all__ = ["gelu", "layer_norm", "reduce", "reshape_to"]

Inputs = tuple[Value, ...]


# -- helpers shared by the converters ---------------------------------------------------------
def reduce(
    ctx: ExportContext,
    op_type: str,
    x: Value | str,
    axes: Sequence[int],
    keepdims: bool = True,
) -> str:
    """``op_type`` (ReduceMean, ReduceMax...) over ``axes``: axes are an attribute before
    opset 18 and an input from 18 on."""
    keep = int(keepdims)
    if ctx.opset >= 18:
        return ctx.op(op_type, x, ctx.int64s(axes, "axes"), keepdims=keep)
    return ctx.op(op_type, x, axes=[int(a) for a in axes], keepdims=keep)


def reshape_to(ctx: ExportContext, x: Value, shape: Sequence[int | None]) -> str:
    """Reshape ``x`` to ``shape`` (the traced output shape, None for the batch axis).

    A dynamic axis at the same position in ``x`` is copied (0 in ONNX's Reshape), so an empty
    batch works too; one other dynamic axis is inferred (-1)."""
    target = []
    for i, size in enumerate(shape):
        if size is not None:
            target.append(size)
        elif i < x.rank and x.shape[i] is None:
            target.append(0)
        else:
            target.append(-1)
    if target.count(-1) > 1:
        raise ExportError(
            f"cannot reshape {x.shape} to {tuple(shape)}: more than one axis follows the batch "
            "size in a new position"
        )
    return ctx.op("Reshape", x, ctx.int64s(target))


def _single(module: Module, inputs: Inputs) -> Value:
    if len(inputs) != 1:
        raise ExportError(f"{type(module).__name__} takes one input, got {len(inputs)}")
    return inputs[0]


def _float_input(ctx: ExportContext, module: Module, inputs: Inputs) -> str:
    """The one input, cast to the dtype the layer computes in (nnkit turns integers into
    float32, and a layer with parameters converts input to its parameters' dtype)."""
    return ctx.cast(_single(module, inputs), ctx.output_spec(module).dtype)


def _channel_shaped(array: Any, rank: int) -> Any:
    """A per-channel vector (C,) as (C, 1, ..., 1), to broadcast against (N, C, *) of rank."""
    return np.reshape(array, (-1, *(1,) * (rank - 2)))


# -- dense, embedding -------------------------------------------------------------------------
@register_converter(Dense)
def _dense(ctx: ExportContext, module: Dense, inputs: Inputs) -> str:
    """Gemm for (N, in) input; MatMul (+ Add) for (N, *, in). The weight is nnkit's
    (in, out), so Gemm takes it without transB."""
    x = _single(module, inputs)
    xs = _float_input(ctx, module, inputs)
    weight = ctx.constant(module.weight.data, "weight")
    bias = None if module.bias is None else ctx.constant(module.bias.data, "bias")
    if x.rank == 2:
        return ctx.op("Gemm", xs, weight, bias)
    y = ctx.op("MatMul", xs, weight)
    return y if bias is None else ctx.op("Add", y, bias)


@register_converter(Embedding)
def _embedding(ctx: ExportContext, module: Embedding, inputs: Inputs) -> str:
    """Gather of the indices' rows of the table."""
    indices = _single(module, inputs)
    if indices.dtype.kind not in "iu":
        raise ExportError(
            f"its input is {indices.dtype}, but Embedding takes integer indices; export with "
            "input_dtype='int64'"
        )
    ids = indices.name if indices.dtype in (np.int32, np.int64) else ctx.cast(indices, np.int64)
    return ctx.op("Gather", ctx.constant(module.weight.data, "weight"), ids, axis=0)


# -- activations ------------------------------------------------------------------------------
_UNARY: dict[type, str] = {
    Sigmoid: "Sigmoid",
    Tanh: "Tanh",
    ReLU: "Relu",
    Softplus: "Softplus",
}


def _unary(ctx: ExportContext, module: Module, inputs: Inputs) -> str:
    return ctx.op(_UNARY[type(module)], _float_input(ctx, module, inputs))


for _cls in _UNARY:
    register_converter(_cls, _unary)


@register_converter(LeakyReLU)
def _leaky_relu(ctx: ExportContext, module: LeakyReLU, inputs: Inputs) -> str:
    return ctx.op("LeakyRelu", _float_input(ctx, module, inputs), alpha=module.negative_slope)


@register_converter(ELU)
def _elu(ctx: ExportContext, module: ELU, inputs: Inputs) -> str:
    return ctx.op("Elu", _float_input(ctx, module, inputs), alpha=module.alpha)


def gelu(ctx: ExportContext, x: Value | str, dtype: np.dtype[Any]) -> str:
    """nnkit's GELU, the tanh form: the Gelu op (approximate="tanh") from opset 20, else its
    formula ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, as nnkit computes it."""
    if ctx.opset >= 20:
        return ctx.op("Gelu", x, approximate="tanh")
    cube = ctx.op("Mul", x, ctx.op("Mul", x, x))
    inner = ctx.op("Add", x, ctx.op("Mul", ctx.scalar(0.044715, dtype, "k"), cube))
    t = ctx.op("Tanh", ctx.op("Mul", ctx.scalar(math.sqrt(2 / math.pi), dtype, "c"), inner))
    half_x = ctx.op("Mul", ctx.scalar(0.5, dtype, "half"), x)
    return ctx.op("Mul", half_x, ctx.op("Add", ctx.scalar(1.0, dtype, "one"), t))


@register_converter(GELU)
def _gelu(ctx: ExportContext, module: GELU, inputs: Inputs) -> str:
    return gelu(ctx, _float_input(ctx, module, inputs), ctx.output_spec(module).dtype)


@register_converter(SiLU)
def _silu(ctx: ExportContext, module: SiLU, inputs: Inputs) -> str:
    x = _float_input(ctx, module, inputs)
    return ctx.op("Mul", x, ctx.op("Sigmoid", x))


@register_converter(Softmax)
def _softmax(ctx: ExportContext, module: Softmax, inputs: Inputs) -> str:
    return ctx.op("Softmax", _float_input(ctx, module, inputs), axis=module.axis)


@register_converter(LogSoftmax)
def _log_softmax(ctx: ExportContext, module: LogSoftmax, inputs: Inputs) -> str:
    return ctx.op("LogSoftmax", _float_input(ctx, module, inputs), axis=module.axis)


def _pass_through(ctx: ExportContext, module: Module, inputs: Inputs) -> str:
    """Identity, and dropout in eval mode: the input itself, as a float."""
    return _float_input(ctx, module, inputs)


for _cls in (Identity, Dropout, Dropout2d):
    register_converter(_cls, _pass_through)


# -- convolution and pooling ------------------------------------------------------------------
def _conv_pads(module: Conv1d | Conv2d) -> list[int]:
    """ONNX pads (all begins, then all ends) of a convolution's padding, "same" included."""
    if module.padding == "valid":
        pairs = [(0, 0)] * len(module.kernel_size)
    elif module.padding == "same":  # PyTorch's rule: the odd one out goes after
        totals = [d * (k - 1) for k, d in zip(module.kernel_size, module.dilation, strict=True)]
        pairs = [(t // 2, t - t // 2) for t in totals]
    else:
        pairs = [(int(p), int(p)) for p in module.padding]
    return [a for a, _ in pairs] + [b for _, b in pairs]


def _conv(ctx: ExportContext, module: Conv1d | Conv2d, inputs: Inputs) -> str:
    x = _float_input(ctx, module, inputs)
    bias = None if module.bias is None else ctx.constant(module.bias.data, "bias")
    return ctx.op(
        "Conv",
        x,
        ctx.constant(module.weight.data, "weight"),
        bias,
        kernel_shape=list(module.kernel_size),
        strides=list(module.stride),
        dilations=list(module.dilation),
        pads=_conv_pads(module),
        group=module.groups,
    )


register_converter(Conv1d, _conv)
register_converter(Conv2d, _conv)


@register_converter(ConvTranspose2d)
def _conv_transpose(ctx: ExportContext, module: ConvTranspose2d, inputs: Inputs) -> str:
    """ConvTranspose: the weight layout (C_in, C_out / groups, kH, kW) is ONNX's."""
    x = _float_input(ctx, module, inputs)
    bias = None if module.bias is None else ctx.constant(module.bias.data, "bias")
    return ctx.op(
        "ConvTranspose",
        x,
        ctx.constant(module.weight.data, "weight"),
        bias,
        kernel_shape=list(module.kernel_size),
        strides=list(module.stride),
        dilations=list(module.dilation),
        pads=[*module.padding, *module.padding],
        output_padding=list(module.output_padding),
        group=module.groups,
    )


def _pool(ctx: ExportContext, module: Any, inputs: Inputs) -> str:
    """MaxPool or AveragePool (padding counted, as nnkit and PyTorch by default)."""
    x = _float_input(ctx, module, inputs)
    attributes: dict[str, Any] = {
        "kernel_shape": list(module.kernel_size),
        "strides": list(module.stride),
        "pads": [*module.padding, *module.padding],
    }
    if isinstance(module, (AvgPool1d, AvgPool2d)):
        return ctx.op("AveragePool", x, count_include_pad=1, **attributes)
    return ctx.op("MaxPool", x, **attributes)


for _cls in (MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d):
    register_converter(_cls, _pool)


def _bins(size: int, out: int, dtype: np.dtype[Any]) -> Any:
    """The (out, size) averaging matrix of adaptive pooling along one axis (PyTorch's bins:
    row i averages ``floor(i * size / out)`` up to ``ceil((i + 1) * size / out)``)."""
    bins = np.zeros((out, size), dtype)
    for i in range(out):
        start, stop = (i * size) // out, -((-(i + 1) * size) // out)
        bins[i, start:stop] = 1.0 / (stop - start)
    return bins


@register_converter(AdaptiveAvgPool2d)
def _adaptive_avg_pool(ctx: ExportContext, module: AdaptiveAvgPool2d, inputs: Inputs) -> str:
    """GlobalAveragePool for output 1; AveragePool when the bins are equal windows; else the
    two averaging matrices, ``A @ x @ B.T``."""
    x = _single(module, inputs)
    xs = _float_input(ctx, module, inputs)
    (h, w), (oh, ow) = x.shape[2:], module.output_size
    if (oh, ow) == (1, 1):
        return ctx.op("GlobalAveragePool", xs)
    if h is None or w is None:
        raise ExportError(f"its input {x.shape} needs a fixed height and width")
    if h % oh == 0 and w % ow == 0:
        kernel = [h // oh, w // ow]
        return ctx.op("AveragePool", xs, kernel_shape=kernel, strides=kernel)
    dtype = ctx.output_spec(module).dtype
    columns = ctx.constant(_bins(w, ow, dtype).T, "column_bins")
    rows = ctx.constant(_bins(h, oh, dtype), "row_bins")
    return ctx.op("MatMul", rows, ctx.op("MatMul", xs, columns))


# -- normalisation ----------------------------------------------------------------------------
def _batch_norm(ctx: ExportContext, module: BatchNorm1d | BatchNorm2d, inputs: Inputs) -> str:
    """BatchNormalization with the running statistics; with ``track_running_stats=False``
    (which normalises by the batch's statistics in eval mode too) the formula with
    ReduceMean over the batch and positions."""
    x = _single(module, inputs)
    xs = _float_input(ctx, module, inputs)
    dtype = ctx.output_spec(module).dtype
    c = module.num_features
    weight = np.ones(c, dtype) if module.weight is None else module.weight.data
    bias = np.zeros(c, dtype) if module.bias is None else module.bias.data
    if module.running_mean is not None and module.running_var is not None:
        return ctx.op(
            "BatchNormalization",
            xs,
            ctx.constant(weight, "weight"),
            ctx.constant(bias, "bias"),
            ctx.constant(module.running_mean.data, "running_mean"),
            ctx.constant(module.running_var.data, "running_var"),
            epsilon=module.eps,
        )
    axes = [0, *range(2, x.rank)]
    centred = ctx.op("Sub", xs, reduce(ctx, "ReduceMean", xs, axes))
    var = reduce(ctx, "ReduceMean", ctx.op("Mul", centred, centred), axes)
    std = ctx.op("Sqrt", ctx.op("Add", var, ctx.scalar(module.eps, dtype, "eps")))
    y = ctx.op("Div", centred, std)
    y = ctx.op("Mul", y, ctx.constant(_channel_shaped(weight, x.rank), "weight"))
    return ctx.op("Add", y, ctx.constant(_channel_shaped(bias, x.rank), "bias"))


register_converter(BatchNorm1d, _batch_norm)
register_converter(BatchNorm2d, _batch_norm)


def layer_norm(
    ctx: ExportContext, module: LayerNorm, x: Value | str, dtype: np.dtype[Any]
) -> str:
    """LayerNormalization over ``module``'s trailing ``normalized_shape`` axes, its statistics
    computed in ``dtype`` (the input's). Call it inside ``ctx.scope(module)`` from a
    composite converter, so the weights keep their names."""
    from onnx import helper

    scale = (
        np.ones(module.normalized_shape, dtype) if module.weight is None else module.weight.data
    )
    bias = None if module.bias is None else ctx.constant(module.bias.data, "bias")
    return ctx.op(
        "LayerNormalization",
        x,
        ctx.constant(scale, "weight"),
        bias,
        axis=-len(module.normalized_shape),
        epsilon=module.eps,
        stash_type=int(helper.np_dtype_to_tensor_dtype(dtype)),
    )


@register_converter(LayerNorm)
def _layer_norm(ctx: ExportContext, module: LayerNorm, inputs: Inputs) -> str:
    dtype = ctx.output_spec(module).dtype
    return layer_norm(ctx, module, _float_input(ctx, module, inputs), dtype)


@register_converter(GroupNorm)
def _group_norm(ctx: ExportContext, module: GroupNorm, inputs: Inputs) -> str:
    """InstanceNormalization of x viewed as (N, groups, rest), then the per-channel affine."""
    x = _single(module, inputs)
    xs = _float_input(ctx, module, inputs)
    dtype = ctx.output_spec(module).dtype
    g = module.num_groups
    rest = [d for d in x.shape[1:]]
    per_group = -1 if None in rest else math.prod(d for d in rest if d is not None) // g
    grouped = ctx.op("Reshape", xs, ctx.int64s([0, g, per_group]))
    normed = ctx.op(
        "InstanceNormalization",
        grouped,
        ctx.constant(np.ones(g, dtype), "group_scale"),
        ctx.constant(np.zeros(g, dtype), "group_bias"),
        epsilon=module.eps,
    )
    y = ctx.op("Reshape", normed, ctx.op("Shape", xs))
    if module.weight is None or module.bias is None:
        return y
    y = ctx.op("Mul", y, ctx.constant(_channel_shaped(module.weight.data, x.rank), "weight"))
    return ctx.op("Add", y, ctx.constant(_channel_shaped(module.bias.data, x.rank), "bias"))


# -- reshaping --------------------------------------------------------------------------------
def _reshape(ctx: ExportContext, module: Flatten | Unflatten | Reshape, inputs: Inputs) -> str:
    x = _single(module, inputs)
    cast = Value(_float_input(ctx, module, inputs), x.shape, ctx.output_spec(module).dtype)
    return reshape_to(ctx, cast, ctx.output_spec(module).shape)


for _cls in (Flatten, Unflatten, Reshape):
    register_converter(_cls, _reshape)


# -- merging ----------------------------------------------------------------------------------
def _merge(ctx: ExportContext, module: Add | Multiply | Concatenate, inputs: Inputs) -> str:
    """Add or Mul folded left to right (as nnkit adds), or one Concat."""
    if len(inputs) < 2:
        raise ExportError(f"{type(module).__name__} merges two or more inputs, got {len(inputs)}")
    dtype = ctx.output_spec(module).dtype
    names = [ctx.cast(x, dtype) for x in inputs]
    if isinstance(module, Concatenate):
        return ctx.op("Concat", *names, axis=module.axis)
    op_type = "Add" if isinstance(module, Add) else "Mul"
    y = ctx.op(op_type, names[0], names[1])
    for name in names[2:]:
        y = ctx.op(op_type, y, name)
    return y


for _cls in (Add, Multiply, Concatenate):
    register_converter(_cls, _merge)
