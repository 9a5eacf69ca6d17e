"""Tests for nnkit.callbacks: the hooks, and each built-in callback doing its job."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    TerminateOnNaN,
)
from nnkit.datasets import blobs
from nnkit.optim import SGD, Adam
from nnkit.optim.lr_scheduler import ExponentialLR, ReduceLROnPlateau, StepLR
from nnkit.serialization import load, load_weights
from nnkit.training import History, fit

Logs = dict[str, float]
X, Y = blobs(60, centers=3, rng=np.random.default_rng(0))


def make_model(seed: int = 0) -> nnkit.Sequential:
    rng = np.random.default_rng(seed)
    return nnkit.Sequential(nnkit.Dense(2, 8, rng=rng), nnkit.Tanh(), nnkit.Dense(8, 3, rng=rng))


def scripted(values: Sequence[float], name: str = "monitored") -> Callable[[Any, Any], float]:
    """A metric that returns the next scripted value at each call (once per epoch when the
    batch holds all samples)."""
    it = iter(values)

    def metric(pred: Any, target: Any) -> float:
        return next(it)

    metric.__name__ = name
    return metric


def run(
    callbacks: Callback | Iterable[Callback],
    *,
    epochs: int = 4,
    metrics: Sequence[Any] = ("accuracy",),
    model: nnkit.Module | None = None,
    optimizer: Any = None,
    loss_fn: Any = None,
    **kwargs: Any,
) -> History:
    model = model if model is not None else make_model()
    optimizer = optimizer if optimizer is not None else SGD(model.parameters(), lr=0.1)
    kwargs = {"batch_size": 16, "verbose": 0, "rng": np.random.default_rng(0), **kwargs}
    return fit(model, loss_fn or nnkit.CrossEntropyLoss(), optimizer, X, Y, epochs=epochs,
               metrics=metrics, callbacks=callbacks, **kwargs)  # fmt: skip


class Snapshots(Callback):
    """The model's weights at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: list[dict[str, np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        self.weights.append(self.model.state_dict())


def same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- the base class and the hooks


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.batch_keys: list[str] = []
        self.epoch_keys: list[str] = []

    def on_train_begin(self, logs: Logs) -> None:
        self.events.append(f"train_begin {logs}")

    def on_epoch_begin(self, epoch: int) -> None:
        self.events.append(f"epoch_begin {epoch}")

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        self.events.append(f"batch_end {batch}")
        self.batch_keys = list(logs)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        self.events.append(f"epoch_end {epoch}")
        self.epoch_keys = list(logs)

    def on_train_end(self, logs: Logs) -> None:
        self.events.append("train_end")


def test_hooks_run_in_order_with_model_optimizer_and_params() -> None:
    recorder = Recorder()
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    run([recorder, Callback()], epochs=2, batch_size=32, model=model, optimizer=optimizer,
        validation_data=(X, Y))  # fmt: skip
    assert recorder.events == [
        "train_begin {}",
        "epoch_begin 0", "batch_end 0", "batch_end 1", "epoch_end 0",
        "epoch_begin 1", "batch_end 0", "batch_end 1", "epoch_end 1",
        "train_end",
    ]  # fmt: skip
    assert recorder.model is model and recorder.optimizer is optimizer
    assert recorder.params == {
        "epochs": 2, "batch_size": 32, "steps": 2, "samples": 60,
        "log_keys": ["loss", "accuracy", "val_loss", "val_accuracy"], "dropped_metrics": [],
    }  # fmt: skip
    assert recorder.batch_keys == ["loss", "accuracy"]
    assert recorder.epoch_keys == ["loss", "accuracy", "val_loss", "val_accuracy"]


def test_stop_training_from_on_epoch_end() -> None:
    class StopAfter(Callback):
        def on_epoch_end(self, epoch: int, logs: Logs) -> None:
            self.stop_training = epoch == 1

    stopper = StopAfter()
    assert run([stopper], epochs=10).epoch == [0, 1]
    assert run([stopper], epochs=1).epoch == [0]  # the flag is reset by the next fit


