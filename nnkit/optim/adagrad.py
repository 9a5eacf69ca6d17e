"""Adagrad: per-coordinate steps scaled by the accumulated squared gradients, as in PyTorch."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from nnkit.optim.optimizer import Optimizer, ParamGroup, State
from nnkit.parameter import Parameter

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011); PyTorch's exact update rule.

    With learning rate lr, learning-rate decay η, weight decay λ, initial accumulator value τ,
    at step t = 1, 2, ...::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        g_t = g_t + λ θ_{t-1}                      if λ ≠ 0
        lr_t = lr / (1 + (t - 1) η)
        s_t = s_{t-1} + g_t²                       s_0 = τ
        θ_t = θ_{t-1} - lr_t g_t / (√s_t + ε)

    As in PyTorch, ε is added after the square root and the sum starts at τ
    (``initial_accumulator_value``; PyTorch's pseudocode writes s_0 = 0 but its implementation
    uses τ).

    Args:
        params: Parameters, or dicts defining parameter groups.
        lr: learning rate.
        lr_decay: η, the learning rate's decay per step.
        weight_decay: L2 penalty λ, added to the gradient.
        initial_accumulator_value: τ, the starting value of the sum of squares.
        eps: ε, added to the denominator for numerical stability.
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``"step"`` t and ``"sum"`` s.
    """

    _state_keys = ("sum",)

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: ParamGroup) -> None:
        self._check_nonnegative(
            group, "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"
        )
        self._check_flags(group, "maximize")

    def _init_state(self, param: Parameter, group: ParamGroup) -> State:
        return {"sum": np.full_like(param.data, float(group["initial_accumulator_value"]))}

    def _update(self, param: Parameter, state: State, group: ParamGroup) -> None:
        grad = self._gradient(param, group, float(group["weight_decay"]))
        clr = float(group["lr"]) / (1 + (state["step"] - 1) * float(group["lr_decay"]))
        state_sum = state["sum"]
        work = self._scratch(param.data)  # every line below works in place: no allocation
        np.multiply(grad, grad, out=work)
        state_sum += work
        np.sqrt(state_sum, out=work)
        work += float(group["eps"])
        np.divide(grad, work, out=work)
        work *= clr
        param.data -= work
