"""Learning-rate schedulers against their closed forms and PyTorch's documented values."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nnkit.optim import SGD, Adagrad, Adam, Optimizer
from nnkit.optim import lr_scheduler as sched
from nnkit.parameter import Parameter

BASE_LRS = (0.1, 0.5)
EPOCHS = 40


def _optimizer(cls: type[Optimizer] = SGD, **kwargs: Any) -> Optimizer:
    """An optimizer with two groups whose learning rates are BASE_LRS."""
    groups = [{"params": [Parameter(np.zeros(2))]}, {"params": [Parameter(np.zeros(3))]}]
    for group, lr in zip(groups, BASE_LRS, strict=True):
        group["lr"] = lr
    return cls(groups, **kwargs)


def _lrs(scheduler: Any, epochs: int = EPOCHS) -> list[list[float]]:
    """The learning rates after construction, then after each of ``epochs`` steps."""
    out = [scheduler.get_last_lr()]
    for _ in range(epochs):
        scheduler.optimizer.step()
        scheduler.step()
        assert scheduler.get_last_lr() == [g["lr"] for g in scheduler.optimizer.param_groups]
        out.append(scheduler.get_last_lr())
    return out


def _cosine(base: float, t: int, t_max: int = 10, eta_min: float = 0.01) -> float:
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def _linear(base: float, t: int, start: float, end: float, total: int) -> float:
    return base * (start + (end - start) * min(t, total) / total)


# (name, build(optimizer), closed form lr(base_lr, t))
CLOSED_FORMS: list[tuple[str, Callable[[Optimizer], Any], Callable[[float, int], float]]] = [
    ("LambdaLR", lambda o: sched.LambdaLR(o, lambda e: 1 / (1 + e)), lambda b, t: b / (1 + t)),
    ("StepLR", lambda o: sched.StepLR(o, step_size=4, gamma=0.5), lambda b, t: b * 0.5 ** (t // 4)),
    (
        "MultiStepLR",
        lambda o: sched.MultiStepLR(o, milestones=[12, 3, 7, 7], gamma=0.1),
        lambda b, t: b * 0.1 ** bisect_right([3, 7, 7, 12], t),
    ),
    ("ExponentialLR", lambda o: sched.ExponentialLR(o, gamma=0.9), lambda b, t: b * 0.9**t),
    (
        "CosineAnnealingLR",  # 40 epochs: four half-periods, down, up, down, up
        lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
        _cosine,
    ),
    (
        "LinearLR",
        lambda o: sched.LinearLR(o, start_factor=0.25, end_factor=0.8, total_iters=6),
        lambda b, t: _linear(b, t, 0.25, 0.8, 6),
    ),
    ("LinearLR-defaults", sched.LinearLR, lambda b, t: _linear(b, t, 1 / 3, 1.0, 5)),
    (
        "chain LinearLR+ExponentialLR",
        lambda o: [sched.LinearLR(o, start_factor=0.1, total_iters=5), sched.ExponentialLR(o, 0.9)],
        lambda b, t: _linear(b, t, 0.1, 1.0, 5) * 0.9**t,
    ),
    (
        "chain StepLR+MultiStepLR+ExponentialLR",
        lambda o: [
            sched.StepLR(o, 5, gamma=0.7),
            sched.MultiStepLR(o, [4, 9], gamma=0.5),
            sched.ExponentialLR(o, 0.95),
        ],
        lambda b, t: b * 0.7 ** (t // 5) * 0.5 ** bisect_right([4, 9], t) * 0.95**t,
    ),
]


class _Chain:
    """Steps several schedulers together (as a training loop does)."""

    def __init__(self, schedulers: list[Any]) -> None:
        self.schedulers = schedulers
        self.optimizer = schedulers[0].optimizer

    def step(self) -> None:
        for s in self.schedulers:
            s.step()

    def get_last_lr(self) -> list[float]:
        return self.schedulers[-1].get_last_lr()


@pytest.mark.parametrize(
    ("build", "closed_form"), [c[1:] for c in CLOSED_FORMS], ids=[c[0] for c in CLOSED_FORMS]
)
def test_matches_closed_form(build, closed_form):
    built = build(_optimizer())
    scheduler = _Chain(built) if isinstance(built, list) else built
    for t, lrs in enumerate(_lrs(scheduler)):
        expected = [closed_form(base, t) for base in BASE_LRS]
        np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=1e-15, err_msg=f"epoch {t}")


def test_pytorch_documented_values():
    # StepLR docs: lr 0.05, step_size=30, gamma=0.1: 0.05, 0.005 from 30, 0.0005 in [60, 90)
    opt = SGD([Parameter(np.zeros(1))], lr=0.05)
    lrs = [lr for (lr,) in _lrs(sched.StepLR(opt, step_size=30, gamma=0.1), 90)]
    assert lrs[:30] == [0.05] * 30
    np.testing.assert_allclose(lrs[30:60], 0.005, rtol=1e-15)
    np.testing.assert_allclose(lrs[60:90], 0.0005, rtol=1e-15)
    # MultiStepLR docs: milestones=[30, 80] -> 0.05, 0.005 from 30, 0.0005 from 80
    opt = SGD([Parameter(np.zeros(1))], lr=0.05)
    lrs = [lr for (lr,) in _lrs(sched.MultiStepLR(opt, milestones=[30, 80], gamma=0.1), 100)]
    np.testing.assert_allclose([lrs[29], lrs[30], lrs[79], lrs[80]], [0.05, 0.005, 0.005, 0.0005])
    # LinearLR docs: lr 0.05, start_factor=0.5, total_iters=4
    opt = SGD([Parameter(np.zeros(1))], lr=0.05)
    lrs = [lr for (lr,) in _lrs(sched.LinearLR(opt, start_factor=0.5, total_iters=4), 6)]
    np.testing.assert_allclose(lrs, [0.025, 0.03125, 0.0375, 0.04375, 0.05, 0.05, 0.05])


def test_construction_sets_initial_lr_and_takes_the_initial_step():
    opt = _optimizer()
    first = sched.LinearLR(opt, start_factor=0.5, total_iters=2)
    assert first.last_epoch == 0 and first.base_lrs == list(BASE_LRS)
    assert [g["initial_lr"] for g in opt.param_groups] == list(BASE_LRS)
    assert first.get_last_lr() == [0.05, 0.25]
    second = sched.ExponentialLR(opt, gamma=0.5)  # a second scheduler keeps initial_lr
    assert second.base_lrs == list(BASE_LRS) and second.get_last_lr() == [0.05, 0.25]


def test_resuming_with_last_epoch_needs_initial_lr():
    with pytest.raises(ValueError, match="initial_lr"):
        sched.StepLR(_optimizer(), step_size=2, last_epoch=5)
    opt = _optimizer()
    for group in opt.param_groups:
        group["initial_lr"] = 1.0
    resumed = sched.ExponentialLR(opt, gamma=0.5, last_epoch=3)
    assert resumed.last_epoch == 4 and resumed.base_lrs == [1.0, 1.0]
    assert resumed.get_last_lr() == list(BASE_LRS)  # the initial step keeps the current rate


@pytest.mark.parametrize(
    "build",
    [c[1] for c in CLOSED_FORMS if not c[0].startswith("chain")]
    + [
        lambda o: sched.OneCycleLR(o, max_lr=1.0, total_steps=EPOCHS + 5),
        lambda o: sched.LambdaLR(o, [lambda e: 0.9**e, lambda e: 1 + e]),
    ],
    ids=[c[0] for c in CLOSED_FORMS if not c[0].startswith("chain")] + ["OneCycleLR", "lambdas"],
)
def test_state_dict_resumes_the_schedule(build):
    opt = _optimizer()
    scheduler = build(opt)
    _lrs(scheduler, 7)
    saved_opt, saved = opt.state_dict(), scheduler.state_dict()
    assert "optimizer" not in saved and "lr_lambdas" not in saved
    assert all(not callable(v) for v in saved.values())
    expected = _lrs(scheduler, 20)

    new_opt = _optimizer()
    new_scheduler = build(new_opt)
    new_opt.load_state_dict(saved_opt)
    new_scheduler.load_state_dict(saved)
    assert _lrs(new_scheduler, 20) == expected


def test_load_state_dict_rejects_unknown_keys():
    scheduler = sched.StepLR(_optimizer(), step_size=3)
    with pytest.raises(ValueError, match="nonsense"):
        scheduler.load_state_dict({**scheduler.state_dict(), "nonsense": 1})


# -- OneCycleLR ------------------------------------------------------------------------------------
def _one_cycle(
    t, max_lr, total, pct=0.3, div=25.0, final_div=1e4, strategy="cos", hi=0.95, lo=0.85
):
    """The documented two-phase 1cycle schedule: (lr, momentum) at step t."""
    initial, minimum = max_lr / div, max_lr / div / final_div
    rise_end, last = pct * total - 1, total - 1
    if t <= rise_end:
        p, lr_ends, m_ends = t / rise_end, (initial, max_lr), (hi, lo)
    else:
        p, lr_ends, m_ends = (t - rise_end) / (last - rise_end), (max_lr, minimum), (lo, hi)

    def anneal(a, b):
        if strategy == "cos":
            return b + (a - b) * (1 + math.cos(math.pi * p)) / 2
        return a + (b - a) * p

    return anneal(*lr_ends), anneal(*m_ends)


@pytest.mark.parametrize(
    ("cls", "kwargs", "strategy"),
    [
        (SGD, dict(max_lr=[1.0, 2.0], total_steps=50), "cos"),
        (SGD, dict(max_lr=1.0, epochs=5, steps_per_epoch=10, anneal_strategy="linear"), "linear"),
        (Adam, dict(max_lr=[1.0, 2.0], total_steps=50), "cos"),
    ],
)
def test_one_cycle_matches_its_formula_and_cycles_momentum(cls, kwargs, strategy):
    opt = _optimizer(cls)
    scheduler = sched.OneCycleLR(opt, **kwargs)
    peaks = kwargs["max_lr"] if isinstance(kwargs["max_lr"], list) else [kwargs["max_lr"]] * 2
    for t in range(51):
        for group, peak in zip(opt.param_groups, peaks, strict=True):
            lr, momentum = _one_cycle(t, peak, 50, strategy=strategy)
            assert group["lr"] == pytest.approx(lr, rel=1e-12)
            actual = group["betas"][0] if cls is Adam else group["momentum"]
            assert actual == pytest.approx(momentum, rel=1e-12)
            if cls is Adam:
                assert group["betas"][1] == 0.999
        if t < 50:
            opt.step()
            scheduler.step()
    assert opt.param_groups[0]["initial_lr"] == pytest.approx(peaks[0] / 25)
    assert opt.param_groups[0]["min_lr"] == pytest.approx(peaks[0] / 25 / 1e4)
    with pytest.raises(ValueError, match="Tried to step 51 times"):
        scheduler.step()


def test_one_cycle_three_phase():
    opt = _optimizer()
    scheduler = sched.OneCycleLR(opt, max_lr=1.0, total_steps=100, three_phase=True)
    lrs = [lr for lr, _ in _lrs(scheduler, 100)]
    # rises to max_lr at step 29, back to initial_lr at step 58, then down to min_lr at 99
    assert lrs[0] == pytest.approx(0.04) and lrs[29] == pytest.approx(1.0)
    assert lrs[58] == pytest.approx(0.04) and lrs[99] == pytest.approx(0.04 / 1e4)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: sched.OneCycleLR(_optimizer(), 1.0), ValueError, "total_steps OR"),
        (
            lambda: sched.OneCycleLR(_optimizer(), 1.0, total_steps=0),
            ValueError,
            "total_steps must be >= 1, got 0",
        ),
        (lambda: sched.OneCycleLR(_optimizer(), 1.0, 10, pct_start=1.5), ValueError, "1.5"),
        (lambda: sched.OneCycleLR(_optimizer(), 1.0, 10, anneal_strategy="x"), ValueError, "'x'"),
        (lambda: sched.OneCycleLR(_optimizer(), [1.0], 10), ValueError, "expected 2 values"),
        (lambda: sched.OneCycleLR(_optimizer(Adagrad), 1.0, 10), ValueError, "momentum or beta1"),
        (
            lambda: sched.StepLR(_optimizer(), step_size=0),
            ValueError,
            "step_size must be >= 1, got 0",
        ),
        (lambda: sched.StepLR(_optimizer(), step_size=2.5), TypeError, "2.5"),
        (
            lambda: sched.CosineAnnealingLR(_optimizer(), T_max=0),
            ValueError,
            "T_max must be >= 1, got 0",
        ),
        (
            lambda: sched.LinearLR(_optimizer(), start_factor=0),
            ValueError,
            r"start_factor must be in \(0, 1\], got 0",
        ),
        (
            lambda: sched.LinearLR(_optimizer(), end_factor=1.5),
            ValueError,
            r"end_factor must be in \[0, 1\], got 1.5",
        ),
        (lambda: sched.LambdaLR(_optimizer(), [lambda e: 1.0]), ValueError, "2 lr_lambdas"),
        (lambda: sched.ExponentialLR(object(), 0.9), TypeError, "not an nnkit.optim.Optimizer"),
        (
            lambda: sched.ReduceLROnPlateau(_optimizer(), factor=1.0),
            ValueError,
            r"factor must be in \[0, 1\), got 1.0",
        ),
        (lambda: sched.ReduceLROnPlateau(_optimizer(), mode="up"), ValueError, "'up'"),
        (lambda: sched.ReduceLROnPlateau(_optimizer(), threshold_mode="x"), ValueError, "'x'"),
        (lambda: sched.ReduceLROnPlateau(_optimizer(), min_lr=[0.1]), ValueError, "expected 2"),
    ],
)
def test_argument_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_one_cycle_without_momentum_cycling_works_with_adagrad():
    opt = _optimizer(Adagrad)
    scheduler = sched.OneCycleLR(opt, max_lr=1.0, total_steps=10, cycle_momentum=False)
    assert scheduler.get_last_lr() == pytest.approx([0.04, 0.04], rel=1e-12)


# -- ReduceLROnPlateau ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "metrics", "expected"),
    [
        # patience 2: the third epoch in a row without improvement reduces the rate
        (
            dict(patience=2, factor=0.5),
            [10, 9, 9, 9, 9, 8, 8, 8, 8],
            [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25],
        ),
        # improvements smaller than the relative threshold do not count
        (dict(patience=0, threshold=0.1), [10, 9.5, 9.5, 8.9], [1, 0.1, 0.01, 0.01]),
        # cooldown: epochs right after a reduction are not counted as bad
        (dict(patience=0, cooldown=2), [1] * 8, [1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001]),
        # min_lr floors the rate; a change smaller than eps is not applied
        (dict(patience=0, min_lr=0.05), [1] * 5, [1, 0.1, 0.05, 0.05, 0.05]),
        (dict(patience=0, eps=0.5), [1] * 3, [1, 0.1, 0.1]),
        # mode max with an absolute threshold
        (
            dict(mode="max", threshold_mode="abs", threshold=0.5, patience=0),
            [1, 1.4, 1.6, 1.7],
            [1, 0.1, 0.1, 0.01],
        ),
        (dict(mode="max", patience=0, threshold=0.1), [1, 1.05, 1.2, 1.25], [1, 0.1, 0.1, 0.01]),
        # abs in min mode
        (
            dict(threshold_mode="abs", threshold=1.0, patience=0),
            [5, 4.5, 3.9, 3.5],
            [1, 0.1, 0.1, 0.01],
        ),
    ],
)
def test_reduce_on_plateau(kwargs, metrics, expected):
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    scheduler = sched.ReduceLROnPlateau(opt, **kwargs)
    lrs = []
    for metric in metrics:
        scheduler.step(metric)
        lrs.append(scheduler.get_last_lr()[0])
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert scheduler.last_epoch == len(metrics)


def test_reduce_on_plateau_defaults_per_group_min_lr_and_state_dict():
    opt = _optimizer()
    scheduler = sched.ReduceLROnPlateau(opt, min_lr=[0.05, 0.0])
    assert (scheduler.mode, scheduler.factor, scheduler.patience) == ("min", 0.1, 10)
    assert (scheduler.threshold, scheduler.threshold_mode, scheduler.cooldown) == (1e-4, "rel", 0)
    assert scheduler.eps == 1e-8 and scheduler.get_last_lr() == list(BASE_LRS)
    for _ in range(12):
        scheduler.step(1.0)
    assert scheduler.get_last_lr() == pytest.approx([0.05, 0.05])
    saved = scheduler.state_dict()
    fresh = sched.ReduceLROnPlateau(_optimizer(), min_lr=[0.05, 0.0])
    fresh.load_state_dict(saved)
    assert fresh.best == 1.0 and fresh.num_bad_epochs == scheduler.num_bad_epochs
    assert fresh.state_dict() == saved


def test_reduce_on_plateau_after_a_group_is_added():
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    scalar = sched.ReduceLROnPlateau(opt, patience=0, min_lr=0.2)
    per_group = sched.ReduceLROnPlateau(opt, patience=0, min_lr=[0.2])
    opt.add_param_group({"params": [Parameter(np.zeros(1))], "lr": 1.0})
    scalar.step(1.0)
    scalar.step(1.0)
    assert scalar.get_last_lr() == [0.2, 0.2]
    per_group.step(1.0)
    with pytest.raises(ValueError, match="min_lr gave 1"):
        per_group.step(1.0)
