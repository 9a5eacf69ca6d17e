"""``export``: trace the model, convert it module by module, check and write the ONNX file."""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Sequence
from numbers import Integral
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from nnkit._version import __version__
from nnkit.graph import Graph
from nnkit.module import Array, Module, add_note
from nnkit.onnx._context import (
    ExportContext,
    ExportError,
    Opaque,
    SpecTree,
    TensorSpec,
    Value,
    ValueTree,
    _Call,
)
from nnkit.serialization.archive import PathLike, atomic_write

if TYPE_CHECKING:
    import onnx

__all__ = ["MIN_OPSET", "TRACE_BATCHES", "TRACE_LENGTHS", "export"]

MIN_OPSET = 17
"""The oldest opset written: the first with ``LayerNormalization``."""

TRACE_BATCHES = (2, 3)
"""The batch sizes of the two traced forward passes. Axes whose size differs between them
follow the batch size, and the graph keeps them free. ``dynamic_batch=False`` traces both
passes at batch 1 instead, and the graph is fixed to it."""

TRACE_LENGTHS = (4, 2)
"""The sizes of the axes given as None in ``input_shape`` (a variable sequence length) in the
two traced passes; chosen so that neither they nor their products and sums with the batch
sizes coincide between the passes."""

_PROTOBUF_LIMIT = 2**31 - 1  # bytes: protobuf cannot serialise a larger message

Shape = tuple[int | None, ...]


class _Input(NamedTuple):
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
    inputs = [_Input(*spec) for spec in zip(names, shapes, axes, dtypes, strict=True)]
    batches = TRACE_BATCHES if dynamic_batch else (1, 1)
    calls, root_shapes = _trace(traced, inputs, batches)
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
    outputs = [leaf for leaf in _leaves(ctx.convert(traced, values)) if leaf is not None]
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


def _trace(
    model: Module, inputs: list[_Input], batches: tuple[int, int]
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
        leaves = _leaves(_outputs(result))
        bad = [type(o).__name__ for o in leaves if o is not None and not isinstance(o,
                                                                                  np.ndarray)]
        if bad:
            raise ExportError(
                f"the model ({type(model).__name__}) returned {', '.join(bad)} where an ONNX "
                "graph needs arrays: a model's outputs must be arrays or tuples of arrays"
            )
        root_shapes.append([o.shape for o in leaves if o is not None])
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


def _leaves(tree: Any) -> list[Any]:
    """The leaves of nested tuples, in order."""
    if isinstance(tree, tuple):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


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
    counts = [len([leaf for leaf in _leaves(spec) if leaf is not None]) for spec in outputs]
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
