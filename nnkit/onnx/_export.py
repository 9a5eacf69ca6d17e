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
from nnkit.module import Array, Module, add_note
from nnkit.onnx._context import ExportContext, ExportError, TensorSpec, Value, _Call
from nnkit.serialization.archive import PathLike, atomic_write

if TYPE_CHECKING:
    import onnx

__all__ = ["export"]

MIN_OPSET = 17
"""The oldest opset written: the first with ``LayerNormalization``."""

TRACE_BATCHES = (2, 3)
"""The batch sizes of the two traced forward passes. Axes whose size differs between them
follow the batch size, and the graph keeps them free. ``dynamic_batch=False`` fixes the batch
at 1 and traces batches of 1 and 2 instead."""

_FIXED_TRACE_BATCHES = (1, 2)

_PROTOBUF_LIMIT = 2**31 - 1  # bytes: protobuf cannot serialise a larger message


def export(
    model: Module,
    path: PathLike,
    input_shape: int | Sequence[int] | Sequence[Sequence[int]],
    *,
    opset: int = MIN_OPSET,
    dynamic_batch: bool = True,
    input_dtype: DTypeLike | Sequence[DTypeLike | None] | None = None,
) -> onnx.ModelProto:
    """Write ``model`` in eval mode as an ONNX file; returns the ``onnx.ModelProto`` written.

    The model is copied, set to eval mode and traced: two forward passes of the copy on
    batches of random inputs (of :data:`TRACE_BATCHES` samples) give every module's input and
    output shapes; then each module's converter adds its nodes, in the order nnkit runs them.
    Dropout is left out, BatchNorm uses its running statistics: the graph computes what
    ``model.eval()(x)`` computes. The model itself (weights, mode, caches) is not changed.
    The graph passes ``onnx.checker.check_model(full_check=True)`` before it is written, and
    the file is written atomically.

    Inputs are named ``"input"`` (``"input_0"``, ``"input_1"``... for several) and outputs
    ``"output"`` (``"output_0"``...); a :class:`~nnkit.Graph` keeps its own input and output
    names. Weights keep their state-dict names where they are stored unchanged.

    Args:
        model: the model. Every module in it needs a converter: the built-ins have one, and
            :func:`register_converter` adds one for a layer of your own.
        path: the file to write (``.onnx`` by convention).
        input_shape: the shape of one sample, without the batch axis (``(3, 32, 32)``, or
            ``16``), or a list of them for a model with several inputs.
        opset: the ONNX opset version, from 17 to the newest the installed onnx knows.
        dynamic_batch: leave the batch axis free (the dimension ``"batch"``), so the file
            runs on any batch size; False fixes it at 1.
        input_dtype: the dtype of the input (or of each input, in a list): None for the
            model's floating dtype (float32, or that of its parameters), or an integer dtype
            such as ``"int64"`` for token ids that go into an ``Embedding``.

    Returns:
        The ONNX model, as written.

    Raises:
        ImportError: the onnx package is not installed (``pip install ".[onnx]"``).
        ExportError: a module cannot be exported (the message names it and its class), or
            the model exceeds protobuf's 2 GB limit.
        TypeError, ValueError: bad arguments; an error of the model's own forward on the
            example batch is raised as it is, with a note.
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
    dtypes = _input_dtypes(model, input_dtype, len(shapes))
    traced = copy.deepcopy(model).eval()
    batches = TRACE_BATCHES if dynamic_batch else _FIXED_TRACE_BATCHES
    calls, root_shapes = _trace(traced, shapes, dtypes, batches)
    input_names, output_names = _io_names(traced, len(shapes), len(root_shapes[0]))

    ctx = ExportContext(traced, int(opset), calls, [*input_names, *output_names])
    inputs = [
        Value(name, (None, *shape), dtype)
        for name, shape, dtype in zip(input_names, shapes, dtypes, strict=True)
    ]
    outputs = ctx.convert(traced, inputs)
    _name_outputs(ctx, outputs, output_names, set(input_names))

    helper = onnx_.helper
    batch = "batch" if dynamic_batch else batches[0]
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
                name, helper.np_dtype_to_tensor_dtype(dtype), [batch, *shape]
            )
            for name, shape, dtype in zip(input_names, shapes, dtypes, strict=True)
        ],
        [
            helper.make_tensor_value_info(
                name,
                helper.np_dtype_to_tensor_dtype(value.dtype),
                _declared_shape(runs, batches, dynamic_batch),
            )
            for name, value, runs in zip(
                output_names, outputs, zip(*root_shapes, strict=True), strict=True
            )
        ],
        [onnx_.numpy_helper.from_array(array, name) for name, array in
         ctx.initializers().items()],
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


def _input_shapes(input_shape: Any) -> list[tuple[int, ...]]:
    """One sample's shape per input, checked."""
    if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
        return [_shape(input_shape)]
    if isinstance(input_shape, Sequence) and not isinstance(input_shape, (str, bytes)):
        items = list(input_shape)
        if items and all(
            isinstance(s, Sequence) and not isinstance(s, (str, bytes)) for s in items
        ):
            return [_shape(s) for s in items]
    return [_shape(input_shape)]


def _shape(value: Any) -> tuple[int, ...]:
    dims = (value,) if isinstance(value, (int, np.integer)) else value
    if not isinstance(dims, Sequence) or isinstance(dims, (str, bytes)) or any(
        isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in dims
    ):
        raise TypeError(
            "input_shape must be one sample's shape (an int or a tuple of ints, without the "
            f"batch axis) or a list of them, got {value!r}"
        )
    if any(d < 1 for d in dims):
        raise ValueError(
            f"input_shape must hold sizes >= 1 (one sample's shape, without the batch axis), "
            f"got {value!r}"
        )
    return tuple(int(d) for d in dims)


