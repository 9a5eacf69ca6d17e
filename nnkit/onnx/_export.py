"""``export``: trace the model, convert it module by module, check and write the ONNX file."""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Sequence
from numbers import Integral
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit._version import __version__
from nnkit.graph import Graph
from nnkit.module import Module
from nnkit.onnx._context import ExportContext, ExportError, Opaque, SpecTree, Value, ValueTree
from nnkit.onnx._trace import TRACE_BATCHES, TRACE_LENGTHS, Input, Shape, leaves, trace
from nnkit.serialization.archive import PathLike, atomic_write

if TYPE_CHECKING:
    import onnx

__all__ = ["MIN_OPSET", "TRACE_BATCHES", "TRACE_LENGTHS", "export"]

MIN_OPSET = 17
"""The oldest opset written: the first with ``LayerNormalization``."""

_PROTOBUF_LIMIT = 2**31 - 1  # bytes: protobuf cannot serialise a larger message



def export(
    model: Module,
    path: PathLike,
    input_shape: int | Sequence[int | None] | Sequence[Sequence[int | None]],
    *,
    opset: int = MIN_OPSET,
    dynamic_batch: bool = True,
    batch_axis: int | Sequence[int | None] | None = 0,
    input_dtype: DTypeLike | Sequence[DTypeLike | None] | None = None,
) -> onnx.ModelProto:
    """Write ``model`` in eval mode as an ONNX file; returns the ``onnx.ModelProto`` written.

    The model is copied, set to eval mode and traced: two forward passes of the copy on
    random inputs (of :data:`TRACE_BATCHES` samples) give every module's input and output
    shapes; then each module's converter adds its nodes, in the order nnkit runs them.
    Dropout is left out and BatchNorm uses its running statistics: the graph computes what
    ``model.eval()(x)`` computes. The model itself (weights, mode, caches) is not changed.
    The graph passes ``onnx.checker.check_model(full_check=True)`` before it is written, and
    the file is written atomically.

    Inputs are named ``"input"`` (``"input_0"``, ``"input_1"``... for several) and outputs
    ``"output"`` (``"output_0"``...); a :class:`~nnkit.Graph` keeps its own names. Nested
    outputs (an LSTM's ``(output, (h_n, c_n))``) become one graph output each, in order, and
    None outputs are left out. Weights keep their state-dict names where they are stored as
    they are.

    Args:
        model: the model. Every module in it needs a converter: the built-ins have one, and
            :func:`register_converter` adds one for a layer of your own.
        path: the file to write (``.onnx`` by convention).
        input_shape: the shape of one sample, without the batch axis (``(3, 32, 32)``, or
            ``16``), or a list of them for a model with several inputs. ``None`` marks a
            variable sequence length (``(None, 8)``: sequences of 8 features, of any
            length): every None axis has that one length, the graph's dimension
            ``"length"``.
        opset: the ONNX opset version, from 17 to the newest the installed onnx knows.
        dynamic_batch: leave the batch axis free (the dimension ``"batch"``), so the file
            runs on any batch size; False fixes it at 1.
        batch_axis: where the batch axis goes in each input: 0 (the default), 1 for a
            time-major sequence (T, N, F), None for an input without one (an attention
            mask (L, S)); one value for every input, or a list.
        input_dtype: the dtype of the input (or of each input, in a list): None for the
            model's floating dtype (float32, or that of its parameters); an integer dtype
            such as ``"int64"`` for token ids that go into an ``Embedding``; ``"bool"`` for
            a mask.

    Returns:
        The ONNX model, as written.

    Raises:
        ImportError: the onnx package is not installed (``pip install ".[onnx]"``).
        ExportError: a module cannot be exported (the message names it and its class), or
            the model exceeds protobuf's 2 GB limit.
        TypeError, ValueError: bad arguments; an error of the model's own forward on the
            traced inputs is raised as it is, with a note.
    """
    onnx_ = _import_onnx()
    if not isinstance(model, Module):
        raise TypeError(f"export takes an nnkit Module, got {type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, Integral):
        raise TypeError(f"opset must be an int, got {opset!r}")
    newest = int(onnx_.defs.onnx_opset_version())
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be between {MIN_OPSET} (LayerNormalization) and {newest} (the newest "
            f"this onnx {onnx_.__version__} knows), got {opset}"
        )
    if not isinstance(dynamic_batch, (bool, np.bool_)):
        raise TypeError(f"dynamic_batch must be True or False, got {dynamic_batch!r}")
    shapes = _input_shapes(input_shape)
    axes = _batch_axes(batch_axis, shapes)
    dtypes = _input_dtypes(model, input_dtype, len(shapes))
    traced = copy.deepcopy(model).eval()
    names = _input_names(traced, len(shapes))
    inputs = [Input(*spec) for spec in zip(names, shapes, axes, dtypes, strict=True)]
    batches = TRACE_BATCHES if dynamic_batch else (1, 1)
    calls, root_shapes = trace(traced, inputs, batches)
    if id(traced) not in calls:
        raise ExportError(
            f"the model ({type(model).__name__}) returned differently structured results for "
            "the two traced batches, so its outputs cannot be declared"
        )
    output_names = _output_names(traced, calls[id(traced)].outputs)

    ctx = ExportContext(traced, int(opset), calls, [*names, *output_names])
    values = [
        Value(i.name, i.shape(None if dynamic_batch else 1, None), i.dtype) for i in inputs
    ]
    outputs = [leaf for leaf in leaves(ctx.convert(traced, values)) if leaf is not None]
    _name_outputs(ctx, outputs, output_names, set(names))

    helper = onnx_.helper

    def declared(sizes: Sequence[tuple[int, ...]]) -> list[int | str | None]:
        return _declared_shape(sizes, batches if dynamic_batch else None)

    graph = helper.make_graph(
        [
            helper.make_node(
                node.op_type,
                node.inputs,
                node.outputs,
                name=node.outputs[0],
                domain=node.domain or None,
                **node.attributes,
            )
            for node in ctx.nodes()
        ],
        type(model).__name__,
        [
            helper.make_tensor_value_info(
                i.name,
                helper.np_dtype_to_tensor_dtype(i.dtype),
                declared([i.shape(b, n) for b, n in zip(batches, TRACE_LENGTHS, strict=True)]),
            )
            for i in inputs
        ],
        [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), declared(runs)
            )
            for name, value, runs in zip(
                output_names, outputs, zip(*root_shapes, strict=True), strict=True
            )
        ],
        [
            onnx_.numpy_helper.from_array(array, name)
            for name, array in ctx.initializers().items()
        ],
    )
    opsets = [helper.make_opsetid("", int(opset))]
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="nnkit",
        producer_version=__version__,
        doc_string=f"{type(model).__name__}, exported by nnkit {__version__}",
    )
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    size = proto.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise ExportError(
            f"the ONNX model of {type(model).__name__} takes {size / 2**30:.2f} GiB, more than "
            "the 2 GiB a protobuf file can hold; nnkit does not write ONNX external data"
        )
    try:
        onnx_.checker.check_model(proto, full_check=True)
    except (onnx_.checker.ValidationError, onnx_.shape_inference.InferenceError) as exc:
        raise ExportError(
            f"the ONNX graph exported from {type(model).__name__} fails onnx.checker: {exc}. "
            "A converter emitted invalid nodes: a registered converter of your own, or a "
            "built-in one (please report it)"
        ) from exc
    data = proto.SerializeToString()

    def write(file: IO[bytes]) -> None:
        file.write(data)

    atomic_write(os.fspath(path), write)
    return proto


