"""PyTorch weights: the state dict of the equivalent ``torch.nn`` model, to and from nnkit.

nnkit's layers use PyTorch's parameter names, shapes and layouts, with one exception:
``Dense`` stores its weight as (in_features, out_features), ``torch.nn.Linear`` as
(out_features, in_features). These functions translate a whole model's state dict, so weights
move between an nnkit model and a ``torch.nn`` model built the same way (the same attribute
names: ``Sequential`` children ``"0"``, ``"1"``...; a ``Residual``'s ``"body"``)::

    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in
                                 nnkit.interop.to_torch_state_dict(model).items()})
    nnkit.interop.load_torch_state_dict(model, torch_model.state_dict())
    nnkit.interop.load_torch_state_dict(model, "weights.safetensors")   # written by torch

torch is never imported: tensors are read through their ``.numpy()`` (or ``__array__``), and
a safetensors file through the optional extra ``safetensors``. docs/interop.md lists the
layouts.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from nnkit.layers.dense import Dense
from nnkit.module import Array, Module
from nnkit.serialization.errors import StateMismatchError
from nnkit.serialization.safetensors import load_safetensors

__all__ = ["load_torch_state_dict", "to_torch_state_dict"]


class _Layout(NamedTuple):
    """How one nnkit array is stored in PyTorch: its name there (relative to the module), the
    conversions each way, and its shape there."""

    torch_name: str
    to_torch: Callable[[Array], Array]
    from_torch: Callable[[Array], Array]
    torch_shape: Callable[[tuple[int, ...]], tuple[int, ...]]


def _transposed(name: str) -> _Layout:
    return _Layout(name, np.transpose, np.transpose, lambda shape: shape[::-1])


def _dense(module: Module) -> dict[str, _Layout]:
    """``Dense.weight`` (in, out) is ``Linear.weight`` (out, in); the bias is the same."""
    return {"weight": _transposed("weight")}


_LAYOUTS: list[tuple[type[Module], Callable[[Module], dict[str, _Layout]]]] = [(Dense, _dense)]
"""The layers whose arrays PyTorch stores differently, and how (a subclass inherits its base's
layout, since it inherits the arrays). Every other array has PyTorch's name and layout."""


def _identity(array: Array) -> Array:
    return array


def _same_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape


def _layouts(model: Module) -> dict[str, tuple[str, _Layout | None]]:
    """``{nnkit key: (torch key, layout or None when stored alike)}`` for the model's state."""
    special: dict[str, tuple[str, _Layout]] = {}
    for path, module in model.named_modules():
        for cls, layouts in _LAYOUTS:
            if isinstance(module, cls):
                prefix = f"{path}." if path else ""
                for local, layout in layouts(module).items():
                    special[prefix + local] = (prefix + layout.torch_name, layout)
                break
    result: dict[str, tuple[str, _Layout | None]] = {}
    for name in _state_arrays(model):
        result[name] = special.get(name, (name, None))
    return result


def _state_arrays(model: Module) -> dict[str, Array]:
    """The model's parameters and persistent buffers by state-dict name (the arrays
    themselves, not copies)."""
    arrays: dict[str, Array] = {name: p.data for name, p in model.named_parameters()}
    arrays.update({name: b.data for name, b in model.named_buffers() if b.persistent})
    return arrays


def to_torch_state_dict(model: Module) -> dict[str, Array]:
    """The state dict of the ``torch.nn`` model equivalent to ``model``, as NumPy arrays.

    Keys and values are what ``torch_model.state_dict()`` holds for a model built the same
    way: ``Dense`` weights transposed to ``Linear``'s (out, in), everything else as in
    ``model.state_dict()``. Every array is a C-contiguous copy, ready for
    ``torch.from_numpy`` or ``nnkit.save_safetensors``.
    """
    if not isinstance(model, Module):
        raise TypeError(f"to_torch_state_dict takes an nnkit Module, got {type(model).__name__}")
    layouts = _layouts(model)
    state = {}
    for name, value in model.state_dict().items():
        torch_name, layout = layouts[name]
        array = value if layout is None else layout.to_torch(value)
        state[torch_name] = np.asarray(array, order="C")  # a copy when transposed
    return state