def _input_dtypes(model: Module, given: Any, count: int) -> list[np.dtype[Any]]:
    """The dtype of each input: the model's floating dtype, or an integer dtype given."""
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
        if dtype.kind not in "fiu":
            raise TypeError(
                f"input_dtype must be a floating or integer dtype, got {dtype}"
            )
        dtypes.append(dtype)
    return dtypes


def _example(shape: tuple[int, ...], dtype: np.dtype[Any], rng: np.random.Generator) -> Array:
    """An example batch: standard normal floats, or zeros for indices (always in range)."""
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype)


def _spec(value: Any) -> TensorSpec | None:
    return TensorSpec(value.shape, value.dtype) if isinstance(value, np.ndarray) else None


def _outputs(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def _merge(runs: Sequence[TensorSpec | None]) -> TensorSpec | None:
    """One spec from the same array in each traced run: None for axes whose size changed."""
    first = runs[0]
    if first is None or any(r is None or len(r.shape) != len(first.shape) for r in runs):
        return None
    shape = tuple(
        sizes[0] if len(set(sizes)) == 1 else None
        for sizes in zip(*(r.shape for r in runs if r is not None), strict=True)
    )
    return TensorSpec(shape, first.dtype)


def _trace(
    model: Module,
    shapes: list[tuple[int, ...]],
    dtypes: list[np.dtype[Any]],
    batches: tuple[int, ...],
) -> tuple[dict[int, _Call], list[list[tuple[int, ...]]]]:
    """Run ``model`` (a copy in eval mode) on example batches, recording what every module
    received and returned; returns the merged specs by module id and the model's output
    shapes in each run."""
    runs: list[dict[int, tuple[tuple[Any, ...], tuple[Any, ...]]]] = []
    current: dict[int, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
    for module in model.modules():

        def recorded(*args: Any, _forward: Any = module.forward, _id: int = id(module),
                     **kwargs: Any) -> Any:
            result = _forward(*args, **kwargs)
            current.setdefault(_id, (args, _outputs(result)))
            return result

        setattr(module, "forward", recorded)  # noqa: B010 - an instance attribute, on a copy
    rng = np.random.default_rng(0)
    root_shapes: list[list[tuple[int, ...]]] = []
    for batch in batches:
        current.clear()
        examples = [
            _example((batch, *shape), dtype, rng) for shape, dtype in zip(shapes, dtypes,
                                                                            strict=True)
        ]
        try:
            result = model(*examples)
        except Exception as exc:
            described = ", ".join(f"{e.shape} {e.dtype}" for e in examples)
            add_note(
                exc,
                f"raised by the model's forward while tracing it for ONNX export, on example "
                f"input of shape and dtype {described} (one sample's shape is input_shape, "
                "and token ids need input_dtype='int64')",
            )
            raise
        outputs = _outputs(result)
        bad = [type(o).__name__ for o in outputs if not isinstance(o, np.ndarray)]
        if bad:
            raise ExportError(
                f"the model ({type(model).__name__}) returned {', '.join(bad)} where an ONNX "
                "graph needs arrays: a model's outputs must be arrays or a tuple of arrays"
            )
        root_shapes.append([o.shape for o in outputs])
        runs.append(dict(current))
    calls = {}
    for key, (args, outs) in runs[0].items():
        others = [run.get(key) for run in runs]
        if any(other is None or len(other[0]) != len(args) or len(other[1]) != len(outs)
               for other in others):
            continue  # ran differently in the runs: its converter will say it did not run
        calls[key] = _Call(
            tuple(_merge([_spec(o[0][i]) for o in others if o]) for i in range(len(args))),
            tuple(_merge([_spec(o[1][i]) for o in others if o]) for i in range(len(outs))),
        )
    return calls, root_shapes


def _io_names(model: Module, inputs: int, outputs: int) -> tuple[list[str], list[str]]:
    """The graph's input and output names: a Graph's own, else input/output(_i)."""
    if isinstance(model, Graph):
        return list(model.inputs), list(model.outputs)

    def numbered(base: str, count: int) -> list[str]:
        return [base] if count == 1 else [f"{base}_{i}" for i in range(count)]

    return numbered("input", inputs), numbered("output", outputs)


def _name_outputs(
    ctx: ExportContext, outputs: Sequence[Value], names: Sequence[str], inputs: set[str]
) -> None:
    """Give each output value its graph output name: rename the node output that computes it,
    or add an Identity (for a graph input, a constant, or a tensor that is two outputs)."""
    renamed: dict[str, str] = {}
    for value, name in zip(outputs, names, strict=True):
        current = renamed.get(value.name, value.name)
        if current in renamed.values() or current in inputs or not ctx.produced_by_node(current):
            ctx.add_node("Identity", [current], [name])
        else:
            ctx.rename(current, name)
            renamed[value.name] = name


def _declared_shape(
    runs: Sequence[tuple[int, ...]], batches: tuple[int, ...], dynamic_batch: bool
) -> list[int | str | None]:
    """An output's declared dims: fixed sizes, ``"batch"`` for the batch axis, None (unknown)
    for another axis that follows the batch size (``N * T``, say)."""
    if not dynamic_batch:
        return list(runs[0])
    dims: list[int | str | None] = []
    for sizes in zip(*runs, strict=True):
        if len(set(sizes)) == 1:
            dims.append(sizes[0])
        elif tuple(sizes) == batches:
            dims.append("batch")
        else:
            dims.append(None)
    return dims