def test_callbacks_may_not_change_the_history_through_logs() -> None:
    class Meddle(Callback):
        def on_epoch_end(self, epoch: int, logs: Logs) -> None:
            logs["loss"] = -1.0

    assert all(v > 0 for v in run([Meddle()]).history["loss"])


# ---------------------------------------------------------------- EarlyStopping

# (description, monitored values per epoch, EarlyStopping arguments, epochs recorded)
EARLY: list[tuple[str, list[float], dict[str, Any], int]] = [
    ("improving never stops", [5, 4, 3, 2, 1, 0.5], {}, 6),
    ("patience 0 stops at the first bad epoch", [5, 4, 4.5, 3, 2, 1], {}, 3),
    ("equal is not better", [5, 4, 4, 3, 2, 1], {}, 3),
    ("patience 2 tolerates two", [5, 4, 4.5, 4.2, 3.9, 4.0, 4.1, 4.2, 1, 1], {"patience": 2}, 8),
    ("min_delta", [5, 4.6, 4.4, 3.0, 2.0, 1.0], {"min_delta": 0.5}, 2),
    ("mode max", [0.5, 0.6, 0.55, 0.9, 1, 1], {"mode": "max"}, 3),
    ("NaN never improves", [1.0, math.nan, 0.5, 0.4, 0.3, 0.2], {}, 2),
]  # fmt: skip


@pytest.mark.parametrize(("values", "kwargs", "recorded"), [c[1:] for c in EARLY],
                         ids=[c[0] for c in EARLY])  # fmt: skip
def test_early_stopping(values: list[float], kwargs: dict[str, Any], recorded: int) -> None:
    stopper = EarlyStopping(monitor="monitored", **kwargs)
    history = run([stopper], epochs=len(values), batch_size=60, metrics=[scripted(values)])
    assert len(history.epoch) == recorded
    assert stopper.stopped_epoch == (recorded - 1 if recorded < len(values) else None)


