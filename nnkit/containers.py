"""Containers: modules made of other modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import overload

from nnkit.module import Array, Module, add_note
from nnkit.parameter import Parameter

__all__ = ["Sequential"]


class Sequential(Module):
    """Chains modules: forward runs them in order, backward in reverse order.

    ``Sequential(a, b, c).forward(x)`` is ``c(b(a(x)))`` and ``backward(dy)`` is
    ``a.backward(b.backward(c.backward(dy)))``. Each child keeps its own cache, so the container
    holds no state of its own. Children are named by index: parameters appear as
    ``"0.weight"``, ``"2.bias"``. An exception raised inside a child gets a note saying which
    child (index and class) raised it.

    Supports ``len``, integer indexing (a slice gives a new Sequential sharing the children),
    iteration and :meth:`append`.
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.layers: list[Module] = []
        for layer in layers:
            self.append(layer)

    def _named_members(self) -> Iterator[tuple[str, Parameter | Module]]:
        for i, layer in enumerate(self.layers):
            yield str(i), layer
        for name, member in super()._named_members():  # what a subclass adds of its own
            if not name.startswith("layers."):
                yield name, member

    def forward(self, x: Array) -> Array:
        for i, layer in enumerate(self.layers):
            try:
                x = layer.forward(x)
            except Exception as exc:
                _note(exc, "forward", i, layer)
                raise
        return x

    def backward(self, grad_out: Array) -> Array:
        return self._backward_to(grad_out, 0)

    def accumulate_grad(self, grad_out: Array) -> None:
        """Parameter gradients of every child; the first child skips its input gradient."""
        if not self.layers:
            return
        grad_out = self._backward_to(grad_out, 1)
        try:
            self.layers[0].accumulate_grad(grad_out)
        except Exception as exc:
            _note(exc, "backward", 0, self.layers[0])
            raise

    def _backward_to(self, grad_out: Array, stop: int) -> Array:
        """Backward through children ``len - 1`` down to ``stop``; returns their input grad."""
        for i in range(len(self.layers) - 1, stop - 1, -1):
            layer = self.layers[i]
            try:
                grad_out = layer.backward(grad_out)
            except Exception as exc:
                _note(exc, "backward", i, layer)
                raise
        return grad_out

    def append(self, layer: Module) -> Sequential:
        """Add a module at the end; returns self.

        A module may appear only once: it keeps one cache, so a second use would overwrite
        what the first use's backward needs. To share weights, give two layers the same
        Parameter (``b.weight = a.weight``); their gradients then add up.
        """
        index = len(self.layers)
        if not isinstance(layer, Module):
            raise TypeError(
                f"Sequential takes Modules; argument {index} is a {type(layer).__name__}. "
                "Wrap custom code in a Module subclass with forward and backward."
            )
        present = {id(module) for module in self.modules()}
        for module in layer.modules():
            if id(module) in present:
                raise ValueError(
                    f"{type(module).__name__} in argument {index} is already part of this "
                    f"Sequential; a layer keeps one cache, so it cannot be used twice in one "
                    "forward pass. To share weights, build a second layer and give it the same "
                    "Parameter (second.weight = first.weight)."
                )
        self.layers.append(layer)
        return self

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


def _note(exc: BaseException, method: str, index: int, layer: Module) -> None:
    add_note(exc, f"raised in {method} of Sequential child {index} ({type(layer).__name__})")
