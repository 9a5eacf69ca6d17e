"""Gradient clipping: rescale gradients by their total norm, or clamp them elementwise."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from nnkit._checks import check_real
from nnkit.parameter import Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def clip_grad_norm_(
    params: Parameter | Iterable[Parameter], max_norm: float, norm_type: float = 2.0
) -> float:
    r"""Scale all gradients together, in place, so that their total norm is at most ``max_norm``.

    The total norm treats every gradient as one concatenated vector::

        ‖g‖_p = (Σ_i Σ_j |g_ij|^p)^(1/p)          (max_ij |g_ij| for p = inf)

    and each gradient is multiplied by ``max_norm / (‖g‖_p + 1e-6)`` when that is below 1
    (PyTorch's rule, including its 1e-6), which keeps the direction of the update. A NaN or
    infinite norm is propagated into the gradients, as in PyTorch, so that it is noticed.

    Args:
        params: a Parameter or an iterable of Parameters (e.g. ``model.parameters()``).
        max_norm: the largest allowed total norm (>= 0).
        norm_type: p > 0, or ``float("inf")`` for the largest absolute value.

    Returns:
        The total norm of the gradients *before* clipping, as a float.
    """
    params = _as_list(params)
    check_real("max_norm", max_norm, minimum=0)
    if not check_real("norm_type", norm_type) > 0:
        raise ValueError(f"norm_type must be > 0, or inf, got {norm_type}")
    if not params:
        return 0.0
    norms = [np.linalg.norm(p.grad.ravel(), ord=norm_type) if p.size else 0.0 for p in params]
    total_norm = float(np.linalg.norm(np.array(norms, dtype=float), ord=norm_type))
    clip_coef = float(max_norm) / (total_norm + 1e-6)
    if clip_coef < 1.0 or math.isnan(clip_coef):
        for param in params:
            param.grad *= clip_coef
    return total_norm


def clip_grad_value_(params: Parameter | Iterable[Parameter], clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]``, in place.

    Args:
        params: a Parameter or an iterable of Parameters.
        clip_value: the largest allowed absolute value (>= 0).
    """
    params = _as_list(params)
    check_real("clip_value", clip_value, minimum=0)
    for param in params:
        np.clip(param.grad, -clip_value, clip_value, out=param.grad)


def _as_list(params: Parameter | Iterable[Parameter]) -> list[Parameter]:
    items = [params] if isinstance(params, Parameter) else list(params)
    for i, item in enumerate(items):
        if not isinstance(item, Parameter):
            raise TypeError(f"params item {i} is a {type(item).__name__}, not a Parameter")
    return items
