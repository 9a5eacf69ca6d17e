"""Callbacks: code that :func:`nnkit.training.fit` runs at fixed points of training.

Subclass :class:`Callback` and override the hooks you need; fit calls them in this order::

    on_train_begin(logs={})
    for each epoch:       on_epoch_begin(epoch)
        for each batch:   on_batch_end(batch, logs)     # logs of this batch
        (validation)      on_epoch_end(epoch, logs)     # logs of the epoch
    on_train_end(logs)                                  # logs of the last complete epoch

``epoch`` and ``batch`` count from 0. Before ``on_train_begin`` fit sets ``model``,
``optimizer``, ``params`` and ``stop_training = False`` on every callback, so a callback can
read and change the model and optimizer. Setting ``self.stop_training = True`` ends training:
after the current epoch when set in ``on_epoch_end``, right after the current batch when set in
``on_batch_end`` (that unfinished epoch is then left out of the History, like an interrupted
one). ``logs`` map names to floats: ``"loss"``, each metric's name, and with validation data
``"val_loss"`` and ``"val_<metric>"`` at epoch end.
"""

from __future__ import annotations

import csv
import math
import os
import re
import string
import warnings
from typing import Any, Literal

from nnkit._types import Logs
from nnkit.module import Array, Module
from nnkit.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from nnkit.optim.optimizer import Optimizer
from nnkit.serialization import save, save_weights
from nnkit.serialization.archive import folder_error

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "TerminateOnNaN",
]

Mode = Literal["auto", "min", "max"]


class Callback:
    """Base class of callbacks: every hook does nothing.

    Attributes (set by ``fit`` before ``on_train_begin``):
        model: the model being trained.
        optimizer: the optimizer stepping it.
        params: ``{"epochs", "batch_size", "steps" (batches per epoch), "samples",
            "log_keys" (the keys of the epoch logs, e.g. ["loss", "accuracy", "val_loss",
            "val_accuracy"]), "dropped_metrics" (``["accuracy"]`` when fit dropped its default
            metric for a regression loss, else ``[]``)}``.
        stop_training: set it to True to end training (see the module docstring).
    """

    model: Module
    optimizer: Optimizer
    params: dict[str, Any]
    stop_training: bool = False

    def _check_setup(self) -> None:
        """Raise if this callback cannot work with the fit just set up (``params``, ``model``,
        ``optimizer``); fit calls it for every callback before any hook runs."""

    def on_train_begin(self, logs: Logs) -> None:
        """Called once before the first epoch (``logs`` is empty)."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Called at the start of every epoch."""

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        """Called after every optimizer step with the batch's ``"loss"`` and metrics."""

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Called after every complete epoch (and its validation) with the epoch's logs."""

    def on_train_end(self, logs: Logs) -> None:
        """Called once when training ends normally, is stopped, or is interrupted by Ctrl-C;
        ``logs`` are those of the last complete epoch (empty if there was none)."""

    def _release(self) -> None:
        """Called by fit in every case, also when an exception escapes: let go of what the
        callback holds on the model (a HealthMonitor's hooks)."""


def _check_logged(callback: Callback, monitor: str, uses: str | None = None) -> None:
    """Raise ValueError, before training starts, if fit will not log ``monitor``; the message
    gives each cause that applies (no validation data, a dropped default metric, a name that
    is neither the loss nor a metric) and the keys fit will log. It begins with ``uses``,
    what needs the value (by default "<callback class> monitors '<monitor>'")."""
    keys = callback.params["log_keys"]
    if monitor in keys:
        return
    base = monitor.removeprefix("val_")
    causes = []
    if monitor != base and "val_loss" not in keys:
        causes.append("no validation_data was passed to fit")
    if base in callback.params.get("dropped_metrics", ()):
        causes.append(
            f"fit drops its default metric {base!r} for a regression loss (pass metrics= to "
            "fit to log a metric)"
        )
    elif base not in keys:
        causes.append(f"{base!r} is neither the loss nor a metric of this fit")
    uses = uses or f"{type(callback).__name__} monitors {monitor!r}"
    raise ValueError(f"{uses}, which fit will not log: {'; '.join(causes)}; fit logs {keys}")


