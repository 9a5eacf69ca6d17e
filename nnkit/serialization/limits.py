"""What a model file may make ``nnkit.load`` allocate: no more than the weights it holds.

A model file's architecture is a list of constructors and their configs, and the weights are
loaded only after the constructors ran. A file of 1.9 KB that declares ``Dense(20000,
20000)`` therefore made ``load`` allocate 6.1 GB before it failed on the weights that do not
fit. :func:`check_parameter_sizes` compares, before any constructor runs, the parameters that
each built-in layer will create (known from its config) with the arrays the file holds: every
parameter must be there, with its shape (or be tied to one that is). A file that passes makes
the built-in layers allocate what its own weights take (a few times their bytes, for the
initial values drawn before the weights are loaded).

Layers of registered custom classes are built by their own code from the file's config, so
their size is not known in advance and is not bounded here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nnkit.layers import Dense, activations
from nnkit.serialization.architecture import Plan
from nnkit.serialization.errors import CorruptFileError

__all__ = ["PARAMETER_SHAPES", "check_parameter_sizes"]

Shapes = dict[str, tuple[int, ...]]


def _dense(config: Mapping[str, Any]) -> Shapes | None:
    n_in, n_out = (
        _positive_int(config.get("in_features")),
        _positive_int(config.get("out_features")),
    )
    if n_in is None or n_out is None:
        return None  # the constructor will refuse it, before allocating anything
    shapes: Shapes = {"weight": (n_in, n_out)}
    if config.get("bias", True) is not False:
        shapes["bias"] = (n_out,)
    return shapes


def _positive_int(value: object) -> int | None:
    """``value`` as an int if it is an integer >= 1 (not a bool), else None."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


def _none(config: Mapping[str, Any]) -> Shapes:
    return {}


PARAMETER_SHAPES: dict[type, Callable[[Mapping[str, Any]], Shapes | None]] = {
    Dense: _dense,
    **{getattr(activations, name): _none for name in activations.__all__},
}
"""For each built-in layer class, its parameters' shapes (by attribute name) computed from a
config, without building it; None when the config is invalid (the constructor refuses it).
A new built-in layer with parameters adds its entry here."""


def check_parameter_sizes(
    plan: Plan, weights: Mapping[str, Any], tied: Mapping[str, str], path: str
) -> None:
    """Refuse a file whose architecture declares built-in layers larger than its weights.

    Call it after the file is read and its architecture parsed, before
    :func:`~nnkit.serialization.architecture.build` runs a constructor. ``weights`` maps the
    state-dict keys the file holds to arrays (or anything with a ``shape``), ``tied`` is the
    header's ``{alias: first name}``.

    Raises:
        CorruptFileError: a built-in layer's parameter is neither among the weights with its
            shape nor tied; the message names the module, its class and both shapes.
    """

    def visit(node: Plan) -> None:
        shapes_of = PARAMETER_SHAPES.get(node.cls)
        shapes = shapes_of(node.config) if shapes_of is not None else None
        for attribute, shape in (shapes or {}).items():
            name = f"{node.path}.{attribute}" if node.path else attribute
            if name in tied:
                continue  # shares the storage of the parameter it is tied to
            held = weights.get(name)
            held_shape = None if held is None else tuple(held.shape)
            if held_shape != shape:
                where = f"module {node.path!r}" if node.path else "the model"
                holds = (
                    f"holds no {name!r}"
                    if held is None
                    else f"holds {name!r} of shape {held_shape}"
                )
                size = int(np.prod(shape, dtype=np.float64))
                raise CorruptFileError(
                    f"{path}: the architecture declares {where} as a {node.name} whose {attribute} "
                    f"has shape {shape} ({size:,} values), but the file {holds}; refusing to "
                    "build it (it would allocate memory for weights the file does not have). "
                    "The file is damaged or was not written by nnkit"
                )
        for _, child in node.children:
            if isinstance(child, Plan):
                visit(child)

    visit(plan)
