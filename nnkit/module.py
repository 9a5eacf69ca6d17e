"""Module: the base class of every layer and container.

The contract (docs/architecture.md states it in full)::

    y  = module.forward(x)     # also module(x); caches what backward needs
    dx = module.backward(dy)   # returns dL/dx and ADDS dL/dparam into each param.grad

A module owns its parameters, buffers, generators, cache and gradients. They are discovered
by walking the module's attributes in insertion order: a :class:`Parameter`, a
:class:`Buffer` or an ``np.random.Generator`` is yielded, a :class:`Module` is recursed into,
and lists, tuples and dicts of them are searched by index or key. No registration call is
needed, and an object reachable twice is yielded once.

A module's *state* is its parameters, its persistent buffers (``state_dict``) and the state
of its generators (``generator_state``); saving, checkpoints, ``astype`` and the conformance
harness all go through these two methods.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray
from typing_extensions import Self

from nnkit.parameter import Buffer, Parameter

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
    with constructor arguments implement :meth:`get_config`, which also drives ``repr`` and
    saving.

    A module takes one array or several (``forward(x)``, ``forward(q, k, v)``) and returns one
    array or a tuple of arrays. ``backward`` takes one gradient per output, in the same order
    (``None`` for an output that received no gradient, meaning zeros), and returns one
    gradient per input: the array itself for a single input, a tuple for several.

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

    def __getstate__(self) -> dict[str, Any]:
        """The instance's attributes for copying, without a diagnostics tracer's patches
        (which call the original module's methods, so a copy must not keep them)."""
        return {
            key: value
            for key, value in self.__dict__.items()
            if not getattr(value, "_nnkit_traced", False)
        }

    # -- the contract --------------------------------------------------------------------
    def forward(self, *inputs: Any) -> Any:
        """Compute the output for a batch and cache what :meth:`backward` needs.

        One input array gives ``forward(x)``; a module with several inputs takes them as
        positional arguments. Returns an array, or a tuple of arrays for several outputs.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, *grads: Any) -> Any:
        """Return dL/dinput given dL/doutput for the most recent forward; add dL/dparam to grads.

        Takes one gradient per output of the last forward (``None`` for zeros) and returns the
        input gradient, or a tuple of them for a module with several inputs.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement backward(grad_out)")

    def accumulate_grad(self, *grads: Any) -> None:
        """Add dL/dparam for the most recent forward into each ``param.grad``, skipping dL/dx.

        The parameter gradients are exactly those of :meth:`backward`. Use it when the input
        gradient is not needed, as in an ordinary training step where the input is data:
        ``Dense`` then skips its largest matrix product. This is Torch7's
        ``accGradParameters``. The default calls :meth:`backward` and drops dx; layers
        override it when skipping dx saves work, and containers pass it to their first child.
        """
        self.backward(*grads)

    def __call__(self, *inputs: Any, **options: Any) -> Any:
        """``self.forward(*inputs, **options)``: keyword options (an attention mask) pass on."""
        return self.forward(*inputs, **options)

    def _no_cache_error(self) -> RuntimeError:
        """The error every layer raises when backward runs before any forward."""
        return RuntimeError(
            f"{type(self).__name__}.backward() was called before forward(); "
            "call forward (or the module itself) on a batch first"
        )

    def grad_like(self, grad_out: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
        """``grad_out`` as an array of the last output's ``shape`` and ``dtype``, or ValueError.

        A helper for ``backward``: it accepts anything array-like, converts it to the forward's
        dtype (so a float64 gradient never promotes a float32 layer) without copying an array
        that already fits, and names the layer when the shape is wrong.
        """
        if type(grad_out) is np.ndarray and grad_out.dtype == dtype and grad_out.shape == shape:
            return grad_out
        grad = as_float_array(grad_out, dtype)
        if grad.shape != shape:
            raise ValueError(
                f"{type(self).__name__}.backward() expected grad_out of shape {shape} "
                f"(the shape of the last forward's output), got {grad.shape}"
            )
        return grad

    _grad_like = grad_like  # the name layers used before grad_like was public

    # -- the tree ------------------------------------------------------------------------
    def _named_members(self) -> Iterator[tuple[str, Any]]:
        """Direct parameters, buffers, generators and child modules, by attribute name, in
        insertion order.

        An attribute that is a list or tuple is searched by index (``"blocks.0"``), and a dict
        with string keys by key (``"heads.cls"``), one level deep.
        """
        for name, value in vars(self).items():
            if isinstance(value, _MEMBERS):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, _MEMBERS):
                        yield f"{name}.{i}", item
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(key, str) and isinstance(item, _MEMBERS):
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

    def _named_state(self, kinds: tuple[type, ...], prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every member of one of ``kinds`` in the tree, each once, with its dotted name.

        The one walk behind named_parameters, named_buffers and named_generators: members in
        attribute order, children recursed into where they appear, an object reached a second
        time (a shared Parameter, a shared child) skipped.
        """
        seen: set[int] = set()

        def walk(module: Module, module_name: str) -> Iterator[tuple[str, Any]]:
            seen.add(id(module))
            for name, member in module._named_members():
                full_name = f"{module_name}.{name}" if module_name else name
                if id(member) in seen:
                    continue
                if isinstance(member, Module):
                    yield from walk(member, full_name)
                elif isinstance(member, kinds):
                    seen.add(id(member))
                    yield full_name, member

        yield from walk(self, prefix)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter in the tree, each once, with dotted names such as ``"0.weight"``."""
        yield from self._named_state((Parameter,), prefix)

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter in the tree, each once, in a stable order."""
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        """Every buffer in the tree (persistent or not), each once, with dotted names."""
        yield from self._named_state((Buffer,), prefix)

    def buffers(self) -> Iterator[Buffer]:
        """Every buffer in the tree, each once, in a stable order."""
        for _, buffer in self.named_buffers():
            yield buffer

    def named_generators(self, prefix: str = "") -> Iterator[tuple[str, np.random.Generator]]:
        """Every ``np.random.Generator`` a module of the tree keeps, each once, by dotted name.

        A module that draws random numbers (Dropout, say) keeps its own generator as an
        attribute; :meth:`generator_state` reports the state of all of them.
        """
        yield from self._named_state((np.random.Generator,), prefix)

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
        """Convert every parameter (values and gradients) and every floating buffer to a
        floating ``dtype``; integer buffers keep theirs. Returns self.

        Build optimizers after this call: it replaces the parameter arrays.
        """
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"astype takes a floating dtype, got {np.dtype(dtype)}")
        for _, member in self._named_state((Parameter, Buffer)):
            member.astype(dtype)
        return self

    # -- state -----------------------------------------------------------------------------
    def _state_members(self) -> dict[str, Parameter | Buffer]:
        """The entries of the state dict: every parameter and persistent buffer, in order."""
        return {
            name: member
            for name, member in self._named_state((Parameter, Buffer))
            if isinstance(member, Parameter) or member.persistent
        }

    def state_dict(self) -> dict[str, Array]:
        """A flat mapping from name to a copy of each parameter and persistent buffer.

        Keys are dotted names in attribute order, as PyTorch's (``"0.weight"``,
        ``"1.running_mean"``). Generator states are separate: :meth:`generator_state`.
        """
        return {name: member.data.copy() for name, member in self._state_members().items()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy values from ``state`` into the parameters and persistent buffers, in place.

        Every key, shape and dtype is checked before anything is assigned, so a bad state leaves
        the module untouched. With ``strict=False`` missing and unexpected keys are allowed but
        shapes and dtypes of the keys present must still match.

        Raises:
            ValueError: listing missing keys, unexpected keys (both only when ``strict``), and
                each shape or dtype mismatch by name with both values.
        """
        members = self._state_members()
        missing = [name for name in members if name not in state]
        unexpected = [name for name in state if name not in members]
        problems: list[str] = []
        for name, member in members.items():
            if name not in state:
                continue
            value = state[name]
            if not isinstance(value, np.ndarray):
                problems.append(f"{name}: expected an ndarray, got {type(value).__name__}")
            elif value.shape != member.data.shape:
                problems.append(
                    f"{name}: shape {value.shape} in the state, {member.data.shape} in the model"
                )
            elif value.dtype != member.data.dtype:
                problems.append(
                    f"{name}: dtype {value.dtype} in the state, {member.data.dtype} in the model"
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
        for name, member in members.items():
            if name in state:
                np.copyto(member.data, state[name])

    def generator_state(self) -> dict[str, dict[str, Any]]:
        """The state of every generator in the tree, ``{dotted name: bit_generator.state}``.

        The values are plain dicts (NumPy's ``bit_generator.state``), copies that later draws
        do not change. Loading them back with :meth:`load_generator_state` makes the module
        draw the same numbers again, which is how checkpoints resume a stochastic model bitwise.
        """
        return {
            name: copy.deepcopy(dict(generator.bit_generator.state))
            for name, generator in self.named_generators()
        }

    def load_generator_state(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Set the state of each generator in the tree from ``state``, all or nothing.

        Every entry is checked (it must fit that generator's bit generator) before any is set.
        With ``strict=False`` missing and unexpected names are allowed.

        Raises:
            ValueError: missing or unexpected names (when ``strict``), or a state that does not
                fit its generator; nothing was changed.
        """
        generators = dict(self.named_generators())
        missing = [name for name in generators if name not in state]
        unexpected = [name for name in state if name not in generators]
        problems: list[str] = []
        if strict and unexpected:
            problems.append(f"unexpected generators: {', '.join(unexpected)}")
        if strict and missing:
            problems.append(f"missing generators: {', '.join(missing)}")
        replacements: dict[str, np.random.Generator] = {}
        for name, generator in generators.items():
            if name not in state:
                continue
            saved = state[name]
            kind_name = saved.get("bit_generator") if isinstance(saved, Mapping) else None
            kind = type(generator.bit_generator)
            if isinstance(kind_name, str) and kind_name != kind.__name__:
                other = getattr(np.random, kind_name, None)  # the saved kind, e.g. MT19937
                if not (isinstance(other, type) and issubclass(other, np.random.BitGenerator)):
                    problems.append(f"{name}: unknown bit generator {kind_name!r}")
                    continue
                kind = other
            try:
                probe = kind()
                probe.state = saved
            except Exception as exc:
                problems.append(
                    f"{name}: the state does not fit a {kind.__name__} ({type(exc).__name__}: "
                    f"{exc})"
                )
                continue
            if kind is not type(generator.bit_generator):
                if self._owner_of(name, generator) is None:
                    problems.append(f"{name}: a {kind.__name__} state cannot replace it here")
                    continue
                replacements[name] = np.random.Generator(probe)
        if problems:
            raise ValueError(
                f"cannot load generator state into {type(self).__name__}; nothing was "
                "changed:\n  " + "\n  ".join(problems)
            )
        for name, generator in generators.items():
            if name in replacements:
                owner, attribute = self._owner_of(name, generator)  # type: ignore[misc]
                setattr(owner, attribute, replacements[name])
            elif name in state:
                generator.bit_generator.state = state[name]

    def _owner_of(self, name: str, generator: Any) -> tuple[Module, str] | None:
        """The module and attribute holding ``generator`` under the dotted ``name``, if it is
        a plain attribute (not inside a list or dict)."""
        owner_path, _, attribute = name.rpartition(".")
        owner = dict(self.named_modules()).get(owner_path)
        if owner is None or vars(owner).get(attribute) is not generator:
            return None
        return owner, attribute

    # -- description -----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this module (JSON-serialisable values).

        A module built from other modules (``Residual(body)``, a user's
        ``Block(encoder, head)``) returns them too (``{"body": self.body}``): they must be
        children of this module, and saving stores a reference to the saved child.
        """
        return {}

    def extra_repr(self) -> str:
        """The text inside the parentheses of ``repr``; by default the config without the
        modules in it (children are printed below)."""
        parts = []
        for key, value in self.get_config().items():
            if key == "dtype" and value == "float32":
                continue
            if _holds_module(value):
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


_MEMBERS = (Parameter, Buffer, np.random.Generator, Module)
"""The types the attribute walk finds: state objects and child modules."""


def _holds_module(value: Any) -> bool:
    """True if ``value`` is a Module or a list, tuple or dict holding one (at any depth)."""
    if isinstance(value, Module):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_module(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_module(v) for v in value.values())
    return False
