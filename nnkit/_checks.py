"""Argument checks shared across nnkit: one wording for the same mistake everywhere."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int: TypeError unless it is an integer (not a bool); ValueError if below
    ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(
    name: str, value: object, minimum: float | None = None, finite: bool = False
) -> float:
    """``value`` as a float: TypeError unless it is a real number (not a bool); ValueError if it
    is below ``minimum`` or NaN (when a minimum is given), or not finite (with ``finite``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if (finite and not math.isfinite(number)) or (minimum is not None and not number >= minimum):
        need = " ".join(
            (["a finite number"] if finite else []) + ([] if minimum is None else [f">= {minimum}"])
        )
        raise ValueError(f"{name} must be {need}, got {value}")
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` as a bool: TypeError unless it is a bool (or a NumPy bool). Strings, numbers
    and None are refused: ``"no"`` is truthy, and a flag must not be read by truthiness."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of the strings ``choices``, else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def as_generator(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` itself, or a fresh unseeded Generator for None; TypeError for anything else."""
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a np.random.Generator or None, got {type(rng).__name__}; "
            "pass np.random.default_rng(seed)"
        )
    return rng
