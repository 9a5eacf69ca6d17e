"""The export context (the ONNX graph being built) and the registry of converters.

A converter turns one module into ONNX nodes::

    def convert(ctx: ExportContext, module: MyLayer, inputs: tuple[Value, ...]) -> str:
        weight = ctx.constant(module.weight.data, "weight")
        return ctx.op("MatMul", inputs[0], weight)

It receives the module, the ONNX values of its inputs (a name, and the shape and dtype that
nnkit's own forward saw, with ``None`` for the axes that follow the batch size or the
sequence length), adds nodes and constants through ``ctx``, and returns the names (or
values) of its outputs, one per output of the module's ``forward``, nested as ``forward``
nests them (an LSTM returns ``(output, (h_n, c_n))``; ``None`` where ``forward`` returns
None). A container's converter calls :meth:`ExportContext.convert` on its children.
Nothing here imports onnx: the context records plain nodes, and ``export`` builds the
protobuf from them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from nnkit.module import Array, Module, add_note

__all__ = [
    "ConverterResult",
    "ExportContext",
    "ExportError",
    "Opaque",
    "SpecTree",
    "TensorSpec",
    "Value",
    "ValueTree",
    "find_converter",
    "register_converter",
]

M = TypeVar("M", bound=Module)


class ExportError(Exception):
    """A model cannot be exported to ONNX. The message names the module by its dotted path in
    the model and its class, and says what to do."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where  # the module's dotted path, once known


@dataclass(frozen=True)
class TensorSpec:
    """The shape and dtype of an array that nnkit's forward produced during the export's trace.

    ``shape`` has ``None`` for each axis whose size followed the batch size or the sequence
    length (the batch axis, a time axis, or a merged axis such as ``N * T``): the exported
    graph must not fix it.
    """

    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class Value:
    """A tensor of the ONNX graph: its name, and its shape and dtype as nnkit computes them."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]

    @property
    def rank(self) -> int:
        """The number of axes."""
        return len(self.shape)


ValueTree = Value | None | tuple["ValueTree", ...]
"""A value, None, or a tuple of them: what one argument or output of a forward is."""

ConverterResult = str | Value | None | Sequence[Any]
"""What a converter returns: the output's name or value, or one per output of ``forward``
(a name, a value, None, or a tuple of them where ``forward`` returns a nested tuple)."""

Converter = Callable[["ExportContext", Any, tuple[Any, ...]], ConverterResult]

SpecTree = TensorSpec | None | tuple["SpecTree", ...]


@dataclass(frozen=True)
class Opaque:
    """A traced argument that is neither an array nor None nor a tuple (an option flag)."""

    value: Any

_REGISTRY: dict[type, Converter] = {}


@overload
def register_converter(
    cls: type[M], fn: None = None, *, replace: bool = False
) -> Callable[
    [Callable[[ExportContext, M, tuple[Any, ...]], ConverterResult]],
    Callable[[ExportContext, M, tuple[Any, ...]], ConverterResult],
]: ...
@overload
def register_converter(
    cls: type[M],
    fn: Callable[[ExportContext, M, tuple[Any, ...]], ConverterResult],
    *,
    replace: bool = False,
) -> Callable[[ExportContext, M, tuple[Any, ...]], ConverterResult]: ...
def register_converter(
    cls: type[M],
    fn: Callable[[ExportContext, M, tuple[Any, ...]], ConverterResult] | None = None,
    *,
    replace: bool = False,
) -> Any:
    """Register ``fn(ctx, module, inputs) -> outputs`` as the ONNX converter of ``cls``.

    Use it as a call, ``register_converter(MyLayer, convert)``, or as a decorator,
    ``@register_converter(MyLayer)``; both return ``fn``. A subclass of ``cls`` uses the same
    converter as long as it does not override ``forward``; one that does needs its own.

    Args:
        cls: a Module subclass.
        fn: the converter (see ``nnkit.onnx`` and docs/interop.md).
        replace: allow replacing a converter already registered for ``cls`` (a built-in's,
            say); without it that is a ValueError, so two registrations cannot silently race.

    Raises:
        TypeError: ``cls`` is not a Module subclass, or ``fn`` is not callable.
        ValueError: ``cls`` has a converter already and ``replace`` is False.
    """
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register_converter takes a Module subclass, got {cls!r}")

    def register(
        function: Callable[[ExportContext, M, tuple[Any, ...]], ConverterResult],
    ) -> Callable[[ExportContext, M, tuple[Any, ...]], ConverterResult]:
        if not callable(function):
            raise TypeError(
                f"register_converter({cls.__name__}, fn): fn must be callable "
                f"(ctx, module, inputs) -> outputs, got {function!r}"
            )
        if cls in _REGISTRY and not replace:
            raise ValueError(
                f"{cls.__name__} already has an ONNX converter ({_REGISTRY[cls].__qualname__}); "
                "pass replace=True to replace it"
            )
        _REGISTRY[cls] = function
        return function

    return register if fn is None else register(fn)


def find_converter(cls: type) -> tuple[Converter | None, str]:
    """The converter for ``cls`` and, when there is none, the reason to put in the error.

    The class's own registration wins; else that of the nearest base class whose ``forward``
    the class inherits unchanged (a subclass that only adds constructor arguments computes
    what its base computes, one that overrides ``forward`` may not).
    """
    if cls in _REGISTRY:
        return _REGISTRY[cls], ""
    for base in cls.__mro__[1:]:
        if base in _REGISTRY:
            if getattr(cls, "forward", None) is getattr(base, "forward", None):
                return _REGISTRY[base], ""
            return None, (
                f"{cls.__name__} subclasses {base.__name__} but overrides forward, so "
                f"{base.__name__}'s converter may not compute what it does"
            )
    return None, f"no ONNX converter is registered for {cls.__name__}"


class _Call(NamedTuple):
    """What the trace saw of one module: its arguments' (positional, then by keyword) and
    outputs' specs."""

    inputs: tuple[SpecTree | Opaque, ...]
    outputs: tuple[SpecTree | Opaque, ...]
    keywords: dict[str, SpecTree | Opaque]


