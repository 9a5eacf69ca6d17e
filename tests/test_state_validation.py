"""load_state_dict of every optimizer and scheduler, and load_checkpoint, check every field's
type and range before assigning anything: a state that the constructor would refuse is
refused, and the object keeps its state."""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit import serialization as ser
from nnkit.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from nnkit.optim import lr_scheduler as sched
from nnkit.parameter import Parameter


def same(a: Any, b: Any) -> bool:
    """Exact equality of two state trees (arrays bitwise, nan equal to nan)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b, equal_nan=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b or (a != a and b != b))


def stepped(cls: type[Optimizer], **kwargs: Any) -> Optimizer:
    """An optimizer of two groups, after one step, so that it has state."""
    params = [Parameter(np.ones((2, 2))), Parameter(np.ones(3))]
    optimizer = cls([{"params": [params[0]]}, {"params": [params[1]]}], lr=0.1, **kwargs)
    for p in params:
        p.grad[...] = 0.5
    optimizer.step()
    return optimizer


def group(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state["param_groups"][0].__setitem__(key, value)


def entry(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state["state"][0].__setitem__(key, value)


# (id, optimizer, change to its state_dict, error, words in the message)
OPTIMIZER_FAULTS: list[
    tuple[str, Callable[[], Optimizer], Callable[[dict[str, Any]], None], type[Exception], str]
] = [
    (
        "step-string",
        lambda: stepped(Adam),
        entry("step", "3"),
        TypeError,
        "step must be an int, got '3'",
    ),
    ("step-negative", lambda: stepped(Adam), entry("step", -5), ValueError, "integer >= 0, got -5"),
    ("step-bool", lambda: stepped(Adagrad), entry("step", True), TypeError, "step must be an int"),
    (
        "step-fraction",
        lambda: stepped(SGD),
        entry("step", 2.5),
        ValueError,
        "integer >= 0, got 2.5",
    ),
    (
        "maximize-string",
        lambda: stepped(SGD),
        group("maximize", "no"),
        TypeError,
        "group 0: maximize must be True or False, got 'no'",
    ),
    ("amsgrad-int", lambda: stepped(Adam), group("amsgrad", 1), TypeError, "amsgrad must be True"),
    ("centered-string", lambda: stepped(RMSprop), group("centered", "yes"), TypeError, "centered"),
    (
        "lr-nan",
        lambda: stepped(AdamW),
        group("lr", float("nan")),
        ValueError,
        "lr must be a finite",
    ),
    ("lr-string", lambda: stepped(SGD), group("lr", "0.1"), TypeError, "lr must be a real number"),
    ("betas-set", lambda: stepped(Adam), group("betas", {0.999, 0.9}), TypeError, r"\(set\)"),
    ("betas-three", lambda: stepped(Adam), group("betas", [0.9, 0.99, 0.999]), ValueError, "pair"),
    ("initial_lr-string", lambda: stepped(SGD), group("initial_lr", "x"), TypeError, "initial_lr"),
    ("buffer-string", lambda: stepped(Adam), entry("exp_avg", "abc"), TypeError, "numeric array"),
    (
        "buffer-ragged",
        lambda: stepped(Adam),
        entry("exp_avg", [[1], [1, 2]]),
        TypeError,
        "not an array",
    ),
    (
        "buffer-bool",
        lambda: stepped(Adagrad),
        entry("sum", np.ones((2, 2), bool)),
        TypeError,
        "numeric",
    ),
    ("buffer-shape", lambda: stepped(Adam), entry("exp_avg", np.ones(4)), ValueError, "shape"),
    (
        "buffer-missing",
        lambda: stepped(Adam),
        lambda s: s["state"][0].pop("exp_avg"),
        ValueError,
        "lacks",
    ),
    (
        "buffer-unknown",
        lambda: stepped(Adam),
        entry("velocity", np.ones((2, 2))),
        ValueError,
        "unknown",
    ),
    ("params-string", lambda: stepped(SGD), group("params", ["abc"]), TypeError, "not an index"),
    (
        "params-twice",
        lambda: stepped(SGD),
        lambda s: s["param_groups"][1].__setitem__("params", [0]),
        ValueError,
        "parameter 0 twice",
    ),
    (
        "params-missing",
        lambda: stepped(SGD),
        lambda s: s["param_groups"][0].pop("params"),
        TypeError,
        "no list of parameter indices",
    ),
    (
        "state-id-float",
        lambda: stepped(Adam),
        lambda s: s["state"].__setitem__(0.5, s["state"].pop(0)),
        TypeError,
        "not an index",
    ),
    (
        "state-entry-list",
        lambda: stepped(Adam),
        lambda s: s["state"].__setitem__(0, [1]),
        TypeError,
        "must be a dict",
    ),
    (
        "state-not-dict",
        lambda: stepped(Adam),
        lambda s: s.__setitem__("state", [1]),
        TypeError,
        r"state_dict\['state'\] must be a dict",
    ),
    (
        "groups-not-list",
        lambda: stepped(Adam),
        lambda s: s.__setitem__("param_groups", {}),
        TypeError,
        "list of dicts",
    ),
    (
        "extra-key",
        lambda: stepped(Adam),
        lambda s: s.__setitem__("epoch", 3),
        ValueError,
        "exactly the keys",
    ),
]


@pytest.mark.parametrize(
    ("make", "change", "error", "words"),
    [f[1:] for f in OPTIMIZER_FAULTS],
    ids=[f[0] for f in OPTIMIZER_FAULTS],
)
def test_an_optimizer_refuses_a_bad_state_and_keeps_its_own(
    make: Callable[[], Optimizer],
    change: Callable[[dict[str, Any]], None],
    error: type[Exception],
    words: str,
) -> None:
    optimizer = make()
    before = optimizer.state_dict()
    bad = copy.deepcopy(before)
    change(bad)
    with pytest.raises(error, match=words):
        optimizer.load_state_dict(bad)
    assert same(optimizer.state_dict(), before)


def test_a_valid_state_with_plain_numbers_still_loads() -> None:
    """What a pickle-free round trip may turn values into: 0-d arrays, whole floats, numpy
    bools and string keys."""
    optimizer = stepped(Adam, amsgrad=True)
    state = optimizer.state_dict()
    state["state"] = {
        str(k): {**v, "step": np.asarray(float(v["step"]))} for k, v in state["state"].items()
    }
    state["param_groups"][0]["maximize"] = np.bool_(False)
    fresh = stepped(Adam, amsgrad=True)
    fresh.load_state_dict(state)
    assert fresh.state[fresh.param_groups[0]["params"][0]]["step"] == 1


def opt() -> Optimizer:
    return SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9)


def adam() -> Optimizer:
    return Adam([Parameter(np.zeros(2))], lr=0.1)


def key(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda state: state.__setitem__(name, value)


# (id, scheduler, change to its state_dict, error, words in the message)
SCHEDULER_FAULTS: list[
    tuple[str, Callable[[], Any], Callable[[dict[str, Any]], None], type[Exception], str]
] = [
    (
        "last_epoch-string",
        lambda: sched.StepLR(opt(), 2),
        key("last_epoch", "abc"),
        TypeError,
        "last_epoch must be an int, got 'abc'",
    ),
    (
        "last_epoch-negative",
        lambda: sched.StepLR(opt(), 2),
        key("last_epoch", -3),
        ValueError,
        "last_epoch must be >= 0",
    ),
    (
        "gamma-nan",
        lambda: sched.StepLR(opt(), 2),
        key("gamma", float("nan")),
        ValueError,
        "gamma must be a finite number",
    ),
    (
        "gamma-string",
        lambda: sched.ExponentialLR(opt(), 0.9),
        key("gamma", "0.9"),
        TypeError,
        "gamma must be a real number",
    ),
    (
        "empty-state",
        lambda: sched.StepLR(opt(), 2),
        lambda s: s.clear(),
        ValueError,
        r"missing keys \['_last_lr', '_step_count', 'base_lrs', 'gamma', 'last_epoch', "
        r"'step_size'\]",
    ),
    (
        "unknown-key",
        lambda: sched.StepLR(opt(), 2),
        key("warmup", 3),
        ValueError,
        r"unknown keys \['warmup'\]",
    ),
    (
        "step_size-zero",
        lambda: sched.StepLR(opt(), 2),
        key("step_size", 0),
        ValueError,
        "step_size",
    ),
    (
        "step_count-zero",
        lambda: sched.StepLR(opt(), 2),
        key("_step_count", 0),
        ValueError,
        "_step_count must be >= 1",
    ),
    (
        "base_lrs-per-group",
        lambda: sched.StepLR(opt(), 2),
        key("base_lrs", [0.1, 0.1]),
        TypeError,
        "one per parameter group",
    ),
    (
        "base_lrs-negative",
        lambda: sched.StepLR(opt(), 2),
        key("base_lrs", [-0.1]),
        ValueError,
        r"base_lrs\[0\] must be a finite number >= 0",
    ),
    (
        "last_lr-string",
        lambda: sched.LambdaLR(opt(), lambda e: 1.0),
        key("_last_lr", ["x"]),
        TypeError,
        r"_last_lr\[0\]",
    ),
    (
        "milestones-list",
        lambda: sched.MultiStepLR(opt(), [3]),
        key("milestones", [3]),
        TypeError,
        "milestones must be a dict",
    ),
    (
        "milestone-string",
        lambda: sched.MultiStepLR(opt(), [3]),
        key("milestones", {"3": 1}),
        TypeError,
        "milestones key must be an int",
    ),
    (
        "milestone-count",
        lambda: sched.MultiStepLR(opt(), [3]),
        key("milestones", {3: 0}),
        ValueError,
        r"milestones\[3\] must be >= 1",
    ),
    (
        "T_max-string",
        lambda: sched.CosineAnnealingLR(opt(), 10),
        key("T_max", "10"),
        TypeError,
        "T_max",
    ),
    (
        "eta_min-inf",
        lambda: sched.CosineAnnealingLR(opt(), 10),
        key("eta_min", float("inf")),
        ValueError,
        "eta_min",
    ),
    (
        "start_factor-zero",
        lambda: sched.LinearLR(opt()),
        key("start_factor", 0.0),
        ValueError,
        r"start_factor must be in \(0, 1\]",
    ),
    (
        "anneal-unknown",
        lambda: sched.OneCycleLR(opt(), 1.0, total_steps=10),
        key("anneal_strategy", "cubic"),
        ValueError,
        "anneal_strategy must be one of 'cos', 'linear'",
    ),
    (
        "phases-empty",
        lambda: sched.OneCycleLR(opt(), 1.0, total_steps=10),
        key("_schedule_phases", []),
        TypeError,
        "list of 2 or 3 phases",
    ),
    (
        "phase-key",
        lambda: sched.OneCycleLR(opt(), 1.0, total_steps=10),
        lambda s: s["_schedule_phases"][0].__setitem__("start_lr", "lr"),
        ValueError,
        r"_schedule_phases\[0\]\['start_lr'\] must be one of",
    ),
    (
        "cycle_momentum-string",
        lambda: sched.OneCycleLR(adam(), 1.0, total_steps=10),
        key("cycle_momentum", "yes"),
        TypeError,
        "cycle_momentum must be True or False",
    ),
    (
        "plateau-mode",
        lambda: sched.ReduceLROnPlateau(opt()),
        key("mode", "up"),
        ValueError,
        "mode must be one of 'min', 'max'",
    ),
    (
        "plateau-best-nan",
        lambda: sched.ReduceLROnPlateau(opt()),
        key("best", float("nan")),
        ValueError,
        "best must not be NaN",
    ),
    (
        "plateau-patience",
        lambda: sched.ReduceLROnPlateau(opt()),
        key("patience", -1),
        ValueError,
        "patience must be >= 0",
    ),
    (
        "plateau-min_lrs",
        lambda: sched.ReduceLROnPlateau(opt()),
        key("min_lrs", "x"),
        TypeError,
        "min_lrs must be a list",
    ),
    (
        "plateau-factor",
        lambda: sched.ReduceLROnPlateau(opt()),
        key("factor", 1.5),
        ValueError,
        r"factor must be in \[0, 1\)",
    ),
]


@pytest.mark.parametrize(
    ("make", "change", "error", "words"),
    [f[1:] for f in SCHEDULER_FAULTS],
    ids=[f[0] for f in SCHEDULER_FAULTS],
)
def test_a_scheduler_refuses_a_bad_state_and_keeps_its_own(
    make: Callable[[], Any],
    change: Callable[[dict[str, Any]], None],
    error: type[Exception],
    words: str,
) -> None:
    scheduler = make()
    before = scheduler.state_dict()
    bad = copy.deepcopy(before)
    change(bad)
    with pytest.raises(error, match=words):
        scheduler.load_state_dict(bad)
    assert same(scheduler.state_dict(), before)
    scheduler.optimizer.step()
    if isinstance(scheduler, sched.ReduceLROnPlateau):
        scheduler.step(1.0)
    else:
        scheduler.step()  # still usable


@pytest.mark.parametrize(
    "make",
    [
        lambda: sched.StepLR(opt(), 2, gamma=float("nan")),
        lambda: sched.ExponentialLR(opt(), gamma=float("inf")),
        lambda: sched.MultiStepLR(opt(), [2], gamma=float("nan")),
        lambda: sched.CosineAnnealingLR(opt(), 10, eta_min=float("nan")),
        lambda: sched.OneCycleLR(opt(), 1.0, total_steps=10, cycle_momentum="no"),
        lambda: sched.ReduceLROnPlateau(opt(), threshold=float("nan")),
    ],
    ids=["StepLR", "ExponentialLR", "MultiStepLR", "CosineAnnealingLR", "OneCycleLR", "Plateau"],
)
def test_constructors_refuse_what_load_state_dict_refuses(make: Callable[[], Any]) -> None:
    with pytest.raises((TypeError, ValueError), match=r"finite|True or False"):
        make()


# -- through a checkpoint --------------------------------------------------------------------


def build() -> tuple[nnkit.Module, Optimizer, Any]:
    model = nnkit.Sequential(nnkit.Dense(2, 2, rng=np.random.default_rng(0)))
    optimizer = Adam(model.parameters(), lr=0.1)
    return model, optimizer, sched.StepLR(optimizer, step_size=2, gamma=0.5)


def test_load_checkpoint_refuses_a_nan_gamma_and_changes_nothing(tmp_path: Path) -> None:
    model, optimizer, scheduler = build()
    scheduler.gamma = float("nan")  # a state no constructor would make
    ser.save_checkpoint(tmp_path / "c.npz", model=model, optimizer=optimizer, scheduler=scheduler)
    model, optimizer, scheduler = build()
    model[0].weight.data += 1  # type: ignore[attr-defined]
    before = (model.state_dict(), optimizer.state_dict(), scheduler.state_dict())
    with pytest.raises(ser.StateMismatchError, match="gamma must be a finite number") as info:
        ser.load_checkpoint(
            tmp_path / "c.npz", model=model, optimizer=optimizer, scheduler=scheduler
        )
    assert "nothing was changed" in str(info.value)
    after = (model.state_dict(), optimizer.state_dict(), scheduler.state_dict())
    assert same(list(after), list(before))


def set_epoch(path: Path, epoch: Any) -> None:
    with zipfile.ZipFile(path) as z:
        items = {name: z.read(name) for name in z.namelist()}
    header = json.loads(items["header.json"])
    header["epoch"] = epoch
    items["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items.items():
            z.writestr(name, data)


@pytest.mark.parametrize("epoch", [-1, "3", 2.0, True])
def test_load_checkpoint_refuses_an_epoch_that_is_not_a_count(epoch: Any, tmp_path: Path) -> None:
    model, _, _ = build()
    ser.save_checkpoint(tmp_path / "c.npz", model=model, epoch=0)
    set_epoch(tmp_path / "c.npz", epoch)
    with pytest.raises(ser.CorruptFileError, match="not an int >= 0 or null"):
        ser.load_checkpoint(tmp_path / "c.npz", model=model)


def test_save_checkpoint_refuses_a_negative_epoch(tmp_path: Path) -> None:
    model, _, _ = build()
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        ser.save_checkpoint(tmp_path / "c.npz", model=model, epoch=-1)
    assert not (tmp_path / "c.npz").exists()
