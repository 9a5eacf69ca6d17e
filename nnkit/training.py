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
from nnkit._types import Logs
from nnkit.callbacks import Callback
from nnkit.data import DataLoader
from nnkit.history import History
from nnkit.losses import HuberLoss, L1Loss, MSELoss
from nnkit.metrics import Accuracy, Metric, MetricSpec, get_metrics
from nnkit.module import Array, Module
from nnkit.optim.optimizer import Optimizer
from nnkit.progress import Reporter, reporter

__all__ = ["History", "LossFunction", "TrainStep", "evaluate", "fit", "predict", "train_step"]

_DEFAULT_METRICS: tuple[str, ...] = ("accuracy",)
"""The default of ``metrics=`` in fit and evaluate (compared by identity: see _resolve_metrics)."""

_REGRESSION_LOSSES = (MSELoss, L1Loss, HuberLoss)
"""Losses for which the default metric "accuracy" is dropped."""


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
    metrics: MetricSpec | Iterable[MetricSpec] | None = _DEFAULT_METRICS,
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
    _check_model(model, "fit")
    _check_loss(loss_fn, "fit", backward=True)
    if not callable(train_step):
        raise TypeError(f"fit: train_step must be callable, got {type(train_step).__name__}")
    if on_interrupt not in ("raise", "return"):
        raise ValueError(f"fit: on_interrupt must be 'raise' or 'return', got {on_interrupt!r}")
    _check_optimizer(optimizer, model)
    epochs = check_int("epochs", epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    verbose = _check_verbose(verbose)
    xs, y_ = _check_data(X, y, "fit: ")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(
                "validation_data must be a pair (X_val, y_val), got "
                f"{type(validation_data).__name__}"
            )
        val = _check_data(*validation_data, "fit: validation_data ")
    metric_fns = _resolve_metrics(metrics, loss_fn)
    dropped = list(_DEFAULT_METRICS) if _drops_default(metrics, loss_fn) else []
    _check_targets(metric_fns, y_, "fit: y")
    if val is not None:
        _check_targets(metric_fns, val[1], "fit: validation_data y")
    callbacks = _check_callbacks(callbacks)
    if type(warn_setup) is not bool:
        raise TypeError(f"fit: warn_setup must be True or False, got {warn_setup!r}")
    if warn_setup:
        _warn_setup(model, loss_fn, _batch_inputs(xs), y_)
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
        xb, yb = _batch_inputs(arrays[:-1]), arrays[-1]
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
    metrics: MetricSpec | Iterable[MetricSpec] | None = _DEFAULT_METRICS,
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
    _check_model(model, "evaluate")
    _check_loss(loss_fn, "evaluate", backward=False)
    batch_size = check_int("batch_size", batch_size, 1)
    xs, y_ = _check_data(X, y, "evaluate: ")
    metric_fns = _resolve_metrics(metrics, loss_fn)
    _check_targets(metric_fns, y_, "evaluate: y")
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
    _check_model(model, "predict")
    batch_size = check_int("batch_size", batch_size, 1)
    xs = _check_inputs(X, "predict: ")
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


# -- checks --------------------------------------------------------------------------------------
def _check_model(model: object, caller: str) -> None:
    if isinstance(model, type):
        raise TypeError(
            f"{caller}: model must be a model instance, got the class {model.__name__}; write "
            f"{model.__name__}(...) with its arguments"
        )
    if not isinstance(model, Module):
        raise TypeError(
            f"{caller} takes an nnkit Module as its model, got {type(model).__name__}; wrap "
            "custom code in a Module subclass"
        )


def _check_loss(loss_fn: object, caller: str, *, backward: bool) -> None:
    if isinstance(loss_fn, type):
        raise TypeError(
            f"{caller}: loss_fn must be a loss instance, got the class {loss_fn.__name__}; "
            f"write {loss_fn.__name__}()"
        )
    if not callable(loss_fn) or (backward and not callable(getattr(loss_fn, "backward", None))):
        raise TypeError(
            f"loss_fn must be a loss with loss_fn(pred, target) and loss_fn.backward(), got "
            f"{type(loss_fn).__name__}; use e.g. nnkit.CrossEntropyLoss()"
        )


def _check_optimizer(optimizer: object, model: Module) -> None:
    """An Optimizer instance that steps at least one of the model's parameters."""
    if isinstance(optimizer, type):
        raise TypeError(
            f"fit: optimizer must be an optimizer instance, got the class {optimizer.__name__}; "
            f"write {optimizer.__name__}(model.parameters())"
        )
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be an nnkit.optim.Optimizer, got {type(optimizer).__name__}; "
            "use e.g. nnkit.optim.Adam(model.parameters())"
        )
    stepped = {id(param) for group in optimizer.param_groups for param in group["params"]}
    own = [param for param in model.parameters() if id(param) in stepped]
    if not own:
        has_params = next(model.parameters(), None) is not None
        raise ValueError(
            "fit: the optimizer holds none of the model's parameters, so training would change "
            "nothing"
            + (
                "; build it on this model's parameters, e.g. "
                f"{type(optimizer).__name__}(model.parameters()) (an optimizer built on another "
                "model, or on a copy of this one, steps those parameters instead)"
                if has_params
                else " (the model has no parameters to train)"
            )
        )