def _import_onnx() -> Any:
    try:
        return importlib.import_module("onnx")
    except ImportError as exc:
        raise ImportError(
            "nnkit.onnx.export needs the onnx package, which is not installed; install the "
            "onnx extra from the nnkit checkout (the directory with pyproject.toml): "
            'pip install ".[onnx]"'
        ) from exc


def _is_dim(value: Any) -> bool:
    return value is None or (
        isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    )


def _input_shapes(input_shape: Any) -> list[Shape]:
    """One sample's shape per input, checked."""
    if _is_dim(input_shape):
        return [_shape(input_shape)]
    if isinstance(input_shape, Sequence) and not isinstance(input_shape, (str, bytes)):
        items = list(input_shape)
        if items and all(
            isinstance(s, Sequence) and not isinstance(s, (str, bytes)) for s in items
        ):
            return [_shape(s) for s in items]
    return [_shape(input_shape)]


def _shape(value: Any) -> Shape:
    dims = (value,) if _is_dim(value) else value
    if (
        not isinstance(dims, Sequence)
        or isinstance(dims, (str, bytes))
        or not all(_is_dim(d) for d in dims)
    ):
        raise TypeError(
            "input_shape must be one sample's shape (an int or a tuple of ints, None for a "
            f"variable length, without the batch axis) or a list of them, got {value!r}"
        )
    if any(d is not None and d < 1 for d in dims):
        raise ValueError(
            f"input_shape must hold sizes >= 1 (one sample's shape, without the batch axis), "
            f"got {value!r}"
        )
    return tuple(None if d is None else int(d) for d in dims)