class _Monitor(Callback):
    """A callback that watches one logged value and knows which direction is better."""

    def __init__(self, monitor: str, mode: Mode, min_delta: float = 0.0) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not (isinstance(min_delta, (int, float)) and math.isfinite(min_delta)) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.min_delta = float(min_delta)
        base = monitor.removeprefix("val_")
        self.mode: Literal["min", "max"] = (
            ("max" if base.endswith(("accuracy", "acc")) else "min") if mode == "auto" else mode
        )
        self.best = math.inf if self.mode == "min" else -math.inf

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, current: float) -> bool:
        """True if ``current`` beats the best so far by more than ``min_delta`` (NaN never)."""
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop training when a monitored value has stopped improving.

    After each epoch the value ``logs[monitor]`` improves when it is below ``best - min_delta``
    (mode ``"min"``) or above ``best + min_delta`` (mode ``"max"``); ``"auto"`` picks ``"max"``
    for names ending in ``accuracy`` or ``acc`` and ``"min"`` otherwise. A NaN never improves.
    Training stops once more than ``patience`` epochs in a row have not improved: with
    ``patience=0`` at the first such epoch, with ``patience=2`` at the third. (That is the rule
    of ``ReduceLROnPlateau``; Keras's EarlyStopping stops one epoch earlier for the same
    number.)

    Args:
        monitor: the key to watch, e.g. ``"val_loss"``, ``"loss"``, ``"val_accuracy"``.
        patience: epochs without improvement to tolerate.
        min_delta: the smallest change that counts as an improvement (>= 0).
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        restore_best_weights: when training ends (stopped, finished or interrupted), load the
            weights of the best epoch back into the model.

    Attributes:
        best: the best value seen; ``best_epoch``: its epoch (None before one);
        stopped_epoch: the epoch after which training was stopped (None if it was not).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        mode: Mode = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, Array] | None = None

    def _check_setup(self) -> None:
        _check_logged(self, self.monitor)

    def on_train_begin(self, logs: Logs) -> None:
        self._reset()
        self.wait = 0
        self.best_epoch = self.stopped_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        current = logs[self.monitor]
        if self._improved(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.stop_training = True

    def on_train_end(self, logs: Logs) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)


