"""Containers: modules made of other modules.

Every container derives from :class:`Container`, which gives it three things: children are
called through ``__call__``; an exception raised inside a child gets a note naming the child
by its dotted path (``raised in backward of child "2.body.0" (Dense)``, Torch7's
``rethrowErrors``); and a module may appear only once in a tree, since it keeps one cache.
:class:`~nnkit.graph.Graph` (in its own file) is the general directed acyclic container.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, overload

import numpy as np

from nnkit.module import Array, Module, add_note, as_float_array

__all__ = ["Concat", "Container", "Parallel", "Residual", "Sequential"]


class Container(Module):
    """Base class of modules built from child modules.

    Subclasses register each child with :meth:`_adopt` (the reuse check) and run children
    with :meth:`_forward_child` / :meth:`_backward_child` / :meth:`_accumulate_child`, or
    call them directly inside a ``try`` that calls :meth:`_note` on failure.
    """

    def _adopt(self, module: Any, what: str) -> Module:
        """Check that ``module`` is a Module not already anywhere in this tree; return it.

        A module may appear only once: it keeps one cache, so a second use would overwrite
        what the first use's backward needs. To share weights, give two layers the same
        Parameter (``b.weight = a.weight``); their gradients then add up.
        """
        name = type(self).__name__
        if isinstance(module, type) and issubclass(module, Module):
            raise TypeError(
                f"{name} takes Module instances; {what} is the class {module.__name__}, write "
                f"{module.__name__}(...)"
            )
        if not isinstance(module, Module):
            raise TypeError(
                f"{name} takes Modules; {what} is a {type(module).__name__}. "
                "Wrap custom code in a Module subclass with forward and backward."
            )
        present = {id(m) for m in self.modules()}
        for inner in module.modules():
            if id(inner) in present:
                raise ValueError(
                    f"{type(inner).__name__} in {what} is already part of this {name}; a layer "
                    "keeps one cache, so it cannot be used twice in one forward pass. To share "
                    "weights, build a second layer and give it the same Parameter "
                    "(second.weight = first.weight)."
                )
        return module

    def _as_own_dtype(self, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        """Floating array inputs in the dtype of this tree's parameters (if it has any).

        A container that feeds one input to several children (a branch without parameters
        next to one with them) converts it once on entry, so float64 data entering a float32
        model is computed in float32 on every path, as a single layer does.
        """
        param = next(self.parameters(), None)
        if param is None:
            return inputs
        dtype = param.dtype
        return tuple(
            x.astype(dtype)
            if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype != dtype
            else x
            for x in inputs
        )

    def _note(self, exc: BaseException, method: str, name: str, child: Module) -> None:
        """Say in ``exc`` which child raised, by its dotted path from this container; a note
        an inner container added is replaced, so one note carries the whole path (also
        through plain modules between containers)."""
        where = getattr(exc, "_nnkit_child", None)
        if where is None:
            method_, culprit = method, child
        else:
            old, method_, culprit = where
            _remove_note(exc, old)
        path = name
        if culprit is not child:
            path = next((p for p, m in self.named_modules() if m is culprit), name)
        note = f'raised in {method_} of child "{path}" ({type(culprit).__name__})'
        add_note(exc, note)
        with contextlib.suppress(AttributeError):  # an exception type without a __dict__
            exc._nnkit_child = (note, method_, culprit)  # type: ignore[attr-defined]

    def _forward_child(self, name: str, child: Module, *inputs: Any) -> Any:
        try:
            return child(*inputs)
        except Exception as exc:
            self._note(exc, "forward", name, child)
            raise

    def _backward_child(self, name: str, child: Module, grad: Any) -> Any:
        """``child.backward(grad)``, a tuple of gradients passed as separate arguments."""
        try:
            return child.backward(*grad) if type(grad) is tuple else child.backward(grad)
        except Exception as exc:
            self._note(exc, "backward", name, child)
            raise

    def _accumulate_child(self, name: str, child: Module, grad: Any) -> None:
        try:
            if type(grad) is tuple:
                child.accumulate_grad(*grad)
            else:
                child.accumulate_grad(grad)
        except Exception as exc:
            self._note(exc, "backward", name, child)
            raise


def _remove_note(exc: BaseException, note: str) -> None:
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and note in notes:
        notes.remove(note)
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):  # pragma: no cover - 3.10
        exc.args = (exc.args[0].replace(f"\n{note}", ""),)


def _pack(values: tuple[Any, ...]) -> Any:
    """One value alone, several as a tuple: what forward returns and backward passes on."""
    return values[0] if len(values) == 1 else values


class Sequential(Container):
    """Chains modules: forward runs them in order, backward in reverse order.

    ``Sequential(a, b, c).forward(x)`` is ``c(b(a(x)))`` and ``backward(dy)`` is
    ``a.backward(b.backward(c.backward(dy)))``. Each child keeps its own cache, so the container
    holds no state of its own. A child that returns a tuple passes it to the next child as
    separate arguments (and the gradients flow back the same way), so several inputs and
    outputs chain too. Children are named by index: parameters appear as ``"0.weight"``,
    ``"2.bias"``.

    Supports ``len``, integer indexing (a slice gives a new Sequential sharing the children),
    iteration and :meth:`append`. A subclass that adds constructor arguments returns
    ``{**super().get_config(), ...}`` from ``get_config``.
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.layers: list[Module] = []
        for layer in layers:
            self.append(layer)

    def _named_members(self) -> Iterator[tuple[str, Any]]:
        for i, layer in enumerate(self.layers):
            yield str(i), layer
        for name, member in super()._named_members():  # what a subclass adds of its own
            if not name.startswith("layers."):
                yield name, member

    def forward(self, *inputs: Any) -> Any:
        value = _pack(inputs)
        i = 0
        try:
            for i, layer in enumerate(self.layers):  # noqa: B007 - i names the failing child
                value = layer(*value) if type(value) is tuple else layer(value)
        except Exception as exc:
            if isinstance(exc, TypeError) and type(value) is tuple and i:
                add_note(
                    exc,
                    f"child {i - 1} ({type(self.layers[i - 1]).__name__}) returned a tuple of "
                    f"{len(value)} outputs, which Sequential passes to child {i} as {len(value)} "
                    "arguments; to keep one of them, put a layer in between (after a recurrent "
                    "layer: SequenceOutput, LastTimeStep or FinalState)",
                )
            self._note(exc, "forward", str(i), self.layers[i])
            raise
        return value

    def backward(self, *grads: Any) -> Any:
        return self._backward_to(_pack(grads), 0)

    def accumulate_grad(self, *grads: Any) -> None:
        """Parameter gradients of every child; the first child skips its input gradient."""
        if not self.layers:
            return
        grad = self._backward_to(_pack(grads), 1)
        self._accumulate_child("0", self.layers[0], grad)

    def _backward_to(self, grad: Any, stop: int) -> Any:
        """Backward through children ``len - 1`` down to ``stop``; returns their input grad."""
        i = len(self.layers) - 1
        try:
            for i in range(len(self.layers) - 1, stop - 1, -1):
                layer = self.layers[i]
                grad = layer.backward(*grad) if type(grad) is tuple else layer.backward(grad)
        except Exception as exc:
            self._note(exc, "backward", str(i), self.layers[i])
            raise
        return grad

    def append(self, layer: Module) -> Sequential:
        """Add a module at the end; returns self. A module may appear only once."""
        self.layers.append(self._adopt(layer, f"argument {len(self.layers)}"))
        return self

    def get_config(self) -> dict[str, Any]:
        return {"layers": list(self.layers)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """``cls(*config["layers"], **rest)``: the layers are positional arguments."""
        rest = dict(config)
        layers = rest.pop("layers", [])
        return cls(*layers, **rest)

    def __len__(self) -> int:
        return len(self.layers)

    @overload
    def __getitem__(self, index: int) -> Module: ...
    @overload
    def __getitem__(self, index: slice) -> Sequential: ...
    def __getitem__(self, index: int | slice) -> Module | Sequential:
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)


