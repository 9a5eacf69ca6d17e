"""Module: the base class of every layer and container.

The contract (docs/architecture.md states it in full)::

    y  = module.forward(x)     # also module(x); caches what backward needs
    dx = module.backward(dy)   # returns dL/dx and ADDS dL/dparam into each param.grad

A module owns its parameters, its cache and its gradients. Parameters are discovered by
walking the module's attributes in insertion order: a :class:`Parameter` is yielded, a
:class:`Module` is recursed into, and lists, tuples and dicts of them are searched by index
or key.
No registration call is needed, and a parameter reachable twice is yielded once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray
from typing_extensions import Self

from nnkit.parameter import Parameter

__all__ = ["Module", "add_note", "as_float_array"]

Array = NDArray[Any]


def as_float_array(x: Any, dtype: DTypeLike | None = None) -> Array:
    """Return ``x`` as a floating ndarray without copying when it already is one.

    ``dtype`` None keeps a floating input's dtype and turns integer and bool input into
    float32; otherwise the result has ``dtype`` (so float64 data entering a float32 model is
    computed in float32, never the other way round). Non-numeric input raises TypeError.
    """
    array: Array = x if type(x) is np.ndarray else np.asarray(x)
    kind = array.dtype.kind
    if kind not in "fiub":
        raise TypeError(
            f"expected a numeric array (float, int or bool), got dtype {array.dtype}; "
            "convert the data to numbers first"
        )
    if dtype is None:
        return array if kind == "f" else array.astype(np.float32)
    return array if array.dtype == dtype else array.astype(dtype)


def add_note(exc: BaseException, note: str) -> None:
    """Attach ``note`` to ``exc`` (``add_note`` on Python 3.11+, the message before that)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):  # pragma: no cover - 3.10
        exc.args = (f"{exc.args[0]}\n{note}",)


