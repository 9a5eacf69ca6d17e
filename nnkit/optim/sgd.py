"""SGD: stochastic gradient descent with optional (Nesterov) momentum, as in PyTorch."""

from __future__ import annotations

from collections.abc import Iterable

from nnkit.optim.optimizer import Optimizer, ParamGroup, State
from nnkit.parameter import Parameter

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum; PyTorch's exact update rule.

    With learning rate lr, weight decay λ, momentum μ, dampening τ, at step t::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        g_t = g_t + λ θ_{t-1}                          if λ ≠ 0
        if μ ≠ 0:
            b_t = g_t                                  if t = 1
            b_t = μ b_{t-1} + (1 - τ) g_t              if t > 1
            g_t = g_t + μ b_t                          if nesterov
            g_t = b_t                                  otherwise
        θ_t = θ_{t-1} - lr g_t

    Where PyTorch differs from the textbook (Sutskever et al.), so does nnkit: the learning
    rate multiplies the whole velocity (``v = μ v + g; θ -= lr v``) instead of entering the
    velocity (``v = μ v + lr g; θ -= v``), which matters when lr changes during training; and the
    buffer starts at the first gradient, not at zero, so dampening applies from step 2 on.

    Args:
        params: Parameters, or dicts defining parameter groups.
        lr: learning rate.
        momentum: momentum factor μ (0 disables momentum and its buffer).
        dampening: dampening τ of the momentum.
        weight_decay: L2 penalty λ, added to the gradient.
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening = 0).
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``"momentum_buffer"`` b (created at the first step when μ ≠ 0).
    """

    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: ParamGroup) -> None:
        self._check_nonnegative(group, "lr", "momentum", "dampening", "weight_decay")
        self._check_flags(group, "nesterov", "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _init_state(self, param: Parameter, group: ParamGroup) -> State:
        return {}  # the momentum buffer is the first (decayed) gradient, made in _update

    def _update(self, param: Parameter, state: State, group: ParamGroup) -> None:
        momentum = group["momentum"]
        weight_decay = group["weight_decay"]
        grad = (
            self._gradient(param, group, float(weight_decay))
            if weight_decay or group["maximize"]
            else param.grad
        )
        if momentum:
            momentum = float(momentum)
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                dampening = float(group["dampening"])
                buf *= momentum
                buf += (1 - dampening) * grad if dampening else grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        # A transient temporary rather than the shared scratch buffer: the scratch would stay
        # allocated through forward and backward and raise peak memory (docs/performance.md).
        param.data -= float(group["lr"]) * grad