def _check_callbacks(callbacks: Callback | Iterable[Callback]) -> list[Callback]:
    """A single Callback or an iterable of them, as a list."""
    if isinstance(callbacks, Callback):
        return [callbacks]
    items: list[object]
    if isinstance(callbacks, type):
        items = [callbacks]  # a class alone: reported below as callbacks[0]
    elif isinstance(callbacks, Iterable):
        items = list(callbacks)
    else:
        raise TypeError(
            f"callbacks must be a Callback or a list of Callbacks, got {type(callbacks).__name__}"
        )
    checked: list[Callback] = []
    for i, callback in enumerate(items):
        if isinstance(callback, type):
            raise TypeError(
                f"callbacks[{i}] must be a callback instance, got the class "
                f"{callback.__name__}; write {callback.__name__}(...)"
            )
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks[{i}] is a {type(callback).__name__}, not an nnkit.callbacks.Callback"
            )
        checked.append(callback)
    return checked


def _drops_default(metrics: object, loss_fn: object) -> bool:
    """True if ``metrics`` is the default ``("accuracy",)`` (the very object, not an equal
    tuple the caller passed) and ``loss_fn`` a built-in regression loss."""
    return metrics is _DEFAULT_METRICS and isinstance(loss_fn, _REGRESSION_LOSSES)


def _resolve_metrics(
    metrics: MetricSpec | Iterable[MetricSpec] | None, loss_fn: object
) -> dict[str, Metric]:
    """``get_metrics`` (None: no metrics), except that the default is dropped for a built-in
    regression loss (see _drops_default)."""
    if _drops_default(metrics, loss_fn):
        return {}
    return get_metrics(metrics, loss_fn)


def _check_targets(metric_fns: dict[str, Metric], y: NDArray[Any], where: str) -> None:
    """Check all of ``y`` against every accuracy metric before training starts."""
    for name, metric in metric_fns.items():
        if isinstance(metric, Accuracy):
            metric.check_targets(y, name=name, where=where)


def _check_verbose(verbose: int) -> int:
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(
            f"verbose must be 0 (silent), 1 (a bounded progress report) or 2 (one line per "
            "epoch), got "
            f"{verbose!r}"
        )
    return int(verbose)


def _check_array(a: ArrayLike, name: str, where: str) -> NDArray[Any]:
    array = np.asarray(a)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{where}{name} must be numeric (bool, int or float), got dtype {array.dtype}; "
            "convert it with np.asarray(..., dtype=np.float32)"
        )
    if array.ndim == 0:
        raise ValueError(
            f"{where}{name} is a scalar; it needs a sample axis first, e.g. shape (N,) or "
            "(N, features)"
        )
    if len(array) == 0:
        raise ValueError(f"{where}{name} is empty (0 samples); pass at least one sample")
    return array


Inputs = tuple[NDArray[Any], ...]
"""The model's inputs: one array, or several for a model with several inputs."""


def _check_inputs(X: Any, where: str) -> Inputs:
    """X as a tuple of numeric arrays of one length: a tuple ``(X1, X2)`` is a model's
    several inputs; anything else is one input."""
    if type(X) is tuple:
        if not X:
            raise ValueError(f"{where}X is an empty tuple; pass the model's input(s)")
        xs = tuple(_check_array(x, f"X[{i}]", where) for i, x in enumerate(X))
        if len({len(x) for x in xs}) != 1:
            raise ValueError(
                f"{where}the inputs in X have different numbers of samples "
                f"{[len(x) for x in xs]}; each input needs one row per sample"
            )
        return xs
    if isinstance(X, list) and X and all(isinstance(x, np.ndarray) for x in X):
        raise TypeError(
            f"{where}X is a list of {len(X)} arrays; pass a model's several inputs as a tuple "
            "(X1, X2), or one array as np.asarray(X)"
        )
    return (_check_array(X, "X", where),)


def _batch_inputs(xs: tuple[Any, ...]) -> Any:
    """A batch of the inputs as the model takes it: one array, or the tuple of several."""
    return xs[0] if len(xs) == 1 else xs


def _check_data(X: Any, y: ArrayLike, where: str) -> tuple[Inputs, NDArray[Any]]:
    """X (one array, or a tuple of arrays for several inputs) and y as numeric arrays of the
    same non-zero length, with no NaN or inf in floats."""
    xs = _check_inputs(X, where)
    y_ = _check_array(y, "y", where)
    if len(xs[0]) != len(y_):
        raise ValueError(
            f"{where}X has {len(xs[0])} samples but y has {len(y_)}; they must have the same "
            "length along axis 0 (one target per sample)"
        )
    named = [("X" if len(xs) == 1 else f"X[{i}]", x) for i, x in enumerate(xs)]
    for name, array in [*named, ("y", y_)]:
        if array.dtype.kind == "f":
            bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
            if bad.any():
                rows = np.flatnonzero(bad)
                raise ValueError(
                    f"{where}{name} has NaN or infinite values in {len(rows)} of "
                    f"{len(array)} samples (the first at index {rows[0]}); remove or impute "
                    "them before training"
                )
    return xs, y_