class Residual(Container):
    """A residual block: ``y = body(x) + shortcut(x)``, the shortcut the identity by default.

    Shapes: ``body`` and ``shortcut`` must map ``x`` to outputs of the same shape (with the
    identity shortcut, ``body`` keeps the input's shape; use a ``Dense`` or a 1x1 convolution
    as the shortcut when it does not).

    Backward: ``dx = body.backward(dy) + shortcut.backward(dy)`` (``+ dy`` for the identity),
    since y is a sum of two functions of x. Children are named ``"body"`` and ``"shortcut"``.

    Args:
        body: the residual branch.
        shortcut: the skip branch (None: the identity).
    """

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        self.body = self._adopt(body, "body")
        self.shortcut = None if shortcut is None else self._adopt(shortcut, "shortcut")

    def forward(self, x: Array) -> Array:
        (x,) = self._as_own_dtype((as_float_array(x),))
        y = self._forward_child("body", self.body, x)
        skip = x if self.shortcut is None else self._forward_child("shortcut", self.shortcut, x)
        if not isinstance(y, np.ndarray) or y.shape != np.shape(skip):
            shape = y.shape if isinstance(y, np.ndarray) else type(y).__name__
            raise ValueError(
                f"Residual: the body maps input {np.shape(x)} to {shape}, the shortcut to "
                f"{np.shape(skip)}; they must agree to be added (give Residual a shortcut that "
                "maps the input to the body's output shape)"
            )
        return y + skip

    def backward(self, grad_out: Array) -> Array:
        dx: Array = self._backward_child("body", self.body, grad_out)
        if self.shortcut is None:
            return np.add(dx, grad_out, dtype=dx.dtype)
        dx_skip: Array = self._backward_child("shortcut", self.shortcut, grad_out)
        return np.add(dx, dx_skip, dtype=dx.dtype)

    def accumulate_grad(self, grad_out: Array) -> None:
        self._accumulate_child("body", self.body, grad_out)
        if self.shortcut is not None:
            self._accumulate_child("shortcut", self.shortcut, grad_out)

    def get_config(self) -> dict[str, Any]:
        return {"body": self.body, "shortcut": self.shortcut}