# how the callbacks may be given to fit: a single Callback needs no list
FORMS: dict[str, Callable[[Callback], Any]] = {
    "alone": lambda cb: cb,
    "list": lambda cb: [cb],
    "tuple": lambda cb: (cb,),
    "iterator": lambda cb: iter([cb]),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_callbacks_alone_or_in_a_collection(form: Callable[[Callback], Any]) -> None:
    stopper = EarlyStopping(monitor="monitored")
    history = run(form(stopper), epochs=5, batch_size=60, metrics=[scripted([3, 2, 2.5, 1, 0])])
    assert history.epoch == [0, 1, 2] and stopper.stopped_epoch == 2


def test_early_stopping_auto_mode_maximises_accuracy_names() -> None:
    values = [0.5, 0.7, 0.6, 0.9]
    stopper = EarlyStopping(monitor="val_accuracy")
    assert stopper.mode == "max" and EarlyStopping(monitor="val_loss").mode == "min"
    metric = scripted(values + values, name="accuracy")  # train and validation calls
    history = run([EarlyStopping(monitor="accuracy")], epochs=4, batch_size=60, metrics=[metric])
    assert len(history.epoch) == 3


def test_early_stopping_restores_the_best_weights() -> None:
    values = [3.0, 1.0, 2.0, 2.5]  # best at epoch 1, stops after epoch 3
    snapshots = Snapshots()
    model = make_model()
    stopper = EarlyStopping(monitor="monitored", patience=1, restore_best_weights=True)
    history = run([snapshots, stopper], epochs=10, batch_size=60, model=model,
                  metrics=[scripted(values)])  # fmt: skip
    assert history.epoch == [0, 1, 2, 3] and stopper.best_epoch == 1 and stopper.best == 1.0
    assert same_weights(model.state_dict(), snapshots.weights[1])
    assert not same_weights(snapshots.weights[1], snapshots.weights[3])

    model = make_model()  # without restoring, the model keeps its last weights
    snapshots = Snapshots()
    run([snapshots, EarlyStopping(monitor="monitored", patience=1)], epochs=10, batch_size=60,
        model=model, metrics=[scripted(values)])  # fmt: skip
    assert same_weights(model.state_dict(), snapshots.weights[3])


def test_early_stopping_monitoring_a_value_not_logged_fails_before_training(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match=r"'val_loss'.*no validation_data was passed to fit"):
        run([recorder, CSVLogger(tmp_path / "log.csv"), EarlyStopping()])
    assert recorder.events == [] and not (tmp_path / "log.csv").exists()  # no hook ran


Y_REG = X[:, :1] * 3.0  # regression targets


# (description, monitor, loss, y, fit's extra arguments, causes that are named, and not)
NOT_LOGGED: list[tuple[str, str, Any, Any, dict[str, Any], list[str], list[str]]] = [
    ("dropped default, validation passed", "val_accuracy", nnkit.MSELoss(), Y_REG,
     {"validation_data": (X, Y_REG)}, ["default metric 'accuracy'", "['loss', 'val_loss']"],
     ["validation_data"]),
    ("dropped default, no validation", "val_accuracy", nnkit.MSELoss(), Y_REG, {},
     ["default metric 'accuracy'", "no validation_data"], []),
    ("dropped default, training value", "accuracy", nnkit.MSELoss(), Y_REG, {},
     ["default metric 'accuracy'"], ["validation_data"]),
    ("no validation", "val_loss", nnkit.CrossEntropyLoss(), Y, {"metrics": "accuracy"},
     ["no validation_data", "['loss', 'accuracy']"], ["default metric"]),
    ("unknown name", "val_acc", nnkit.CrossEntropyLoss(), Y,
     {"metrics": "accuracy", "validation_data": (X, Y)},
     ["'acc' is neither the loss nor a metric"], ["validation_data", "default metric"]),
]  # fmt: skip


@pytest.mark.parametrize(("monitor", "loss_fn", "y", "kwargs", "named", "not_named"),
                         [c[1:] for c in NOT_LOGGED], ids=[c[0] for c in NOT_LOGGED])  # fmt: skip
def test_a_value_not_logged_is_explained_by_its_causes(
    monitor: str, loss_fn: Any, y: Any, kwargs: dict[str, Any], named: list[str],
    not_named: list[str],
) -> None:  # fmt: skip
    model = make_model() if y is Y else nnkit.Sequential(nnkit.Dense(2, 1))
    with pytest.raises(ValueError) as info:
        fit(model, loss_fn, SGD(model.parameters(), lr=0.1), X, y, epochs=1, verbose=0,
            callbacks=EarlyStopping(monitor=monitor), **kwargs)  # fmt: skip
    message = str(info.value)
    assert message.startswith(f"EarlyStopping monitors {monitor!r}, which fit will not log: ")
    assert all(words in message for words in named), message
    assert not any(words in message for words in not_named), message


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"mode": "best"}, "mode must be"), ({"patience": -1}, "patience must be"),
     ({"min_delta": -0.1}, "min_delta must be")],
)  # fmt: skip
def test_early_stopping_bad_arguments(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        EarlyStopping(**kwargs)


# ---------------------------------------------------------------- LearningRateScheduler


class LearningRates(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_epoch_begin(self, epoch: int) -> None:
        self.lrs.append(self.optimizer.param_groups[0]["lr"])


def test_scheduler_per_epoch() -> None:
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    seen = LearningRates()
    run([seen, LearningRateScheduler(StepLR(optimizer, step_size=1, gamma=0.5))], epochs=3,
        model=model, optimizer=optimizer)  # fmt: skip
    assert seen.lrs == [0.1, 0.05, 0.025]
    assert optimizer.param_groups[0]["lr"] == 0.0125


def test_scheduler_per_batch() -> None:
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    scheduler = ExponentialLR(optimizer, gamma=0.5)
    run([LearningRateScheduler(scheduler, per="batch")], epochs=2, model=model,
        optimizer=optimizer)  # fmt: skip
    assert scheduler.last_epoch == 8  # 2 epochs of 4 batches
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**8)


def test_reduce_on_plateau_gets_the_monitored_value() -> None:
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    plateau = ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    seen = LearningRates()
    values = [3.0, 2.0, 2.0, 2.5, 1.0]
    run([seen, LearningRateScheduler(plateau, monitor="monitored")], epochs=5, batch_size=60,
        model=model, optimizer=optimizer, metrics=[scripted(values)])  # fmt: skip
    assert seen.lrs == [0.1, 0.1, 0.1, 0.05, 0.025]
    assert plateau.best == 1.0


def test_scheduler_errors() -> None:
    model = make_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="per='epoch'"):
        LearningRateScheduler(ReduceLROnPlateau(optimizer), per="batch")
    with pytest.raises(ValueError, match="per must be"):
        LearningRateScheduler(StepLR(optimizer, 1), per="step")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lr_scheduler"):
        LearningRateScheduler(optimizer)  # type: ignore[arg-type]
    other = SGD(make_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="different optimizer"):
        run([LearningRateScheduler(StepLR(other, 1))], model=model, optimizer=optimizer)
    with pytest.raises(ValueError, match="monitors 'val_loss'"):
        run([LearningRateScheduler(ReduceLROnPlateau(optimizer))], model=model,
            optimizer=optimizer)  # fmt: skip