class Module:
    """Base class of layers and containers.

    Subclasses implement :meth:`forward` and :meth:`backward` and keep their own cache; layers
    with constructor arguments implement :meth:`get_config`, which also drives ``repr``.

    Attributes:
        training: True in training mode (the default), False after :meth:`eval`.
    """

    training: bool

    def __init__(self) -> None:
        self.training = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that redefines backward but not accumulate_grad must not inherit a
        # shortcut written for its parent's backward (a Dense or Sequential subclass that scales
        # its gradient, say): it gets the default, which calls its own backward.
        if "backward" in cls.__dict__ and "accumulate_grad" not in cls.__dict__:
            cls.accumulate_grad = Module.accumulate_grad  # type: ignore[method-assign]

    # -- the contract --------------------------------------------------------------------
    def forward(self, x: Array) -> Array:
        """Compute the output for a batch ``x`` and cache what :meth:`backward` needs."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, grad_out: Array) -> Array:
        """Return dL/dx given dL/dy for the most recent forward; add dL/dparam to grads."""
        raise NotImplementedError(f"{type(self).__name__} must implement backward(grad_out)")

    def accumulate_grad(self, grad_out: Array) -> None:
        """Add dL/dparam for the most recent forward into each ``param.grad``, skipping dL/dx.

        The parameter gradients are exactly those of :meth:`backward`. Use it when the input
        gradient is not needed, as in an ordinary training step where the input is data:
        ``Dense`` then skips its largest matrix product. This is Torch7's
        ``accGradParameters``. The default calls :meth:`backward` and drops dx; layers
        override it when skipping dx saves work, and containers pass it to their first child.
        """
        self.backward(grad_out)

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def _no_cache_error(self) -> RuntimeError:
        """The error every layer raises when backward runs before any forward."""
        return RuntimeError(
            f"{type(self).__name__}.backward() was called before forward(); "
            "call forward (or the module itself) on a batch first"
        )

    def _grad_like(self, grad_out: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
        """``grad_out`` as an array of the last output's ``shape`` and ``dtype``, or ValueError."""
        if type(grad_out) is np.ndarray and grad_out.dtype == dtype and grad_out.shape == shape:
            return grad_out
        grad = as_float_array(grad_out, dtype)
        if grad.shape != shape:
            raise ValueError(
                f"{type(self).__name__}.backward() expected grad_out of shape {shape} "
                f"(the shape of the last forward's output), got {grad.shape}"
            )
        return grad

    # -- the tree ------------------------------------------------------------------------
    def _named_members(self) -> Iterator[tuple[str, Parameter | Module]]:
        """Direct parameters and child modules, by attribute name, in insertion order.

        An attribute that is a list or tuple is searched by index (``"blocks.0"``), and a dict
        with string keys by key (``"heads.cls"``), one level deep.
        """
        for name, value in vars(self).items():
            if isinstance(value, (Parameter, Module)):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, (Parameter, Module)):
                        yield f"{name}.{i}", item
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(key, str) and isinstance(item, (Parameter, Module)):
                        yield f"{name}.{key}", item

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct child modules with their names."""
        for name, member in self._named_members():
            if isinstance(member, Module):
                yield name, member

    def children(self) -> Iterator[Module]:
        """Direct child modules."""
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, each once, with dotted names ("" for self)."""
        seen: set[int] = set()

        def walk(module: Module, name: str) -> Iterator[tuple[str, Module]]:
            if id(module) in seen:
                return
            seen.add(id(module))
            yield name, module
            for child_name, child in module.named_children():
                yield from walk(child, f"{name}.{child_name}" if name else child_name)

        yield from walk(self, prefix)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, each once."""
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter in the tree, each once, with dotted names such as ``"0.weight"``."""
        seen: set[int] = set()

        def walk(module: Module, module_name: str) -> Iterator[tuple[str, Parameter]]:
            seen.add(id(module))
            for name, member in module._named_members():
                full_name = f"{module_name}.{name}" if module_name else name
                if id(member) in seen:
                    continue
                if isinstance(member, Parameter):
                    seen.add(id(member))
                    yield full_name, member
                else:
                    yield from walk(member, full_name)

        yield from walk(self, prefix)

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter in the tree, each once, in a stable order."""
        for _, param in self.named_parameters():
            yield param

    def num_parameters(self) -> int:
        """The total number of scalar parameters."""
        return sum(p.size for p in self.parameters())

    # -- modes, gradients, dtype -----------------------------------------------------------
    def train(self, mode: bool = True) -> Self:
        """Set training mode on this module and every descendant; returns self."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Self:
        """Set evaluation mode (``train(False)``); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Reset the gradient of every parameter to zeros, in place."""
        for param in self.parameters():
            param.zero_grad()

    def astype(self, dtype: DTypeLike) -> Self:
        """Convert every parameter (values and gradients) to a floating ``dtype``; returns self.

        Build optimizers after this call: it replaces the parameter arrays.
        """
        for param in self.parameters():
            param.astype(dtype)
        return self

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Array]:
        """A flat mapping from parameter name to a copy of its values."""
        return {name: param.data.copy() for name, param in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy values from ``state`` into the parameters, in place.

        Every key, shape and dtype is checked before anything is assigned, so a bad state leaves
        the module untouched. With ``strict=False`` missing and unexpected keys are allowed but
        shapes and dtypes of the keys present must still match.

        Raises:
            ValueError: listing missing keys, unexpected keys (both only when ``strict``), and
                each shape or dtype mismatch by name with both values.
        """
        params = dict(self.named_parameters())
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        problems: list[str] = []
        for name, param in params.items():
            if name not in state:
                continue
            value = state[name]
            if not isinstance(value, np.ndarray):
                problems.append(f"{name}: expected an ndarray, got {type(value).__name__}")
            elif value.shape != param.data.shape:
                problems.append(
                    f"{name}: shape {value.shape} in the state, {param.data.shape} in the model"
                )
            elif value.dtype != param.data.dtype:
                problems.append(
                    f"{name}: dtype {value.dtype} in the state, {param.data.dtype} in the model"
                )
        if strict and missing:
            problems.insert(0, f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.insert(0, f"unexpected keys: {', '.join(unexpected)}")
        if problems:
            raise ValueError(
                f"cannot load state into {type(self).__name__}; nothing was changed:\n  "
                + "\n  ".join(problems)
            )
        for name, param in params.items():
            if name in state:
                np.copyto(param.data, state[name])

    # -- description -----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this module (JSON-serialisable values)."""
        return {}

    def extra_repr(self) -> str:
        """The text inside the parentheses of ``repr``; by default the config."""
        parts = []
        for key, value in self.get_config().items():
            if key == "dtype" and value == "float32":
                continue
            parts.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        children = list(self.named_children())
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}("] + ([f"  {extra}"] if extra else [])
        for name, child in children:
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + "\n)"