class Concat(Container):
    """Runs each branch on the same input and concatenates their outputs along ``axis``.

    ``y = concatenate([b_1(x), ..., b_k(x)], axis)``: an Inception-style block. The outputs
    must agree on every axis but ``axis``. Backward splits ``dy`` along ``axis`` into the
    branches' parts ``dy_i`` and sums the input gradients: ``dx = sum_i b_i.backward(dy_i)``.
    Children are named ``"0"``, ``"1"``, ...

    Args:
        *branches: at least one module.
        axis: the axis to concatenate along (1, the feature or channel axis, by default).
    """

    def __init__(self, *branches: Module, axis: int = 1) -> None:
        super().__init__()
        if type(axis) is not int:
            raise TypeError(f"Concat axis must be an int, got {axis!r}")
        if not branches:
            raise ValueError("Concat needs at least one branch")
        self.axis = axis
        self.branches: list[Module] = []
        for i, branch in enumerate(branches):
            self.branches.append(self._adopt(branch, f"branch {i}"))
        self._splits: list[int] = []
        self._out: tuple[tuple[int, ...], np.dtype[Any]] | None = None

    def _named_members(self) -> Iterator[tuple[str, Any]]:
        for i, branch in enumerate(self.branches):
            yield str(i), branch
        for name, member in super()._named_members():  # what a subclass adds of its own
            if not name.startswith("branches."):
                yield name, member

    def forward(self, x: Array) -> Array:
        (x,) = self._as_own_dtype((as_float_array(x),))
        outputs = [self._forward_child(str(i), b, x) for i, b in enumerate(self.branches)]
        self._splits = _concat_splits(outputs, self.axis, "Concat")
        y = np.concatenate(outputs, axis=self.axis)
        self._out = (y.shape, y.dtype)
        return y

    def _parts(self, grad_out: Array) -> list[Array]:
        if self._out is None:
            raise self._no_cache_error()
        grad = self.grad_like(grad_out, self._out[0], self._out[1])
        return np.split(grad, self._splits, axis=self.axis)

    def backward(self, grad_out: Array) -> Array:
        parts = self._parts(grad_out)
        dx: Array = self._backward_child("0", self.branches[0], parts[0])
        for i in range(1, len(self.branches)):
            g = self._backward_child(str(i), self.branches[i], parts[i])
            dx = np.add(dx, g, dtype=dx.dtype)
        return dx

    def accumulate_grad(self, grad_out: Array) -> None:
        for i, (branch, part) in enumerate(zip(self.branches, self._parts(grad_out), strict=True)):
            self._accumulate_child(str(i), branch, part)

    def get_config(self) -> dict[str, Any]:
        return {"branches": list(self.branches), "axis": self.axis}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Concat:
        rest = dict(config)
        return cls(*rest.pop("branches", []), **rest)