def load_torch_state_dict(
    model: Module, state: Mapping[str, Any] | str | os.PathLike[str], *, strict: bool = True
) -> None:
    """Load the state dict of the equivalent ``torch.nn`` model into ``model``, in place.

    ``state`` is a mapping from PyTorch's names to arrays (NumPy arrays, or objects with
    ``.numpy()`` or ``__array__``, such as torch tensors from ``torch_model.state_dict()``), or
    the path of a safetensors file (``safetensors.torch.save_file(torch_model.state_dict(),
    path)``; needs the extra ``safetensors``). ``Dense`` weights are transposed from
    ``Linear``'s (out, in); every other array is taken as it is.

    Loading is all or nothing, as ``Module.load_state_dict``: every key, shape and dtype is
    checked first, and a mismatch leaves the model unchanged. A dtype other than the model's
    is converted when every value converts exactly (float64 values that are float32 numbers,
    int32 counts into int64); otherwise it is named as a mismatch, with how many values would
    change.

    Args:
        model: the nnkit model, built like the torch model.
        state: the torch state dict, or a safetensors file path.
        strict: require exactly the model's keys; with False, missing and unexpected keys are
            allowed, but the arrays present must still fit.

    Raises:
        StateMismatchError: (a ValueError) listing every missing or unexpected key (PyTorch's
            names), every shape and every dtype that does not fit; nothing was changed.
        TypeError: ``state`` is not a mapping or a path.
        ImportError: a path was given and safetensors is not installed.
    """
    if not isinstance(model, Module):
        raise TypeError(f"load_torch_state_dict takes an nnkit Module, got {type(model).__name__}")
    if isinstance(state, (str, os.PathLike)):
        state = load_safetensors(state)
    if not isinstance(state, Mapping):
        hint = " (pass torch_model.state_dict())" if hasattr(state, "state_dict") else ""
        raise TypeError(
            f"load_torch_state_dict takes a mapping of names to arrays or a safetensors path, "
            f"got {type(state).__name__}{hint}"
        )
    arrays = _state_arrays(model)
    layouts = _layouts(model)
    by_torch = {torch_name: name for name, (torch_name, _) in layouts.items()}
    missing = [torch_name for torch_name in by_torch if torch_name not in state]
    unexpected = [str(key) for key in state if key not in by_torch]
    problems: list[str] = []
    loaded: dict[str, Array] = {}
    for torch_name, name in by_torch.items():
        if torch_name not in state:
            continue
        target = arrays[name]
        layout = layouts[name][1]
        expected = target.shape if layout is None else layout.torch_shape(target.shape)
        value, problem = _as_array(state[torch_name])
        if value is None:
            problems.append(f"{torch_name}: {problem}")
            continue
        if value.shape != expected:
            hint = ""
            if layout is not None and value.shape == target.shape:
                hint = (
                    " (nnkit's own layout: is it nnkit's state dict? load that with "
                    "model.load_state_dict)"
                )
            problems.append(
                f"{torch_name}: shape {value.shape} in the state, {expected} expected from the "
                f"model{hint}"
            )
            continue
        converted, problem = _convert(value, target.dtype)
        if converted is None:
            problems.append(f"{torch_name}: {problem}")
            continue
        loaded[name] = converted if layout is None else layout.from_torch(converted)
    if strict and missing:
        problems.insert(0, f"missing keys: {', '.join(missing)}")
    if strict and unexpected:
        problems.insert(0, f"unexpected keys: {', '.join(unexpected)}")
    if problems:
        raise StateMismatchError(
            f"cannot load the PyTorch state dict into {type(model).__name__}; nothing was "
            "changed:\n  " + "\n  ".join(problems)
        )
    model.load_state_dict(loaded, strict=strict)


def _as_array(value: Any) -> tuple[Array | None, str]:
    """``value`` as a NumPy array (through ``.numpy()`` or ``__array__``), or the problem."""
    if isinstance(value, np.ndarray):
        return value, ""
    try:
        if callable(getattr(value, "numpy", None)):
            array = value.numpy()
            if isinstance(array, np.ndarray):
                return array, ""
        if hasattr(value, "__array__"):
            return np.asarray(value), ""
    except Exception as exc:
        return None, (
            f"the {type(value).__name__} cannot be read as a NumPy array "
            f"({type(exc).__name__}: {exc})"
        )
    return None, (
        f"expected an array (NumPy, or with .numpy() or __array__ such as a torch tensor), got "
        f"{type(value).__name__}"
    )


def _convert(value: Array, dtype: np.dtype[Any]) -> tuple[Array | None, str]:
    """``value`` in ``dtype``, if the conversion changes no value; else the problem."""
    if value.dtype == dtype:
        return value, ""
    if value.dtype.kind not in "biuf" or dtype.kind not in "biuf":
        return None, f"dtype {value.dtype} in the state, {dtype} in the model"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # NaN or inf to an integer, overflow: caught below
        converted = value.astype(dtype)
        back = converted.astype(value.dtype)
    same = back == value
    if value.dtype.kind == "f" and dtype.kind == "f":
        same |= np.isnan(value) & np.isnan(back)
    changed = value.size - int(np.count_nonzero(same))
    if changed:
        return None, (
            f"dtype {value.dtype} in the state, {dtype} in the model, and {changed} of its "
            f"{value.size} values would change in {dtype}; convert the state yourself if that "
            "is intended"
        )
    return converted, ""
