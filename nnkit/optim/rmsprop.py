"""RMSprop: gradient scaled by a running RMS, optionally centered and with momentum, as PyTorch."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from nnkit.optim.optimizer import Optimizer, ParamGroup, State
from nnkit.parameter import Parameter

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture 6e; centered form from Graves 2013); PyTorch's exact rule.

    With learning rate lr, smoothing constant alpha, weight decay λ, momentum μ, at step t::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        g_t = g_t + λ θ_{t-1}                  if λ ≠ 0
        v_t = alpha v_{t-1} + (1 - alpha) g_t²     v_0 = 0
        ṽ_t = v_t
        if centered:
            ḡ_t = alpha ḡ_{t-1} + (1 - alpha) g_t  ḡ_0 = 0
            ṽ_t = max(v_t - ḡ_t², 0)
        if μ > 0:
            b_t = μ b_{t-1} + g_t / (√ṽ_t + ε)  b_0 = 0
            θ_t = θ_{t-1} - lr b_t
        else:
            θ_t = θ_{t-1} - lr g_t / (√ṽ_t + ε)

    As in PyTorch, ε is added after the square root (TensorFlow adds it inside), there is no
    bias correction, and momentum accumulates the already-normalized step. Unlike PyTorch,
    the centered ṽ_t is clamped at 0: rounding can make v_t - ḡ_t² slightly negative (e.g. a
    constant gradient in float32), where PyTorch's formula takes the root of it and gives NaN.

    Args:
        params: Parameters, or dicts defining parameter groups.
        lr: learning rate.
        alpha: smoothing constant, in [0, 1].
        eps: ε, added to the denominator for numerical stability.
        weight_decay: L2 penalty λ, added to the gradient.
        momentum: momentum factor μ.
        centered: normalize by an estimate of the gradient's variance instead of its second
            moment.
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``"step"``, ``"square_avg"`` v, ``"grad_avg"`` ḡ (centered only) and
    ``"momentum_buffer"`` b (μ > 0 only); as in PyTorch these are chosen at the first step.
    """

    _state_keys = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: ParamGroup) -> None:
        self._check_nonnegative(group, "lr", "alpha", "eps", "weight_decay", "momentum")
        self._check_flags(group, "centered", "maximize")
        if group["alpha"] > 1:
            raise ValueError(f"alpha must be in [0, 1], got {group['alpha']}")

    def _init_state(self, param: Parameter, group: ParamGroup) -> State:
        state = {"square_avg": np.zeros_like(param.data)}
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(param.data)
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(param.data)
        return state

    def _update(self, param: Parameter, state: State, group: ParamGroup) -> None:
        alpha, momentum = float(group["alpha"]), float(group["momentum"])
        grad = self._gradient(param, group, float(group["weight_decay"]))
        square_avg = state["square_avg"]
        work = self._scratch(param.data)  # every line below works in place: no allocation
        np.multiply(grad, grad, out=work)
        work *= 1 - alpha
        square_avg *= alpha
        square_avg += work
        if group["centered"]:
            grad_avg = state["grad_avg"]
            np.multiply(grad, 1 - alpha, out=work)
            grad_avg *= alpha
            grad_avg += work
            np.multiply(grad_avg, grad_avg, out=work)
            np.subtract(square_avg, work, out=work)
            np.maximum(work, 0, out=work)  # rounding can leave it just below 0 (NaN in PyTorch)
            np.sqrt(work, out=work)
        else:
            np.sqrt(square_avg, out=work)
        work += float(group["eps"])  # the denominator
        np.divide(grad, work, out=work)
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += work
            np.multiply(buf, float(group["lr"]), out=work)
        else:
            work *= float(group["lr"])
        param.data -= work