class _Node(NamedTuple):
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, Any]
    domain: str


class ExportContext:
    """The ONNX graph under construction, handed to every converter.

    Attributes:
        opset: the ONNX opset version being written (converters may choose ops by it).
    """

    def __init__(
        self, root: Module, opset: int, calls: Mapping[int, _Call], reserved: Sequence[str]
    ) -> None:
        self.opset = opset
        self._paths = {id(module): path for path, module in root.named_modules()}
        self._calls = calls
        self._nodes: list[_Node] = []
        self._initializers: dict[str, Array] = {}
        self._taken: set[str] = set(reserved)
        self._stack: list[str] = []

    # -- building blocks ---------------------------------------------------------------------
    def op(self, op_type: str, *inputs: str | Value | None, **attributes: Any) -> str:
        """Add an ``op_type`` node with one output; returns the output's name.

        ``inputs`` are names or values (``None`` or ``""`` for an optional input left out);
        ``attributes`` are the node's ONNX attributes (ints, floats, strings, lists of them).
        """
        return self.op_multi(op_type, inputs, 1, **attributes)[0]

    def op_multi(
        self,
        op_type: str,
        inputs: Sequence[str | Value | None],
        outputs: int,
        *,
        domain: str = "",
        **attributes: Any,
    ) -> tuple[str, ...]:
        """Add an ``op_type`` node with ``outputs`` outputs; returns their names."""
        names = tuple(self.unique_name(f"{self._where()}/{op_type}") for _ in range(outputs))
        self.add_node(op_type, inputs, names, domain=domain, **attributes)
        return names

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[str | Value | None],
        outputs: Sequence[str],
        *,
        domain: str = "",
        **attributes: Any,
    ) -> None:
        """Add a node whose output names are given (each made once: see :meth:`unique_name`)."""
        names = [
            "" if i is None else i.name if isinstance(i, Value) else str(i) for i in inputs
        ]
        while names and not names[-1]:  # trailing optional inputs are left out altogether
            names.pop()
        self._nodes.append(_Node(op_type, names, list(outputs), attributes, domain))

    def constant(self, value: ArrayLike, name: str, dtype: DTypeLike | None = None) -> str:
        """Add ``value`` as an initializer named ``"<module path>.<name>"``; returns the name.

        Weights keep the names of the state dict (``"0.weight"``) where a layer stores them
        as they are. ``dtype`` converts the value first (e.g. a scalar to the input's dtype).
        """
        array = np.array(value, dtype=dtype, copy=True, order="C")
        where = self._stack[-1] if self._stack else ""
        full = self.unique_name(f"{where}.{name}" if where else name)
        self._initializers[full] = array
        return full

    def int64s(self, values: Sequence[int], name: str = "shape") -> str:
        """A constant 1-D int64 tensor (a shape, axes, starts): its name."""
        return self.constant(np.asarray([int(v) for v in values], np.int64), name)

    def scalar(self, value: float, dtype: DTypeLike, name: str = "const") -> str:
        """A constant 0-d tensor of ``dtype``, to combine with a tensor of that dtype."""
        return self.constant(np.asarray(value, dtype=dtype), name)

    def cast(self, value: Value, dtype: DTypeLike) -> str:
        """``value`` converted to ``dtype`` (a Cast node, or the value itself if it has it)."""
        target = np.dtype(dtype)
        if value.dtype == target:
            return value.name
        from onnx import helper

        return self.op("Cast", value, to=int(helper.np_dtype_to_tensor_dtype(target)))

    def unique_name(self, hint: str) -> str:
        """``hint``, or ``hint_1``, ``hint_2``...: a name not yet used in the graph."""
        name, k = hint, 0
        while name in self._taken:
            k += 1
            name = f"{hint}_{k}"
        self._taken.add(name)
        return name

    # -- what the trace saw ------------------------------------------------------------------
    def input_specs(self, module: Module) -> tuple[SpecTree | Opaque, ...]:
        """The shapes and dtypes of the arguments nnkit's forward of ``module`` received
        (nested as they were; an :class:`Opaque` for an option such as a flag)."""
        return self._call(module).inputs

    def keyword_specs(self, module: Module) -> dict[str, SpecTree | Opaque]:
        """The arguments nnkit's forward of ``module`` received by keyword, as traced."""
        return self._call(module).keywords

    def output_spec(self, module: Module, index: int = 0) -> TensorSpec:
        """The shape and dtype of output ``index`` of ``module``'s forward, as traced."""
        spec = self._call(module).outputs[index]
        if not isinstance(spec, TensorSpec):
            raise ExportError(
                f"output {index} of its forward is not an array, so it has no ONNX tensor"
            )
        return spec

    def _call(self, module: Module) -> _Call:
        call = self._calls.get(id(module))
        if call is None:
            raise ExportError(
                f"{self.describe(module)} did not run in the model's forward pass, so its "
                "shapes are unknown; export only modules that the model runs",
                self._paths.get(id(module), ""),
            )
        return call

    # -- the tree ----------------------------------------------------------------------------
    def describe(self, module: Module) -> str:
        """``"2.body.0" (Dense)``, or ``the model (Sequential)`` for the root."""
        path = self._paths.get(id(module))
        name = type(module).__name__
        if path is None:
            return f"a module outside the model ({name})"
        return f"the model ({name})" if path == "" else f'"{path}" ({name})'

    def convert(self, module: Module, inputs: Sequence[ValueTree]) -> tuple[ValueTree, ...]:
        """Convert ``module`` (a child of the model) applied to ``inputs``; returns one value
        per output of its forward (nested as its forward nests them), with the shapes and
        dtypes its forward produced.

        Raises:
            ExportError: the module has no converter, or its converter cannot export it; the
                message names it by path and class.
        """
        if id(module) not in self._paths:
            raise ExportError(f"{self.describe(module)} is not part of the exported model")
        converter, reason = find_converter(type(module))
        if converter is None:
            cls = type(module).__name__
            raise ExportError(
                f"cannot export {self.describe(module)}: {reason}. Write a converter and "
                f"register it with nnkit.onnx.register_converter({cls}, fn) (docs/interop.md)",
                self._paths[id(module)],
            )
        call = self._call(module)
        self._stack.append(self._paths[id(module)])
        try:
            result = converter(self, module, tuple(inputs))
            items = (
                (result,) if isinstance(result, (str, Value)) or result is None
                else tuple(result)
            )
            if len(items) != len(call.outputs):
                raise ExportError(
                    f"its converter returned {len(items)} output(s), but its forward returned "
                    f"{len(call.outputs)}"
                )
            return tuple(_values(item, spec, str(i)) for i, (item, spec) in
                         enumerate(zip(items, call.outputs, strict=True)))
        except ExportError as exc:
            if exc.where is not None:
                raise
            raise ExportError(
                f"cannot export {self.describe(module)}: {exc}", self._paths[id(module)]
            ) from exc
        except Exception as exc:
            if not getattr(exc, "_nnkit_export_noted", False):
                add_note(exc, f"raised while exporting {self.describe(module)} to ONNX")
                exc._nnkit_export_noted = True  # type: ignore[attr-defined]
            raise
        finally:
            self._stack.pop()

    @contextlib.contextmanager
    def scope(self, module: Module) -> Iterator[None]:
        """Name the constants and nodes added inside the ``with`` block after ``module`` (a
        part of the model), as if its own converter added them: a converter of a composite
        module uses it for the parts it converts itself, so their weights keep their
        state-dict names (``"layers.0.linear1.weight"``)."""
        if id(module) not in self._paths:
            raise ExportError(f"{self.describe(module)} is not part of the exported model")
        self._stack.append(self._paths[id(module)])
        try:
            yield
        finally:
            self._stack.pop()

    def _where(self) -> str:
        return self._stack[-1] if self._stack and self._stack[-1] else "model"

    # -- for export ----------------------------------------------------------------------------
    def nodes(self) -> Iterator[_Node]:
        """The nodes in the order they were added (a topological order)."""
        yield from self._nodes

    def initializers(self) -> dict[str, Array]:
        """The constants by name."""
        return self._initializers

    def produced_by_node(self, name: str) -> bool:
        """True if ``name`` is the output of a node (not a graph input or a constant)."""
        return any(name in node.outputs for node in self._nodes)

    def rename(self, old: str, new: str) -> None:
        """Rename the tensor ``old`` to ``new`` (not yet used) in every node."""
        for node in self._nodes:
            node.inputs[:] = [new if n == old else n for n in node.inputs]
            node.outputs[:] = [new if n == old else n for n in node.outputs]


