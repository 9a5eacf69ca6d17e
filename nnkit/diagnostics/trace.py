"""Watching a model run: hooks around every module's forward and backward.

The tracer replaces ``forward``, ``backward`` and ``accumulate_grad`` of each module by
instance attributes that call the original and then report what went in and came out;
:meth:`Tracer.close` puts the originals back. A deep copy of a traced module leaves the
patches out (``Module.__getstate__``), so the copy runs its own methods. Containers call
their children through these attributes, so every module of the tree is seen, in execution
order, with the dotted name it has in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nnkit.module import Module

__all__ = ["Tracer", "finite"]

_MISSING = object()

ForwardHook = Callable[[str, Module, tuple[Any, ...], Any], None]
BackwardHook = Callable[[str, Module, tuple[Any, ...], Any], None]


def finite(value: Any) -> bool:
    """Whether every floating array in ``value`` (an array or nested tuples) is finite."""
    if isinstance(value, tuple):
        return all(finite(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return bool(np.isfinite(value).all())
    return True


class Tracer:
    """Calls ``on_forward(name, module, inputs, output)`` after each module's forward and
    ``on_backward(name, module, grads, result)`` after each backward (``result`` is None for
    ``accumulate_grad``). ``failed_in`` is ``(name, "forward" or "backward")`` of the
    innermost module an exception passed through: the one that raised it."""

    def __init__(
        self,
        model: Module,
        on_forward: ForwardHook | None = None,
        on_backward: BackwardHook | None = None,
    ) -> None:
        self.failed_in: tuple[str, str] | None = None  # (name, "forward" or "backward")
        self._saved: list[tuple[Module, str, Any]] = []  # what each patch replaced
        for name, module in model.named_modules():
            self._patch(name or "model", module, on_forward, on_backward)

    def _patch(
        self,
        name: str,
        module: Module,
        on_forward: ForwardHook | None,
        on_backward: BackwardHook | None,
    ) -> None:
        def traced(attr: str, method: Any, hook: Any) -> Any:
            """``method`` that marks this module when it raises and then calls ``hook`` with
            what went in and came out (accumulate_grad returns None)."""
            where = "forward" if attr == "forward" else "backward"

            def call(*args: Any, **options: Any) -> Any:
                try:
                    result = method(*args, **options)
                except Exception:
                    self._mark(name, where)
                    raise
                if hook is not None:
                    hook(name, module, args, result)
                return result

            return call

        for attr, wrapper in (
            ("forward", traced("forward", module.forward, on_forward)),
            ("backward", traced("backward", module.backward, on_backward)),
            (
                "accumulate_grad",
                traced("accumulate_grad", module.accumulate_grad, on_backward),
            ),
        ):
            self._saved.append((module, attr, module.__dict__.get(attr, _MISSING)))
            wrapper.__dict__["_nnkit_traced"] = True  # Module.__getstate__ leaves it out
            setattr(module, attr, wrapper)

    def _mark(self, name: str, where: str) -> None:
        if self.failed_in is None:  # the innermost module marks first
            self.failed_in = (name, where)

    def close(self) -> None:
        """Put back what each patch replaced (the class's method, or an outer tracer's)."""
        for module, attr, previous in reversed(self._saved):
            if previous is _MISSING:
                module.__dict__.pop(attr, None)
            else:
                setattr(module, attr, previous)
        self._saved.clear()

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
