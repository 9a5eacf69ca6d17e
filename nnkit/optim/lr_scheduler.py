"""Learning-rate schedules with PyTorch's semantics (``torch.optim.lr_scheduler``).

Call ``scheduler.step()`` once per epoch (per batch for OneCycleLR) after ``optimizer.step()``.
StepLR, MultiStepLR, ExponentialLR, LinearLR and CosineAnnealingLR use PyTorch's *chainable*
form: each step rescales the learning rate a group has now, so several schedulers on one
optimizer compose. LambdaLR and OneCycleLR set the rate from their own formula.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nnkit._checks import check_bool, check_choice, check_int, check_real
from nnkit.optim.optimizer import Optimizer, ParamGroup

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "StepLR",
]


class _Scheduler:
    """What every scheduler shares: the optimizer, get_last_lr and a plain state_dict."""

    optimizer: Optimizer
    _last_lr: list[float]
    _not_saved: tuple[str, ...] = ("optimizer",)

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an nnkit.optim.Optimizer")
        self.optimizer = optimizer

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group after the latest step."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer (and functions), as copied plain data."""
        return {
            key: copy.deepcopy(value)
            for key, value in vars(self).items()
            if key not in self._not_saved
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the attributes saved by :meth:`state_dict`.

        The state must have exactly the keys this scheduler's :meth:`state_dict` has, and
        each value the type and range the constructor would accept (the number of parameter
        groups included); everything is checked before anything is assigned, so a bad state
        leaves the scheduler as it was.

        Raises:
            TypeError, ValueError: naming the key that is wrong and what it should be.
        """
        name = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{name}.load_state_dict takes the dict state_dict() returns, got "
                f"{type(state_dict).__name__}"
            )
        expected = set(self.state_dict())
        unknown, missing = sorted(set(state_dict) - expected), sorted(expected - set(state_dict))
        if unknown or missing:
            raise ValueError(
                f"the state does not fit this {name}: "
                + "; ".join(
                    ([f"unknown keys {unknown}"] if unknown else [])
                    + ([f"missing keys {missing}"] if missing else [])
                )
            )
        checks = self._field_checks()
        for key, value in state_dict.items():
            check = checks.get(key)
            if check is None:  # an attribute of a subclass: nothing known to check
                continue
            try:
                check(key, value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"cannot load the state of this {name}: {exc}") from None
        self.__dict__.update(copy.deepcopy(dict(state_dict)))

    def _field_checks(self) -> dict[str, Check]:
        """For each attribute of the state, a check of a loaded value (raises if it is bad)."""
        groups = len(self.optimizer.param_groups)
        return {"_last_lr": _reals(groups)}


class LRScheduler(_Scheduler):
    """Base class of the epoch-indexed schedules: subclasses implement :meth:`get_lr`.

    Args:
        optimizer: the optimizer whose learning rates to schedule.
        last_epoch: the index of the last epoch; -1 (default) starts a new schedule. Any other
            value resumes one, and then every group must already have ``"initial_lr"``.

    Construction records ``group["initial_lr"]`` (the base rate) in each group that has none
    and takes the initial step, so ``last_epoch`` is 0 afterwards. ``base_lrs`` holds each
    group's ``initial_lr``; ``state_dict()`` holds plain numbers, strings and lists.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        super().__init__(optimizer)
        if last_epoch == -1:
            for group in self.optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            check_int("last_epoch", last_epoch, minimum=0)
            for i, group in enumerate(self.optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"param_groups[{i}] has no 'initial_lr', so the schedule cannot resume "
                        f"at last_epoch={last_epoch}: load the optimizer's state_dict first, or "
                        "use last_epoch=-1 for a new schedule"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in self.optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        """The learning rate of each group for epoch ``last_epoch`` (called by :meth:`step`)."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set each group's learning rate."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    @property
    def _is_initial(self) -> bool:
        """True during the step made by the constructor."""
        return self._step_count == 1

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _field_checks(self) -> dict[str, Check]:
        groups = len(self.optimizer.param_groups)
        return {
            **super()._field_checks(),
            "base_lrs": _reals(groups, minimum=0),
            "last_epoch": _int(0),
            "_step_count": _int(1),
        }


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(last_epoch)``; not chainable.

    ``lr_lambda`` is a function of the epoch index, or a list with one per parameter group. The
    functions are not part of ``state_dict()``: give the same ones when resuming.
    """

    _not_saved = ("optimizer", "lr_lambdas")

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        n_groups = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 0
        if callable(lr_lambda):
            self.lr_lambdas = [lr_lambda] * n_groups
        elif isinstance(lr_lambda, (list, tuple)) and len(lr_lambda) == n_groups:
            self.lr_lambdas = list(lr_lambda)
        else:
            raise ValueError(f"expected a function or {n_groups} lr_lambdas, got {lr_lambda!r}")
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda must be callable, got {fn!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            base_lr * fn(self.last_epoch)
            for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)
        ]


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    Alone: ``lr = initial_lr * gamma ** (last_epoch // step_size)``.
    """

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = check_real("gamma", gamma, finite=True)
        super().__init__(optimizer, last_epoch)

    def _field_checks(self) -> dict[str, Check]:
        return {**super()._field_checks(), "step_size": _int(1), "gamma": _real()}

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each epoch listed in ``milestones``.

    Alone: ``lr = initial_lr * gamma ** (number of milestones <= last_epoch)``; a milestone
    listed n times multiplies by ``gamma ** n``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        counts = Counter(check_int("milestone", m, minimum=0) for m in milestones)
        self.milestones: dict[int, int] = dict(sorted(counts.items()))
        self.gamma = check_real("gamma", gamma, finite=True)
        super().__init__(optimizer, last_epoch)

    def _field_checks(self) -> dict[str, Check]:
        return {**super()._field_checks(), "milestones": _milestones, "gamma": _real()}

    def get_lr(self) -> list[float]:
        times = self.milestones.get(self.last_epoch, 0)
        if times == 0:
            return self._current_lrs()
        return [lr * self.gamma**times for lr in self._current_lrs()]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch: alone, ``initial_lr * gamma**t``."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_real("gamma", gamma, finite=True)
        super().__init__(optimizer, last_epoch)

    def _field_checks(self) -> dict[str, Check]:
        return {**super()._field_checks(), "gamma": _real()}

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base learning rate to ``eta_min`` over ``T_max`` epochs.

    PyTorch's recursive form, which reduces to the closed form when used alone::

        lr_t = eta_min + (lr_{t-1} - eta_min) (1 + cos(π t / T_max)) / (1 + cos(π (t-1) / T_max))
        lr_t = lr_{t-1} + (initial_lr - eta_min) (1 - cos(π / T_max)) / 2
                                                         if (t - 1 - T_max) % (2 T_max) == 0
        alone:  lr_t = eta_min + (initial_lr - eta_min) (1 + cos(π t / T_max)) / 2

    Past ``T_max`` the learning rate rises again along the same cosine (no restart).
    """

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max = check_int("T_max", T_max, minimum=1)
        self.eta_min = check_real("eta_min", eta_min, finite=True)
        super().__init__(optimizer, last_epoch)

    def _field_checks(self) -> dict[str, Check]:
        return {**super()._field_checks(), "T_max": _int(1), "eta_min": _real()}

    def get_lr(self) -> list[float]:
        t, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if (t - 1 - t_max) % (2 * t_max) == 0:
            rise = (1 - math.cos(math.pi / t_max)) / 2
            return [
                lr + (base_lr - eta_min) * rise
                for lr, base_lr in zip(self._current_lrs(), self.base_lrs, strict=True)
            ]
        ratio = (1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max))
        return [eta_min + ratio * (lr - eta_min) for lr in self._current_lrs()]


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor going linearly from ``start_factor`` to ``end_factor``.

    Alone: ``lr = initial_lr * (start + (end - start) * min(t, total_iters) / total_iters)``.
    Chained, each step multiplies the current rate by ``factor(t) / factor(t - 1)``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        _start_factor("start_factor", start_factor)
        _end_factor("end_factor", end_factor)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = check_int("total_iters", total_iters, minimum=1)
        super().__init__(optimizer, last_epoch)

    def _field_checks(self) -> dict[str, Check]:
        return {
            **super()._field_checks(),
            "start_factor": _start_factor,
            "end_factor": _end_factor,
            "total_iters": _int(1),
        }

    def get_lr(self) -> list[float]:
        t, start, end = self.last_epoch, self.start_factor, self.end_factor
        if t == 0:
            return [lr * start for lr in self._current_lrs()]
        if self._is_initial or t > self.total_iters:
            return self._current_lrs()
        scale = 1 + (end - start) / (self.total_iters * start + (t - 1) * (end - start))
        return [lr * scale for lr in self._current_lrs()]


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin, 2018), stepped once per *batch*; PyTorch's semantics.

    The learning rate rises from ``initial_lr = max_lr / div_factor`` to ``max_lr`` over the
    first ``pct_start`` of ``total_steps``, then falls to ``min_lr = initial_lr /
    final_div_factor`` at step ``total_steps - 1``. Within a phase from step s0 to s1 going
    from a to b, with ``p = (t - s0) / (s1 - s0)``::

        cos:     lr = b + (a - b) (1 + cos(π p)) / 2
        linear:  lr = a + (b - a) p

    Phases end at steps ``pct_start * total_steps - 1`` and ``total_steps - 1``; with
    ``three_phase`` the fall goes back to ``initial_lr`` at ``2 * pct_start * total_steps - 2``
    and a third phase anneals to ``min_lr``. With ``cycle_momentum`` the optimizer's
    ``momentum`` (or ``beta1`` of ``betas``) moves inversely, between ``max_momentum`` and
    ``base_momentum``. Stepping more than ``total_steps`` times is an error.

    ``max_lr``, ``base_momentum`` and ``max_momentum`` are scalars or one value per group;
    ``total_steps`` may instead be given as ``epochs`` and ``steps_per_epoch``; an optimizer
    without ``momentum`` or ``betas`` (Adagrad) needs ``cycle_momentum=False``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.85,
        max_momentum: float | Sequence[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _Scheduler.__init__(self, optimizer)
        if total_steps is not None:
            self.total_steps = check_int("total_steps", total_steps, minimum=1)
        elif epochs is not None and steps_per_epoch is not None:
            epochs = check_int("epochs", epochs, minimum=1)
            self.total_steps = epochs * check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not 0 <= check_real("pct_start", pct_start) <= 1:
            raise ValueError(f"pct_start must be in [0, 1], got {pct_start}")
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        rise_end = float(pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if three_phase:
            self._schedule_phases = [
                _phase(rise_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(2 * rise_end, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                _phase(last, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._schedule_phases = [
                _phase(rise_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(last, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group, peak in zip(groups, _per_group("max_lr", max_lr, groups), strict=True):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = check_bool("cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    "optimizer must support momentum or beta1 with `cycle_momentum` option "
                    f"enabled; {type(optimizer).__name__} has neither (pass cycle_momentum=False)"
                )
            self.use_beta1 = "betas" in optimizer.defaults
            highs = _per_group("max_momentum", max_momentum, groups)
            lows = _per_group("base_momentum", base_momentum, groups)
            if last_epoch == -1:
                for group, high, low in zip(groups, highs, lows, strict=True):
                    self._set_momentum(group, high)
                    group["max_momentum"] = high
                    group["base_momentum"] = low
        super().__init__(optimizer, last_epoch)

    def _field_checks(self) -> dict[str, Check]:
        return {
            **super()._field_checks(),
            "total_steps": _int(1),
            "anneal_strategy": lambda name, value: check_choice(name, value, ("cos", "linear")),
            "_schedule_phases": _phases,
            "cycle_momentum": check_bool,
            "use_beta1": check_bool,
        }

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(
                f"Tried to step {t} times. The specified number of total steps is "
                f"{self.total_steps}"
            )
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if t <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (t - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        momentum = self._anneal(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                        )
                        self._set_momentum(group, momentum)
                    break
                start_step = end_step
        return lrs

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _set_momentum(self, group: ParamGroup, momentum: float) -> None:
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum


class ReduceLROnPlateau(_Scheduler):
    """Multiply the learning rate by ``factor`` when a metric has stopped improving.

    ``step(metric)`` (e.g. the validation loss, once per epoch) counts the epochs without
    improvement; when the count exceeds ``patience`` every group's rate becomes
    ``max(lr * factor, min_lr)`` (unless that changes it by less than ``eps``), the count
    restarts, and the next ``cooldown`` epochs are not counted. A metric improves on the best
    so far when, in mode ``"min"``, it is below ``best * (1 - threshold)`` (``threshold_mode
    "rel"``) or ``best - threshold`` (``"abs"``); in mode ``"max"``, above ``best * (1 +
    threshold)`` or ``best + threshold``. PyTorch's semantics and defaults.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(optimizer)
        _factor("factor", factor)
        self.factor = factor
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.threshold = check_real("threshold", threshold, finite=True)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.patience = check_int("patience", patience, minimum=0)
        self.cooldown = check_int("cooldown", cooldown, minimum=0)
        self.min_lrs = _per_group("min_lr", min_lr, optimizer.param_groups)
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else self.min_lrs[0]
        self.eps = check_real("eps", eps, minimum=0, finite=True)
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _field_checks(self) -> dict[str, Check]:
        return {
            **super()._field_checks(),
            "factor": _factor,
            "mode": lambda name, value: check_choice(name, value, ("min", "max")),
            "threshold": _real(),
            "threshold_mode": lambda name, value: check_choice(name, value, ("rel", "abs")),
            "patience": _int(0),
            "cooldown": _int(0),
            "min_lrs": _reals(None, minimum=0),
            "default_min_lr": _optional(_real(minimum=0)),
            "eps": _real(minimum=0),
            "last_epoch": _int(0),
            "best": _best,
            "num_bad_epochs": _int(0),
            "cooldown_counter": _int(0),
        }

    @property
    def in_cooldown(self) -> bool:
        """True while the epochs after a reduction are not being counted."""
        return self.cooldown_counter > 0

    def step(self, metrics: float) -> None:  # PyTorch's argument name
        """Record one epoch's metric and reduce the learning rates if it has plateaued."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            groups = self.optimizer.param_groups
            if len(self.min_lrs) != len(groups):  # a group was added since
                if self.default_min_lr is None:
                    raise ValueError(
                        f"the optimizer now has {len(groups)} parameter groups but min_lr gave "
                        f"{len(self.min_lrs)}; set scheduler.min_lrs to match"
                    )
                self.min_lrs = [self.default_min_lr] * len(groups)
            for group, min_lr in zip(groups, self.min_lrs, strict=True):
                old_lr = float(group["lr"])
                new_lr = max(old_lr * self.factor, min_lr)
                if old_lr - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _is_better(self, value: float) -> bool:
        best, threshold = self.best, self.threshold
        relative = self.threshold_mode == "rel"
        if self.mode == "min":
            return value < (best * (1 - threshold) if relative else best - threshold)
        return value > (best * (1 + threshold) if relative else best + threshold)


# -- helpers ---------------------------------------------------------------------------------------
def _phase(end_step: float, lr: str, lr_to: str, momentum: str, momentum_to: str) -> dict[str, Any]:
    keys = ("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum")
    return dict(zip(keys, (end_step, lr, lr_to, momentum, momentum_to), strict=True))


def _per_group(name: str, value: float | Sequence[float], groups: list[ParamGroup]) -> list[float]:
    """A scalar repeated for every group, or a list with one value per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(groups):
            raise ValueError(f"expected {len(groups)} values for {name}, got {len(value)}")
        return [check_real(name, v) for v in value]
    return [check_real(name, value)] * len(groups)


Check = Callable[[str, Any], object]
"""A check of one loaded state value, given its name: raises TypeError or ValueError."""


def _int(minimum: int) -> Check:
    return lambda name, value: check_int(name, value, minimum)


def _real(minimum: float | None = None) -> Check:
    return lambda name, value: check_real(name, value, minimum=minimum, finite=True)


def _optional(check: Check) -> Check:
    return lambda name, value: None if value is None else check(name, value)


def _reals(count: int | None, minimum: float | None = None) -> Check:
    """A list of finite reals (one per parameter group when ``count`` is given)."""

    def check(name: str, value: Any) -> None:
        if not isinstance(value, list) or (count is not None and len(value) != count):
            many = "a list" if count is None else f"a list of {count} (one per parameter group)"
            raise TypeError(f"{name} must be {many}, got {value!r}")
        for i, item in enumerate(value):
            check_real(f"{name}[{i}]", item, minimum=minimum, finite=True)

    return check


def _milestones(name: str, value: Any) -> None:
    """MultiStepLR's ``{epoch: how many times it is listed}``."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict {{epoch: count}}, got {value!r}")
    for epoch, count in value.items():
        check_int(f"{name} key", epoch, 0)
        check_int(f"{name}[{epoch}]", count, 1)


def _start_factor(name: str, value: Any) -> None:
    if not 0 < check_real(name, value) <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")


def _end_factor(name: str, value: Any) -> None:
    if not 0 <= check_real(name, value) <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _factor(name: str, value: Any) -> None:
    if not 0 <= check_real(name, value) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def _best(name: str, value: Any) -> None:
    """ReduceLROnPlateau's best metric: a real, ±inf before the first epoch, never NaN."""
    if math.isnan(check_real(name, value)):
        raise ValueError(f"{name} must not be NaN")


_PHASE_KEYS = {"end_step", "start_lr", "end_lr", "start_momentum", "end_momentum"}
_PHASE_LRS = ("initial_lr", "max_lr", "min_lr")
_PHASE_MOMENTUMS = ("max_momentum", "base_momentum")


def _phases(name: str, value: Any) -> None:
    """OneCycleLR's 2 or 3 phases, each naming the group keys it anneals between."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise TypeError(f"{name} must be a list of 2 or 3 phases, got {value!r:.200}")
    for i, phase in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(phase, dict) or set(phase) != _PHASE_KEYS:
            raise ValueError(f"{where} must be a dict with keys {sorted(_PHASE_KEYS)}")
        check_real(f"{where}['end_step']", phase["end_step"], finite=True)
        for key in ("start_lr", "end_lr"):
            check_choice(f"{where}[{key!r}]", phase[key], _PHASE_LRS)
        for key in ("start_momentum", "end_momentum"):
            check_choice(f"{where}[{key!r}]", phase[key], _PHASE_MOMENTUMS)