def _concat_splits(outputs: list[Any], axis: int, who: str) -> list[int]:
    """The split points that undo ``concatenate(outputs, axis)``, or a clear ValueError."""
    shapes = [np.shape(y) for y in outputs]
    if not all(isinstance(y, np.ndarray) for y in outputs):
        raise TypeError(f"{who}: every branch must return one array, got {shapes}")
    ndim = len(shapes[0])
    if not -ndim <= axis < ndim or any(len(s) != ndim for s in shapes):
        raise ValueError(f"{who}: cannot concatenate outputs of shapes {shapes} along axis {axis}")
    ax = axis % ndim
    rest = {s[:ax] + s[ax + 1 :] for s in shapes}
    if len(rest) != 1:
        raise ValueError(
            f"{who}: outputs of shapes {shapes} differ outside axis {axis}, so they cannot be "
            "concatenated"
        )
    return list(np.cumsum([s[ax] for s in shapes])[:-1])


class Parallel(Container):
    """Runs branch i on input i: ``(y_1, ..., y_k) = (b_1(x_1), ..., b_k(x_k))``.

    Takes as many inputs as it has branches and returns a tuple of their outputs; backward
    takes one gradient per output (``None`` for zeros) and returns the tuple of input
    gradients. Follow it with a merge layer (``Add``, ``Multiply``, ``Concatenate``) in a
    ``Sequential`` to join the branches again. Children are named ``"0"``, ``"1"``, ...
    """

    def __init__(self, *branches: Module) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Parallel needs at least one branch")
        self.branches: list[Module] = []
        for i, branch in enumerate(branches):
            self.branches.append(self._adopt(branch, f"branch {i}"))
        self._outputs: tuple[Any, ...] | None = None

    def _named_members(self) -> Iterator[tuple[str, Any]]:
        for i, branch in enumerate(self.branches):
            yield str(i), branch
        for name, member in super()._named_members():  # what a subclass adds of its own
            if not name.startswith("branches."):
                yield name, member

    def forward(self, *inputs: Any) -> tuple[Any, ...]:
        if len(inputs) != len(self.branches):
            raise ValueError(
                f"Parallel with {len(self.branches)} branches takes {len(self.branches)} inputs, "
                f"got {len(inputs)}"
            )
        inputs = self._as_own_dtype(inputs)
        pairs = enumerate(zip(self.branches, inputs, strict=True))
        self._outputs = tuple(self._forward_child(str(i), b, x) for i, (b, x) in pairs)
        return self._outputs

    def _grads(self, grads: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._outputs is None:
            raise self._no_cache_error()
        if len(grads) != len(self.branches):
            raise ValueError(
                f"Parallel.backward() takes one gradient per branch ({len(self.branches)}), got "
                f"{len(grads)}"
            )
        return tuple(
            np.zeros_like(y) if g is None else g for g, y in zip(grads, self._outputs, strict=True)
        )

    def backward(self, *grads: Any) -> tuple[Any, ...]:
        return tuple(
            self._backward_child(str(i), b, g)
            for i, (b, g) in enumerate(zip(self.branches, self._grads(grads), strict=True))
        )

    def accumulate_grad(self, *grads: Any) -> None:
        for i, (b, g) in enumerate(zip(self.branches, self._grads(grads), strict=True)):
            self._accumulate_child(str(i), b, g)

    def get_config(self) -> dict[str, Any]:
        return {"branches": list(self.branches)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Parallel:
        rest = dict(config)
        return cls(*rest.pop("branches", []), **rest)