class LearningRateScheduler(Callback):
    """Step a learning-rate scheduler from ``nnkit.optim.lr_scheduler`` during fit.

    With ``per="epoch"`` it calls ``scheduler.step()`` after every epoch; with ``per="batch"``
    after every batch (for per-step schedules such as ``OneCycleLR``). A
    ``ReduceLROnPlateau`` is stepped after every epoch with the monitored value:
    ``scheduler.step(logs[monitor])``. The scheduler must drive the optimizer given to fit.

    Args:
        scheduler: an ``LRScheduler`` subclass instance or a ``ReduceLROnPlateau``.
        per: ``"epoch"`` or ``"batch"`` (not for ``ReduceLROnPlateau``).
        monitor: the value a ``ReduceLROnPlateau`` receives; ignored by other schedulers.
    """

    def __init__(
        self,
        scheduler: LRScheduler | ReduceLROnPlateau,
        per: Literal["epoch", "batch"] = "epoch",
        monitor: str = "val_loss",
    ) -> None:
        if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
            raise TypeError(
                "scheduler must be an nnkit.optim.lr_scheduler scheduler, got "
                f"{type(scheduler).__name__}"
            )
        if per not in ("epoch", "batch"):
            raise ValueError(f"per must be 'epoch' or 'batch', got {per!r}")
        if per == "batch" and isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                "ReduceLROnPlateau steps once per epoch with a monitored value; use per='epoch'"
            )
        self.scheduler = scheduler
        self.per = per
        self.monitor = monitor

    def _check_setup(self) -> None:
        if self.scheduler.optimizer is not self.optimizer:
            raise ValueError(
                "the scheduler drives a different optimizer than the one passed to fit; "
                "build it on the same optimizer, e.g. StepLR(optimizer, ...)"
            )
        if isinstance(self.scheduler, ReduceLROnPlateau):
            _check_logged(self, self.monitor)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        if self.per == "batch" and isinstance(self.scheduler, LRScheduler):
            self.scheduler.step()

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(logs[self.monitor])
        elif self.per == "epoch":
            self.scheduler.step()


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite, and say where.

    It warns (``RuntimeWarning``) with the epoch and batch, counted from 1 as in the progress
    output (e.g. "epoch 3/10, batch 5/29"), and sets ``stopped_epoch`` and ``stopped_batch``
    (counted from 0, as the callback hooks are). The unfinished epoch is not in the History.
    """

    def __init__(self) -> None:
        self._epoch = 0
        self.stopped_epoch: int | None = None
        self.stopped_batch: int | None = None

    def on_train_begin(self, logs: Logs) -> None:
        self.stopped_epoch = self.stopped_batch = None

    def on_epoch_begin(self, epoch: int) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        loss = logs["loss"]
        if math.isfinite(loss):
            return
        self.stopped_epoch, self.stopped_batch = self._epoch, batch
        self.stop_training = True
        epochs, steps = self.params["epochs"], self.params["steps"]
        warnings.warn(
            f"TerminateOnNaN: the loss is {loss} at epoch {self._epoch + 1}/{epochs}, batch "
            f"{batch + 1}/{steps}; training stopped. Try a smaller learning rate, or check the "
            "data and the loss for values that overflow.",
            RuntimeWarning,
            stacklevel=2,
        )


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (from 0), then every logged value.

    The file is created (or overwritten) with its header when training begins, and each row is
    appended and flushed when its epoch ends, so the file is complete up to the last epoch even
    if the process dies. Floats are written in full precision (``repr``).

    Args:
        path: the file to write.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._keys: list[str] = []

    def on_train_begin(self, logs: Logs) -> None:
        self._keys = list(self.params["log_keys"])
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(["epoch", *self._keys])

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([epoch, *(repr(logs[key]) for key in self._keys)])


class ModelCheckpoint(_Monitor):
    """Save the model after every epoch, or only when a monitored value improves.

    The model is written with ``nnkit.serialization.save`` (architecture and weights; reload it
    with ``nnkit.serialization.load``), or with ``save_weights`` when ``save_weights_only``
    (reload with ``load_weights(path, model)``; works for module classes that are not
    registered). ``path`` may hold ``str.format`` fields: ``{epoch}`` (counted from 1, as in the
    progress output) and any logged key, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``.

    Args:
        path: the file to write (a format string, see above).
        monitor: the value that decides what is best (with ``save_best_only``).
        save_best_only: save only after epochs that improve on the best value so far (the first
            epoch always does); otherwise after every epoch.
        mode: ``"auto"``, ``"min"`` or ``"max"`` as for :class:`EarlyStopping`.
        save_weights_only: save the state dict alone.

    Attributes:
        best: the best monitored value; ``saved``: the paths written, in order.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: Mode = "auto",
        save_weights_only: bool = False,
    ) -> None:
        super().__init__(monitor, mode)
        self.path = os.fspath(path)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.saved: list[str] = []

    def _check_setup(self) -> None:
        """Check, before any training step, everything that would otherwise fail only at the
        end of the first epoch: the monitored value, the path's fields, the folder."""
        if self.save_best_only:
            _check_logged(self, self.monitor)
        keys = self.params["log_keys"]
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(self.path) if field]
        except ValueError:  # a stray brace: _format explains
            fields = []
        for field in fields:
            key = re.split(r"[.\[]", field, maxsplit=1)[0]  # "loss" of "loss.real"
            if key and not key.isdigit() and key != "epoch":
                _check_logged(self, key, f"ModelCheckpoint's path {self.path!r} uses {{{key}}}")
        path = self._format(1, dict.fromkeys(keys, 0.0))  # every other mistake in the fields
        if not re.search(r"[{}]", os.path.dirname(self.path)):  # else the folder changes
            error = folder_error(path, f"ModelCheckpoint cannot save to {self.path!r}")
            if error is not None:
                raise error

    def on_train_begin(self, logs: Logs) -> None:
        self._reset()
        self.saved = []

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.save_best_only:
            current = logs[self.monitor]
            if not self._improved(current):
                return
            self.best = current
        path = self._format(epoch + 1, logs)
        if self.save_weights_only:
            save_weights(self.model, path)
        else:
            save(self.model, path)
        self.saved.append(path)

    def _format(self, epoch: int, logs: Logs) -> str:
        """The path of the epoch (counted from 1) with these logs."""
        try:
            return self.path.format(epoch=epoch, **logs)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ValueError(
                f"ModelCheckpoint cannot fill in the path {self.path!r} ({exc!r}); use the "
                f"fields {{epoch}} and {sorted(logs)}"
            ) from exc
