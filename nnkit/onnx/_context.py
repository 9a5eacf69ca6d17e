"""The export context (the ONNX graph being built) and the registry of converters.

A converter turns one module into ONNX nodes::

    def convert(ctx: ExportContext, module: MyLayer, inputs: tuple[Value, ...]) -> str:
        weight = ctx.constant(module.weight.data, "weight")
        return ctx.op("MatMul", inputs[0], weight)

It receives the module, the ONNX values of its inputs (a name, and the shape and dtype that
nnkit's own forward saw, with ``None`` for the batch axis), adds nodes and constants through
``ctx``, and returns the names (or values) of its outputs, one per output of the module's
``forward``. A container's converter calls :meth:`ExportContext.convert` on its children.
Nothing here imports onnx: the context records plain nodes, and ``export`` builds the
protobuf from them.
"""

from __future__ import annotations

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
    "TensorSpec",
    "Value",
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


class TensorSpec(NamedTuple):
    """The shape and dtype of an array that nnkit's forward produced during the export's trace.

    ``shape`` has ``None`` for each axis whose size followed the batch size (the batch axis,
    or a merged axis such as ``N * T``): the exported graph must not fix it.
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


ConverterResult = str | Value | Sequence[str | Value]
"""What a converter returns: the output's name or value, or one per output of ``forward``."""

Converter = Callable[["ExportContext", Any, tuple[Value, ...]], ConverterResult]

_REGISTRY: dict[type, Converter] = {}


@overload
def register_converter(
    cls: type[M], fn: None = None, *, replace: bool = False
) -> Callable[
    [Callable[[ExportContext, M, tuple[Value, ...]], ConverterResult]],
    Callable[[ExportContext, M, tuple[Value, ...]], ConverterResult],
]: ...
@overload
def register_converter(
    cls: type[M],
    fn: Callable[[ExportContext, M, tuple[Value, ...]], ConverterResult],
    *,
    replace: bool = False,
) -> Callable[[ExportContext, M, tuple[Value, ...]], ConverterResult]: ...
def register_converter(
    cls: type[M],
    fn: Callable[[ExportContext, M, tuple[Value, ...]], ConverterResult] | None = None,
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
        function: Callable[[ExportContext, M, tuple[Value, ...]], ConverterResult],
    ) -> Callable[[ExportContext, M, tuple[Value, ...]], ConverterResult]:
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
    """What the trace saw of one module: its inputs' and outputs' specs (None: not an array)."""

    inputs: tuple[TensorSpec | None, ...]
    outputs: tuple[TensorSpec | None, ...]


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
    def input_specs(self, module: Module) -> tuple[TensorSpec | None, ...]:
        """The shapes and dtypes of the inputs nnkit's forward of ``module`` received."""
        return self._call(module).inputs

    def output_spec(self, module: Module, index: int = 0) -> TensorSpec:
        """The shape and dtype of output ``index`` of ``module``'s forward, as traced."""
        spec = self._call(module).outputs[index]
        if spec is None:
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

    def convert(self, module: Module, inputs: Sequence[Value]) -> tuple[Value, ...]:
        """Convert ``module`` (a child of the model) applied to ``inputs``; returns one value
        per output of its forward, with the shapes and dtypes its forward produced.

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
            names = _names(result)
            if len(names) != len(call.outputs):
                raise ExportError(
                    f"its converter returned {len(names)} output(s), but its forward returned "
                    f"{len(call.outputs)}"
                )
            values = []
            for index, (name, spec) in enumerate(zip(names, call.outputs, strict=True)):
                if spec is None:
                    raise ExportError(f"output {index} of its forward is not an array")
                values.append(Value(name, spec.shape, spec.dtype))
            return tuple(values)
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


def _names(result: ConverterResult) -> list[str]:
    """A converter's result as a list of tensor names."""
    items: Sequence[str | Value]
    items = [result] if isinstance(result, (str, Value)) else list(result)
    names = []
    for item in items:
        if isinstance(item, Value):
            names.append(item.name)
        elif isinstance(item, str) and item:
            names.append(item)
        else:
            raise ExportError(
                f"its converter must return tensor names or Values, got {item!r} in {result!r}"
            )
    return names
