"""The argument and data checks of ``fit``, ``evaluate`` and ``predict``.

Each check raises before any training step, with a message that says what is wrong and what
to write instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnkit.callbacks import Callback
from nnkit.losses import HuberLoss, L1Loss, MSELoss
from nnkit.metrics import Accuracy, Metric, MetricSpec, get_metrics
from nnkit.module import Module
from nnkit.optim.optimizer import Optimizer

DEFAULT_METRICS: tuple[str, ...] = ("accuracy",)
"""The default of ``metrics=`` in fit and evaluate (compared by identity: see resolve_metrics)."""

REGRESSION_LOSSES = (MSELoss, L1Loss, HuberLoss)
"""Losses for which the default metric "accuracy" is dropped."""


# -- checks --------------------------------------------------------------------------------------
def check_model(model: object, caller: str) -> None:
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


def check_loss(loss_fn: object, caller: str, *, backward: bool) -> None:
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


def check_optimizer(optimizer: object, model: Module) -> None:
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


def check_callbacks(callbacks: Callback | Iterable[Callback]) -> list[Callback]:
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


def drops_default(metrics: object, loss_fn: object) -> bool:
    """True if ``metrics`` is the default ``("accuracy",)`` (the very object, not an equal
    tuple the caller passed) and ``loss_fn`` a built-in regression loss."""
    return metrics is DEFAULT_METRICS and isinstance(loss_fn, REGRESSION_LOSSES)


def resolve_metrics(
    metrics: MetricSpec | Iterable[MetricSpec] | None, loss_fn: object
) -> dict[str, Metric]:
    """``get_metrics`` (None: no metrics), except that the default is dropped for a built-in
    regression loss (see drops_default)."""
    if drops_default(metrics, loss_fn):
        return {}
    return get_metrics(metrics, loss_fn)


def check_targets(metric_fns: dict[str, Metric], y: NDArray[Any], where: str) -> None:
    """Check all of ``y`` against every accuracy metric before training starts."""
    for name, metric in metric_fns.items():
        if isinstance(metric, Accuracy):
            metric.check_targets(y, name=name, where=where)


def check_verbose(verbose: int) -> int:
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(
            f"verbose must be 0 (silent), 1 (a bounded progress report) or 2 (one line per "
            "epoch), got "
            f"{verbose!r}"
        )
    return int(verbose)


def check_array(a: ArrayLike, name: str, where: str) -> NDArray[Any]:
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


def check_inputs(X: Any, where: str) -> Inputs:
    """X as a tuple of numeric arrays of one length: a tuple ``(X1, X2)`` is a model's
    several inputs; anything else is one input."""
    if type(X) is tuple:
        if not X:
            raise ValueError(f"{where}X is an empty tuple; pass the model's input(s)")
        xs = tuple(check_array(x, f"X[{i}]", where) for i, x in enumerate(X))
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
    return (check_array(X, "X", where),)


def batch_inputs(xs: tuple[Any, ...]) -> Any:
    """A batch of the inputs as the model takes it: one array, or the tuple of several."""
    return xs[0] if len(xs) == 1 else xs


def check_data(X: Any, y: ArrayLike, where: str) -> tuple[Inputs, NDArray[Any]]:
    """X (one array, or a tuple of arrays for several inputs) and y as numeric arrays of the
    same non-zero length, with no NaN or inf in floats."""
    xs = check_inputs(X, where)
    y_ = check_array(y, "y", where)
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