def _values(item: Any, spec: SpecTree | Opaque, where: str) -> ValueTree:
    """A converter's output ``item`` (a name, a value, None or a tuple of them) matched with
    the traced output ``spec``: the value tree, or ExportError where they differ."""
    if isinstance(spec, TensorSpec):
        if isinstance(item, Value):
            return Value(item.name, spec.shape, spec.dtype)
        if isinstance(item, str) and item:
            return Value(item, spec.shape, spec.dtype)
        raise ExportError(
            f"its converter returned {item!r} for output {where}, where forward returned an "
            "array: return the tensor's name or Value"
        )
    if spec is None:
        if item is not None:
            raise ExportError(
                f"its converter returned {item!r} for output {where}, where forward returned "
                "None"
            )
        return None
    if isinstance(spec, tuple):
        if not isinstance(item, (tuple, list)) or len(item) != len(spec):
            raise ExportError(
                f"its converter returned {item!r} for output {where}, where forward returned a "
                f"tuple of {len(spec)}"
            )
        return tuple(
            _values(i, s, f"{where}.{k}") for k, (i, s) in enumerate(zip(item, spec, strict=True))
        )
    raise ExportError(
        f"output {where} of its forward is a {type(spec.value).__name__}, not an array, so "
        "it has no ONNX tensor"
    )
