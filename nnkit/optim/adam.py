"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay, as in PyTorch."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from nnkit._checks import check_real
from nnkit.optim.optimizer import Optimizer, ParamGroup, State
from nnkit.parameter import Parameter

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), optionally AMSGrad; PyTorch's exact update rule.

    With learning rate lr, betas (β1, β2), weight decay λ, at step t = 1, 2, ...::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        g_t = g_t + λ θ_{t-1}                               if λ ≠ 0 (L2 penalty)
        m_t = β1 m_{t-1} + (1 - β1) g_t                     m_0 = 0
        v_t = β2 v_{t-1} + (1 - β2) g_t²                    v_0 = 0
        m̂_t = m_t / (1 - β1^t)
        v_t^max = max(v_{t-1}^max, v_t);  v̂_t = v_t^max / (1 - β2^t)    if amsgrad
        v̂_t = v_t / (1 - β2^t)                                          otherwise
        θ_t = θ_{t-1} - lr m̂_t / (√v̂_t + ε)

    As in PyTorch, ε is added to √v̂_t (not inside the root), and AMSGrad keeps the running
    maximum of the *raw* second moment v_t and divides it by the current bias correction
    (PyTorch's implementation, and its documentation since 2.x; the AMSGrad paper and older
    PyTorch docs take the maximum of v̂_t instead). The weight decay of Adam is an L2 penalty
    that passes through the moments; for decay that does not, use :class:`AdamW`.

    Args:
        params: Parameters, or dicts defining parameter groups.
        lr: learning rate.
        betas: (β1, β2), the decay rates of the first and second moments, each in [0, 1).
        eps: ε, added to the denominator for numerical stability.
        weight_decay: λ (an L2 penalty for Adam; decoupled decay for AdamW).
        amsgrad: use the AMSGrad variant.
        maximize: maximize the objective instead of minimizing it.

    State per parameter: ``"step"`` t, ``"exp_avg"`` m, ``"exp_avg_sq"`` v and, with amsgrad,
    ``"max_exp_avg_sq"`` v^max.
    """

    _state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: ParamGroup) -> None:
        self._check_nonnegative(group, "lr", "eps", "weight_decay")
        self._check_flags(group, "amsgrad", "maximize")
        betas = group["betas"]
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence):
            raise TypeError(
                f"betas must be a tuple (beta1, beta2), got {betas!r} ({type(betas).__name__}); "
                "a set or dict has no order, so it cannot say which is beta1"
            )
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0 <= check_real(f"betas[{i}]", beta) < 1:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")

    def _init_state(self, param: Parameter, group: ParamGroup) -> State:
        state = {"exp_avg": np.zeros_like(param.data), "exp_avg_sq": np.zeros_like(param.data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(param.data)
        return state

    def _update(self, param: Parameter, state: State, group: ParamGroup) -> None:
        lr, weight_decay = float(group["lr"]), float(group["weight_decay"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        if self._decoupled_weight_decay:
            if weight_decay != 0:
                param.data *= 1 - lr * weight_decay
            grad = self._gradient(param, group, 0.0)
        else:
            grad = self._gradient(param, group, weight_decay)
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        work = self._scratch(param.data)  # every line below works in place: no allocation
        np.multiply(grad, 1 - beta1, out=work)
        exp_avg *= beta1
        exp_avg += work
        np.multiply(grad, grad, out=work)
        work *= 1 - beta2
        exp_avg_sq *= beta2
        exp_avg_sq += work
        if group["amsgrad"]:
            second = np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        else:
            second = exp_avg_sq
        # lr m̂ / (√v̂ + ε) with m̂ = m / (1 - β1^t) and √v̂ = √v / √(1 - β2^t)
        denom = np.sqrt(second, out=work)
        denom /= math.sqrt(1 - beta2**step)
        denom += float(group["eps"])
        np.divide(exp_avg, denom, out=work)
        work *= lr / (1 - beta1**step)
        param.data -= work


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019); PyTorch's exact rule.

    The same as :class:`Adam`, except that weight decay shrinks the weights directly, before
    the moments are updated, instead of being added to the gradient::

        θ_{t-1} ← θ_{t-1} (1 - lr λ)          (then Adam's update with g_t = ±∇f(θ_{t-1}))

    so the decay neither enters m and v nor is rescaled by √v̂. As in PyTorch the decay is
    multiplied by the learning rate (scheduling lr also schedules the decay), and the default
    is λ = 1e-2.
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