# ---------------------------------------------------------------- TerminateOnNaN


class NaNAfter(nnkit.CrossEntropyLoss):
    """Cross-entropy that returns NaN from its (calls + 1)-th call on."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls, self.nan_after = 0, calls

    def forward(self, pred: Any, target: Any) -> float:
        loss = super().forward(pred, target)
        self.calls += 1
        return math.nan if self.calls > self.nan_after else loss


def test_terminate_on_nan_stops_and_says_where() -> None:
    loss_fn = NaNAfter(6)  # 4 batches per epoch: call 7 is epoch 2, batch 3 (from 1)
    stopper = TerminateOnNaN()
    with pytest.warns(RuntimeWarning, match=r"loss is nan at epoch 2/5, batch 3/4"):
        history = run([stopper], epochs=5, loss_fn=loss_fn)
    assert (stopper.stopped_epoch, stopper.stopped_batch) == (1, 2)
    assert loss_fn.calls == 7
    assert history.epoch == [0]  # the unfinished epoch is left out
    assert np.isfinite(history.history["loss"]).all()

    loss_fn = NaNAfter(6)  # without the callback, training goes on with NaN losses
    history = run([], epochs=5, loss_fn=loss_fn)
    assert loss_fn.calls == 20 and np.isnan(history.history["loss"][-1])


def test_terminate_on_nan_catches_inf() -> None:
    class Inf(nnkit.CrossEntropyLoss):
        def forward(self, pred: Any, target: Any) -> float:
            super().forward(pred, target)
            return math.inf

    with pytest.warns(RuntimeWarning, match="loss is inf at epoch 1/5, batch 1/4"):
        assert run([TerminateOnNaN()], epochs=5, loss_fn=Inf()).epoch == []


# ---------------------------------------------------------------- CSVLogger


def test_csv_logger_writes_one_row_per_epoch(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("old content\n")
    history = run([CSVLogger(path)], epochs=3, validation_data=(X, Y))
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keys = ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert rows[0] == ["epoch", *keys]
    assert [int(row[0]) for row in rows[1:]] == [0, 1, 2]
    for epoch, row in enumerate(rows[1:]):
        assert [float(v) for v in row[1:]] == [history.history[k][epoch] for k in keys]  # exact


def test_csv_logger_keeps_complete_epochs_when_interrupted(tmp_path: Path) -> None:
    class Interrupt(Callback):
        def on_epoch_end(self, epoch: int, logs: Logs) -> None:
            if epoch == 1:
                raise KeyboardInterrupt

    path = tmp_path / "log.csv"
    with pytest.warns(RuntimeWarning, match="interrupted"):
        run([CSVLogger(path), Interrupt()], epochs=5, on_interrupt="return")
    assert len(path.read_text().splitlines()) == 3  # header and epochs 0 and 1


# ---------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_saves_only_improvements(tmp_path: Path) -> None:
    snapshots = Snapshots()
    checkpoint = ModelCheckpoint(tmp_path / "m-{epoch}.npz", monitor="monitored",
                                 save_best_only=True)  # fmt: skip
    run([snapshots, checkpoint], epochs=4, batch_size=60, metrics=[scripted([3, 2, 2.5, 1])])
    names = ["m-1.npz", "m-2.npz", "m-4.npz"]
    assert checkpoint.saved == [str(tmp_path / name) for name in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name, epoch in zip(names, [0, 1, 3], strict=True):
        restored = load(tmp_path / name)
        assert isinstance(restored, nnkit.Sequential)
        assert same_weights(restored.state_dict(), snapshots.weights[epoch])


def test_checkpoint_every_epoch_with_logged_values_in_the_name(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(tmp_path / "{epoch:02d}-{loss:.3f}.npz")
    history = run([checkpoint], epochs=2)
    assert [Path(p).name for p in checkpoint.saved] == [
        f"{e + 1:02d}-{loss:.3f}.npz" for e, loss in enumerate(history.history["loss"])
    ]


def test_checkpoint_weights_only(tmp_path: Path) -> None:
    model = make_model()
    run([ModelCheckpoint(tmp_path / "w.npz", monitor="loss", save_best_only=True,
                         save_weights_only=True)], model=model)  # fmt: skip
    weights = load_weights(tmp_path / "w.npz")
    assert same_weights(weights, model.state_dict())  # loss fell every epoch: the last is best


# (description, path in tmp_path, error, match)
BAD_PATHS: list[tuple[str, str, type[Exception], str]] = [
    ("field not logged", "x-{val_accuracy:.2f}.npz", ValueError,
     r"path '.*x-\{val_accuracy:\.2f\}\.npz' uses \{val_accuracy\}, which fit will not log: no "
     r"validation_data was passed to fit; fit logs \['loss', 'accuracy'\]"),
    ("unknown field", "{acc}.npz", ValueError, r"uses \{acc\}.*'acc' is neither the loss"),
    ("attribute of a logged field", "{val_loss.real}.npz", ValueError,
     r"uses \{val_loss\}.*no validation_data"),
    ("bad format spec", "{loss:d}.npz", ValueError, r"cannot fill in the path .*\{epoch\}"),
    ("positional field", "{}.npz", ValueError, r"cannot fill in the path .*\{epoch\}"),
    ("stray brace", "{epoch.npz", ValueError, r"cannot fill in the path"),
    ("missing folder", "nodir/x-{epoch}.npz", FileNotFoundError,
     r"ModelCheckpoint cannot save to '.*nodir/x-\{epoch\}\.npz': the folder '.*nodir' does "
     r"not exist; create it first"),
    ("a file as folder", "file.txt/x.npz", NotADirectoryError, r"file\.txt' is not a folder"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "error", "match"), [c[1:] for c in BAD_PATHS],
                         ids=[c[0] for c in BAD_PATHS])  # fmt: skip
def test_checkpoint_bad_path_fails_before_training(
    tmp_path: Path, path: str, error: type[Exception], match: str
) -> None:
    (tmp_path / "file.txt").write_text("")
    model = make_model()
    before = model.state_dict()
    recorder = Recorder()
    with pytest.raises(error, match=match):
        run([recorder, ModelCheckpoint(tmp_path / path)], epochs=1, model=model)
    assert recorder.events == []  # no hook ran, no training step was taken
    assert same_weights(model.state_dict(), before)
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_checkpoint_path_checks_accept_good_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run-1").mkdir()  # a folder with fields is filled in per epoch: not checked
    paths = ["m.npz", "run-{epoch}/m.npz", "{epoch.real}-{loss:.1e}-{{x}}.npz"]
    checkpoints = [ModelCheckpoint(path) for path in paths]
    history = run(checkpoints, epochs=1)
    loss = history.history["loss"][0]
    expected = ["m.npz", "run-1/m.npz", f"1-{loss:.1e}-{{x}}.npz"]
    assert [c.saved for c in checkpoints] == [[path] for path in expected]


def test_checkpoint_monitor_must_be_logged(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'val_loss'"):
        run([ModelCheckpoint(tmp_path / "m.npz", save_best_only=True)], epochs=1)


def test_adam_state_is_left_to_the_optimizer() -> None:
    # callbacks receive the optimizer fit uses; a callback may read its state
    class ReadState(Callback):
        def on_train_end(self, logs: Logs) -> None:
            self.steps = next(iter(self.optimizer.state.values()))["step"]

    model = make_model()
    reader = ReadState()
    run([reader], epochs=2, model=model, optimizer=Adam(model.parameters()))
    assert reader.steps == 8
