"""The training workflow: ``fit``, ``evaluate``, ``predict`` and the ``History`` fit returns.

``fit`` runs the loop every nnkit user would otherwise write by hand::

    for each epoch:                          # batches from nnkit.data.DataLoader(X, y, rng=rng)
        for xb, yb in loader:
            loss, pred = train_step(model, loss_fn, optimizer, xb, yb)
        evaluate on validation_data          # in eval mode

where the default :func:`train_step` is ``optimizer.zero_grad()``, ``pred = model(xb)``,
``loss = loss_fn(pred, yb)``, ``model.accumulate_grad(loss_fn.backward())``,
``optimizer.step()``; pass your own for gradient clipping, accumulation over micro-batches or
a custom loss.

and records, per epoch, the loss and the metrics on the training batches and on the
validation data. docs/training.md describes the workflow; this module's docstrings the details.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnkit._checks import check_int
from nnkit._fit_checks import (
    DEFAULT_METRICS,
    Inputs,
    batch_inputs,
    check_callbacks,
    check_data,
    check_inputs,
    check_loss,
    check_model,
    check_optimizer,
    check_targets,
    check_verbose,
    drops_default,
    resolve_metrics,
)
from nnkit._types import Logs
from nnkit.callbacks import Callback
from nnkit.data import DataLoader
from nnkit.history import History
from nnkit.metrics import Metric, MetricSpec
from nnkit.module import Array, Module
from nnkit.optim.optimizer import Optimizer
from nnkit.progress import Reporter, reporter

__all__ = ["History", "LossFunction", "TrainStep", "evaluate", "fit", "predict", "train_step"]

class LossFunction(Protocol):
    """What fit needs of a loss: ``loss_fn(pred, target) -> float`` and ``backward()``.

    Every ``nnkit.losses.Loss`` is one.
    """

    def __call__(self, pred: Array, target: Any) -> float: ...

    def backward(self) -> Array: ...


class TrainStep(Protocol):
    """One optimisation step on a batch: ``step(model, loss_fn, optimizer, xb, yb)``.

    Returns ``(loss, pred)``: the batch's loss as a float and the predictions the metrics are
    computed on (any array of the model's output for the whole batch).
    """

    def __call__(
        self, model: Module, loss_fn: LossFunction, optimizer: Optimizer, xb: Array, yb: Array
    ) -> tuple[float, Any]: ...


def train_step(
    model: Module, loss_fn: LossFunction, optimizer: Optimizer, xb: Array, yb: Array
) -> tuple[float, Any]:
    """The step :func:`fit` takes on every batch by default; returns ``(loss, pred)``.

    ``optimizer.zero_grad()``; ``pred = model(xb)`` (``model(*xb)`` when the model has
    several inputs and ``xb`` is their tuple); ``loss = loss_fn(pred, yb)``;
    ``model.accumulate_grad(loss_fn.backward())`` (backward's parameter gradients without the
    unused gradient of the data); ``optimizer.step()``. Write your own with the same
    signature to clip gradients (``nnkit.optim.clip_grad_norm_`` between the backward and the
    step) or to accumulate gradients over micro-batches; docs/training.md shows both.
    """
    optimizer.zero_grad()
    pred = model(*xb) if type(xb) is tuple else model(xb)
    loss = float(loss_fn(pred, yb))
    model.accumulate_grad(loss_fn.backward())
    optimizer.step()
    return loss, pred


# -- fit -----------------------------------------------------------------------------------------
def fit(
    model: Module,
    loss_fn: LossFunction,
    optimizer: Optimizer,
    X: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int,
    batch_size: int = 32,
    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
    metrics: MetricSpec | Iterable[MetricSpec] | None = DEFAULT_METRICS,
    callbacks: Callback | Iterable[Callback] = (),
    shuffle: bool = True,
    rng: np.random.Generator | None = None,
    verbose: int = 1,
    train_step: TrainStep = train_step,
    on_interrupt: Literal["raise", "return"] = "raise",
    warn_setup: bool = True,
) -> History:
    """Train ``model`` on ``(X, y)`` for ``epochs`` epochs of mini-batch steps.

    Every batch: ``loss, pred = train_step(model, loss_fn, optimizer, xb, yb)`` (by default
    :func:`train_step`: ``optimizer.zero_grad()``, ``pred = model(xb)``,
    ``loss = loss_fn(pred, yb)``, ``model.accumulate_grad(loss_fn.backward())``,
    ``optimizer.step()``), then the metrics on ``(pred, yb)``.
    Batches come from ``nnkit.data.DataLoader(X, y, batch_size=batch_size, shuffle=shuffle,
    rng=rng)``: every sample once per epoch, so a seeded ``rng`` (and a seeded model) gives the
    same History bit for bit.

    Modes: the model trains with the training flags it has when fit starts, so a module the
    user froze (``model[2].eval()`` on a model in training mode: a BatchNorm whose statistics
    stay fixed) stays in eval mode; a model that is wholly in eval mode when fit starts
    (``model.training`` False) is switched to training mode, all of it. Validation runs
    :func:`evaluate` in eval mode after each epoch, and then the training flags are put back.
    When fit returns or raises, every module has the flag it had when fit was called.

    Epoch values: the training loss of an epoch is the mean of its batch losses weighted by
    batch size, ``sum_b n_b * loss_b / N``, which for a ``"mean"`` loss is the mean loss over
    the epoch's samples (each computed with the weights of its own step, before the step). The
    training metrics are averaged the same way; validation values are computed by
    :func:`evaluate` with the weights at the end of the epoch.

    Interruption: a KeyboardInterrupt (Ctrl-C) anywhere in the loop ends training: fit sets
    ``History.interrupted``, restores the modes, calls ``on_train_end`` with the last complete
    epoch's values, and then re-raises the KeyboardInterrupt (so ``for lr in grid: fit(...)``
    stops at Ctrl-C), with the History of the complete epochs as the exception's ``history``
    attribute. With ``on_interrupt="return"`` fit instead warns (``RuntimeWarning``) and
    returns that History. The model keeps the weights of its last optimizer step.

    Args:
        model: the model to train.
        loss_fn: a loss, ``loss_fn(pred, target) -> float`` with ``loss_fn.backward()``.
        optimizer: an ``nnkit.optim`` optimizer over the model's parameters.
        X, y: inputs and targets, with the same length N >= 1 along axis 0, numeric, finite.
            For a model with several inputs (a Graph with two named inputs), X is the tuple
            ``(X1, X2)``; each batch then calls ``model(xb1, xb2)``.
        epochs: the number of passes over the data (0 trains nothing).
        batch_size: samples per batch (the last batch of an epoch may be smaller).
        validation_data: ``(X_val, y_val)`` to evaluate after every epoch.
        metrics: metric names or callables (see ``nnkit.metrics``), or a single one; ``()``
            or ``None`` for none. Left at its default ``("accuracy",)``, the metric is dropped
            when ``loss_fn`` is a built-in regression loss (``MSELoss``, ``L1Loss``,
            ``HuberLoss``): such a run logs the loss only. Pass ``metrics=("mse",)`` (or
            ``"accuracy"`` explicitly) to log a metric anyway. A custom regression loss keeps
            the default: pass ``metrics=()`` or ``metrics=("mse",)`` with it.
        callbacks: :class:`~nnkit.callbacks.Callback` instances (see ``nnkit.callbacks``), or a
            single one.
        shuffle: draw a new order of the samples every epoch.
        rng: the generator for the shuffling (None: a fresh unseeded one).
        verbose: 0 silent; 1 (the default) a bounded report: on a terminal one live status
            (a tqdm bar when tqdm is installed, the optional extra ``progress``, else one line
            rewritten in place), elsewhere at most about 20 lines (every epoch up to 20,
            else the first, every ceil(epochs/20)-th and the last); 2 one line per epoch.
        train_step: the step taken on every batch (see :class:`TrainStep`).
        on_interrupt: ``"raise"`` (re-raise a KeyboardInterrupt after cleaning up) or
            ``"return"`` (return the History of the complete epochs).
        warn_setup: run the static checks of :func:`nnkit.diagnostics.lint` first and issue
            a :class:`nnkit.diagnostics.SetupWarning` for each problem they find (targets
            that do not fit the loss, a softmax before CrossEntropyLoss, unscaled inputs, a
            one-signed initialisation, ...); False skips them.

    Returns:
        The :class:`History`.

    Raises:
        ValueError, TypeError: before training starts (before any callback runs and any
            optimizer step), for bad arguments or data: a class where an instance is needed
            (``CrossEntropyLoss`` instead of ``CrossEntropyLoss()``, the same for the
            optimizer, the model, a callback or a metric), an optimizer that holds none of the
            model's parameters, lengths that differ, an empty X, NaN or inf in X or in a float
            y, ``batch_size`` < 1, ``epochs`` < 0, an unknown metric, targets that an
            ``"accuracy"`` metric cannot read as classes (e.g. regression values), a callback
            monitoring a value fit does not log. Metrics run on each batch's predictions after
            its step; the targets of the built-in accuracy are checked before training, and a
            metric that cannot read the model's output raises on the first batch.
    """
    check_model(model, "fit")
    check_loss(loss_fn, "fit", backward=True)
    if not callable(train_step):
        raise TypeError(f"fit: train_step must be callable, got {type(train_step).__name__}")
    if on_interrupt not in ("raise", "return"):
        raise ValueError(f"fit: on_interrupt must be 'raise' or 'return', got {on_interrupt!r}")
    check_optimizer(optimizer, model)
    epochs = check_int("epochs", epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    verbose = check_verbose(verbose)
    xs, y_ = check_data(X, y, "fit: ")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(
                "validation_data must be a pair (X_val, y_val), got "
                f"{type(validation_data).__name__}"
            )
        val = check_data(*validation_data, "fit: validation_data ")
    metric_fns = resolve_metrics(metrics, loss_fn)
    dropped = list(DEFAULT_METRICS) if drops_default(metrics, loss_fn) else []
    check_targets(metric_fns, y_, "fit: y")
    if val is not None:
        check_targets(metric_fns, val[1], "fit: validation_data y")
    callbacks = check_callbacks(callbacks)
    if type(warn_setup) is not bool:
        raise TypeError(f"fit: warn_setup must be True or False, got {warn_setup!r}")
    if warn_setup:
        _warn_setup(model, loss_fn, batch_inputs(xs), y_)
    loader = DataLoader(*xs, y_, batch_size=batch_size, shuffle=shuffle, rng=rng)

    train_keys = ["loss", *metric_fns]
    log_keys = train_keys + ([f"val_{key}" for key in train_keys] if val else [])
    params = {
        "epochs": epochs,
        "batch_size": batch_size,
        "steps": len(loader),
        "samples": len(y_),
        "log_keys": log_keys,
        "dropped_metrics": dropped,
    }
    for callback in callbacks:
        callback.model, callback.optimizer = model, optimizer
        callback.params = dict(params)
        callback.stop_training = False
    for callback in callbacks:
        callback._check_setup()

    history = History()
    progress = reporter(verbose, epochs, len(loader))
    modes = _modes(model)
    if not model.training:
        model.train()
    epoch = 0
    interrupt: KeyboardInterrupt | None = None
    try:
        for callback in callbacks:
            callback.on_train_begin({})
        for epoch in range(epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            progress.epoch_begin(epoch)
            start = time.perf_counter()
            logs = _train_epoch(
                model, loss_fn, optimizer, loader, metric_fns, callbacks, progress, train_step
            )
            if logs is None:  # stopped by a callback in the middle of the epoch
                break
            if val is not None:
                val_logs = _evaluate(model, loss_fn, val[0], val[1], batch_size, metric_fns)
                logs.update({f"val_{key}": value for key, value in val_logs.items()})
            history._append(epoch, logs)
            progress.epoch_end(epoch, logs, time.perf_counter() - start)
            for callback in callbacks:
                callback.on_epoch_end(epoch, dict(logs))
            if any(callback.stop_training for callback in callbacks):
                break
    except KeyboardInterrupt as exc:
        history.interrupted = True
        interrupt = exc
    finally:
        progress.close()
        _restore_modes(modes)
        for callback in callbacks:
            callback._release()
    last = {key: values[-1] for key, values in history.history.items()}
    for callback in callbacks:
        callback.on_train_end(dict(last))
    if interrupt is not None:
        done = len(history.epoch)
        if on_interrupt == "raise":
            interrupt.history = history  # type: ignore[attr-defined]
            raise interrupt
        warnings.warn(
            f"training interrupted (KeyboardInterrupt) during epoch {epoch + 1}/{epochs}; fit "
            f"returns the History of the {done} complete epoch{'' if done == 1 else 's'}. The "
            "model keeps the weights of its last optimizer step and the training mode it had "
            "before fit.",
            RuntimeWarning,
            stacklevel=2,
        )
    return history


def _warn_setup(model: Module, loss_fn: LossFunction, X: NDArray[Any], y: NDArray[Any]) -> None:
    """One SetupWarning per problem the static checks find (see nnkit.diagnostics.lint)."""
    from nnkit.diagnostics import SetupWarning, lint

    for problem in lint(model, loss_fn, X, y):
        if problem.severity != "info":
            warnings.warn(
                f"{problem} (nnkit.diagnose(model, loss_fn, X, y) explains more; "
                "fit(..., warn_setup=False) silences this)",
                SetupWarning,
                stacklevel=3,
            )


def _train_epoch(
    model: Module,
    loss_fn: LossFunction,
    optimizer: Optimizer,
    loader: DataLoader,
    metric_fns: dict[str, Metric],
    callbacks: list[Callback],
    progress: Reporter,
    step: TrainStep,
) -> Logs | None:
    """One pass over ``loader``: the epoch's training values (batch values weighted by batch
    size), or None when a callback stopped training after a batch."""
    totals = dict.fromkeys(["loss", *metric_fns], 0.0)
    seen = 0
    for batch, arrays in enumerate(loader):
        xb, yb = batch_inputs(arrays[:-1]), arrays[-1]
        loss, pred = step(model, loss_fn, optimizer, xb, yb)
        batch_logs = {"loss": float(loss)}
        for name, metric in metric_fns.items():
            batch_logs[name] = float(metric(pred, yb))
        n = len(yb)
        seen += n
        for key, value in batch_logs.items():
            totals[key] += n * value
        progress.batch_end({key: total / seen for key, total in totals.items()})
        for callback in callbacks:
            callback.on_batch_end(batch, dict(batch_logs))
        if any(callback.stop_training for callback in callbacks):
            return None
    return {key: total / seen for key, total in totals.items()}


# -- evaluate and predict ------------------------------------------------------------------------
def evaluate(
    model: Module,
    loss_fn: LossFunction,
    X: ArrayLike,
    y: ArrayLike,
    *,
    batch_size: int = 32,
    metrics: MetricSpec | Iterable[MetricSpec] | None = DEFAULT_METRICS,
) -> dict[str, float]:
    """The loss and metrics of ``model`` on ``(X, y)``, computed in eval mode.

    Runs over batches in order (no shuffling) and averages the batch values weighted by batch
    size, as :func:`fit` does, so the result does not depend on ``batch_size`` (beyond
    rounding) for the built-in metrics and ``"mean"`` losses. The model's training flags are
    restored afterwards, also when an exception is raised. No gradient is computed.

    ``metrics`` are as for :func:`fit` (``()`` or ``None`` for none): left at its default
    ``("accuracy",)``, the metric is dropped for a built-in regression loss (``MSELoss``,
    ``L1Loss``, ``HuberLoss``), so the result is ``{"loss": ...}`` alone.

    Returns:
        ``{"loss": ..., "<metric>": ...}``.

    Raises:
        ValueError, TypeError: for bad data or arguments, as :func:`fit` does.
    """
    check_model(model, "evaluate")
    check_loss(loss_fn, "evaluate", backward=False)
    batch_size = check_int("batch_size", batch_size, 1)
    xs, y_ = check_data(X, y, "evaluate: ")
    metric_fns = resolve_metrics(metrics, loss_fn)
    check_targets(metric_fns, y_, "evaluate: y")
    return _evaluate(model, loss_fn, xs, y_, batch_size, metric_fns)


def _evaluate(
    model: Module,
    loss_fn: LossFunction,
    xs: Inputs,
    y: NDArray[Any],
    batch_size: int,
    metric_fns: dict[str, Metric],
) -> dict[str, float]:
    totals = dict.fromkeys(["loss", *metric_fns], 0.0)
    with _eval_mode(model):
        for *xbs, yb in DataLoader(*xs, y, batch_size=batch_size, shuffle=False):
            pred = model(*xbs)
            n = len(yb)
            totals["loss"] += n * float(loss_fn(pred, yb))
            for name, metric in metric_fns.items():
                totals[name] += n * float(metric(pred, yb))
    return {key: total / len(y) for key, total in totals.items()}


def predict(model: Module, X: Any, *, batch_size: int = 32) -> Any:
    """The model's outputs for ``X``, computed batch by batch in eval mode and concatenated.

    ``X`` is one array, or a tuple ``(X1, X2)`` for a model with several inputs; a model with
    several outputs gives the tuple of their concatenations. The model's training flags are
    restored afterwards, also when an exception is raised.

    Raises:
        ValueError: X is empty or a scalar, or ``batch_size`` < 1.
    """
    check_model(model, "predict")
    batch_size = check_int("batch_size", batch_size, 1)
    xs = check_inputs(X, "predict: ")
    with _eval_mode(model):
        outputs = [model(*xbs) for xbs in DataLoader(*xs, batch_size=batch_size, shuffle=False)]
    if outputs and type(outputs[0]) is tuple:
        return tuple(np.concatenate(parts) for parts in zip(*outputs, strict=True))
    return np.concatenate(outputs)


# -- modes ---------------------------------------------------------------------------------------
def _modes(model: Module) -> list[tuple[Module, bool]]:
    return [(module, module.training) for module in model.modules()]


def _restore_modes(modes: list[tuple[Module, bool]]) -> None:
    for module, training in modes:
        module.training = training


@contextmanager
def _eval_mode(model: Module) -> Iterator[None]:
    """Eval mode inside the block; afterwards every module's own flag as it was."""
    modes = _modes(model)
    model.eval()
    try:
        yield
    finally:
        _restore_modes(modes)


