"""Binding the options of a forward that keeps PyTorch's keyword arguments."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bind_options"]


def bind_options(
    layer: str,
    spec: dict[str, Any],
    required: int,
    options: tuple[Any, ...],
    keywords: dict[str, Any],
) -> dict[str, Any]:
    """``options`` (the positional arguments after the ``required`` inputs) and ``keywords``
    bound to the names of ``spec`` (name -> default), as Python binds arguments. A forward
    written as ``forward(x, *options, **keywords)`` keeps PyTorch's keyword arguments and
    still knows how many inputs were positional: its backward returns one gradient each."""
    names = list(spec)
    if len(options) > len(names):
        raise TypeError(
            f"{layer}.forward() takes {required} inputs and at most {len(names)} further "
            f"arguments ({', '.join(names)}), got {required + len(options)} positional arguments"
        )
    settings = dict(spec)
    settings.update(zip(names, options, strict=False))  # the first len(options) names
    for name, value in keywords.items():
        if name not in spec:
            raise TypeError(f"{layer}.forward() got an unexpected keyword argument {name!r}")
        if name in names[: len(options)]:
            raise TypeError(f"{layer}.forward() got multiple values for argument {name!r}")
        settings[name] = value
    for name, default in spec.items():
        if isinstance(default, bool) and not isinstance(settings[name], (bool, np.bool_)):
            raise TypeError(f"{layer} {name} must be True or False, got {settings[name]!r}")
    return settings