def _batch_axes(given: Any, shapes: list[Shape]) -> list[int | None]:
    items = list(given) if isinstance(given, (list, tuple)) else [given] * len(shapes)
    if len(items) != len(shapes):
        raise ValueError(
            f"batch_axis lists {len(items)} axes for {len(shapes)} input(s); give one per input"
        )
    for axis, shape in zip(items, shapes, strict=True):
        if axis is not None and (
            isinstance(axis, bool) or not isinstance(axis, (int, np.integer))
            or not 0 <= axis <= len(shape)
        ):
            raise ValueError(
                f"batch_axis {axis!r} does not fit an input of sample shape {shape}: it must be "
                f"an int from 0 to {len(shape)}, or None for an input without a batch axis"
            )
    return [None if a is None else int(a) for a in items]


def _input_dtypes(model: Module, given: Any, count: int) -> list[np.dtype[Any]]:
    """The dtype of each input: the model's floating dtype, or an integer or bool one."""
    first = next(model.parameters(), None)
    own = np.dtype(np.float32) if first is None else first.data.dtype
    if isinstance(given, (list, tuple)):
        if len(given) != count:
            raise ValueError(
                f"input_dtype lists {len(given)} dtypes for {count} input(s); give one per input"
            )
        items = list(given)
    else:
        items = [given] * count
    dtypes = []
    for item in items:
        dtype = own if item is None else np.dtype(item)
        if dtype.kind == "f" and first is not None and dtype != own:
            raise ValueError(
                f"input_dtype {dtype} differs from the model's {own}: nnkit converts such "
                f"input on entry, but an ONNX graph has one input type; export with {own} "
                "(the default) and convert the data before running it"
            )
        if dtype.kind not in "fiub":
            raise TypeError(f"input_dtype must be a floating, integer or bool dtype, got {dtype}")
        dtypes.append(dtype)
    return dtypes


def _input_names(model: Module, count: int) -> list[str]:
    """A Graph's own input names, else input (input_0, input_1...)."""
    if isinstance(model, Graph):
        if len(model.inputs) != count:
            raise ValueError(
                f"the Graph has {len(model.inputs)} inputs ({', '.join(model.inputs)}), but "
                f"input_shape gives {count} shape(s)"
            )
        return list(model.inputs)
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def _output_names(model: Module, outputs: tuple[SpecTree | Opaque, ...]) -> list[str]:
    """One name per array the model returns (None left out): a Graph's own output names
    (``"lstm:1.0"``, ``"lstm:1.1"`` for the elements of a tuple-valued one), else output
    (output_0, output_1... for several)."""
    counts = [len([leaf for leaf in leaves(spec) if leaf is not None]) for spec in outputs]
    if isinstance(model, Graph) and len(model.outputs) == len(outputs):
        names = []
        for name, count in zip(model.outputs, counts, strict=True):
            names += [name] if count == 1 else [f"{name}.{i}" for i in range(count)]
        return names
    total = sum(counts)
    return ["output"] if total == 1 else [f"output_{i}" for i in range(total)]


def _name_outputs(
    ctx: ExportContext, outputs: Sequence[ValueTree], names: Sequence[str], inputs: set[str]
) -> None:
    """Give each output value its graph output name: rename the node output that computes it,
    or add an Identity (for a graph input, a constant, or a tensor that is two outputs)."""
    renamed: dict[str, str] = {}
    for value, name in zip(outputs, names, strict=True):
        if not isinstance(value, Value):
            raise ExportError(f"the model's output {name} is not an array")
        current = renamed.get(value.name, value.name)
        if current in renamed.values() or current in inputs or not ctx.produced_by_node(current):
            ctx.add_node("Identity", [current], [name])
        else:
            ctx.rename(current, name)
            renamed[value.name] = name


def _declared_shape(
    runs: Sequence[tuple[int, ...]], batches: tuple[int, int] | None
) -> list[int | str | None]:
    """A tensor's declared dims from its sizes in the traced passes: a fixed size,
    ``"batch"`` (when ``batches`` is given), ``"length"``, or None (unknown) for an axis that
    follows both (``N * T``, say)."""
    dims: list[int | str | None] = []
    for sizes in zip(*runs, strict=True):
        if len(set(sizes)) == 1:
            dims.append(sizes[0])
        elif batches is not None and tuple(sizes) == batches:
            dims.append("batch")
        elif tuple(sizes) == TRACE_LENGTHS:
            dims.append("length")
        else:
            dims.append(None)
    return dims
