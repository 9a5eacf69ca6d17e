"""Metrics: ``value = metric(pred, target)``, a Python float for one batch.

``fit`` and ``evaluate`` take metrics by name (``"accuracy"``, ``"mse"``, ``"mae"``) or as any
callable ``metric(pred, target) -> float``. ``pred`` is the model's output for a batch, as it
comes out of the model (logits, probabilities, regression values); ``target`` is the batch's
``y``. How each built-in reads them (docs/training.md has a table):

- :class:`Accuracy` -- the fraction of samples whose predicted class is the target class.

  * **multiclass**, ``pred`` of shape (N, C) with C >= 2: the predicted class is
    ``argmax(pred, axis=1)``, which is the same for logits, probabilities and
    log-probabilities. ``target`` is integer class indices of shape (N,), or one-hot or
    probability rows of shape (N, C) with values in [0, 1] (then the target class is their
    argmax; rows with other values, such as regression targets, are an error).
  * **multiclass N-D**, ``pred`` of shape (N, C, d1, ...) (classes on axis 1, as
    ``CrossEntropyLoss`` reads it: a class per time step or per pixel): the same, position by
    position, with targets of shape (N, d1, ...) or of pred's shape; the accuracy is the
    fraction of correct positions. Ignored targets (``ignore_index``) are not supported:
    pass a callable.
  * **binary**, ``pred`` of shape (N,) or (N, 1): class 1 is ``pred > 0.5`` for
    probabilities, ``pred > 0`` for logits (``from_logits=True``); the two agree because
    ``sigmoid(0) = 0.5``. ``target`` has N values in [0, 1], shape (N,) or (N, 1); class 1 is
    ``target > 0.5``. With probabilities, a prediction outside [0, 1] is an error: the model
    outputs logits (or it is a regression), and thresholding at 0.5 would be silently wrong.

  The name ``"accuracy"`` resolves to ``Accuracy(from_logits=True)`` when the loss is
  :class:`~nnkit.BCEWithLogitsLoss` and to ``Accuracy()`` otherwise (see :func:`get_metric`).
  ``fit`` and ``evaluate`` check all of ``y`` with :meth:`Accuracy.check_targets` before
  they start, so targets that cannot be classes (regression values) fail up front; regression
  targets that happen to lie in [0, 1] pass that check and fail later, at the first
  prediction outside [0, 1]. Accuracy's errors say what to do for a classifier and for a
  regression.
  Multi-label outputs (several independent sigmoid columns) are not covered: pass a callable.
- :func:`mse` -- ``mean((pred - target)^2)``, :func:`mae` -- ``mean(|pred - target|)``, over all
  elements; ``pred`` and ``target`` must have the same shape (no broadcasting).

Every metric of a batch is a mean over its samples, so the epoch value that ``fit`` reports
(the batch values averaged with the batch sizes as weights) is the metric of the whole epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnkit.losses import BCEWithLogitsLoss

__all__ = ["Accuracy", "Metric", "get_metric", "get_metrics", "mae", "mse"]

Metric = Callable[[Any, Any], float]
"""A metric: ``metric(pred, target) -> float``."""

MetricSpec = str | Metric
"""A metric name (``"accuracy"``, ``"mse"``, ``"mae"``) or a callable."""

_FOR_REGRESSION = (
    'for a regression, pass metrics=() or metrics=("mse",) (fit drops its default "accuracy" '
    "by itself only for MSELoss, L1Loss and HuberLoss)"
)
"""The end of accuracy's errors: what a regression model (e.g. one with a custom loss) does."""


class Accuracy:
    """The fraction of correctly classified samples, binary or multiclass by ``pred``'s shape.

    Shapes and thresholds (see the module docstring):

    ============  ================================  =========================================
    pred          target                            predicted / target class
    ============  ================================  =========================================
    (N, C), C>=2  (N,) integer class indices        argmax(pred, 1) / target
    (N, C), C>=2  (N, C) one-hot or probabilities   argmax(pred, 1) / argmax(target, 1)
                  in [0, 1]
    (N, C, d...)  (N, d...) indices, or pred's      the same, at every position
                  shape (one-hot or probabilities)
    (N,), (N, 1)  (N,) or (N, 1) values in [0, 1]   pred > 0.5 (pred > 0 if from_logits) /
                                                    target > 0.5
    ============  ================================  =========================================

    Args:
        from_logits: for binary outputs, read ``pred`` as logits (threshold 0) instead of
            probabilities in [0, 1] (threshold 0.5). Multiclass outputs ignore it.
    """

    __name__ = "accuracy"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        p, t = _numeric("accuracy", "pred", pred), _numeric("accuracy", "target", target)
        if p.ndim == 0 or p.shape[0] == 0 or (p.ndim > 2 and p.shape[1] < 2):
            raise ValueError(
                f"accuracy expects pred of shape (N, C) or (N, C, d1, ...) for classes (C >= 2) "
                f"or (N,) / (N, 1) for binary outputs with N >= 1, got {p.shape}"
            )
        n = p.shape[0]
        if p.ndim > 2 or (p.ndim == 2 and p.shape[1] >= 2):
            return _multiclass(p, t)
        if t.shape not in ((n,), (n, 1)):
            raise ValueError(
                f"binary accuracy expects target of shape ({n},) or ({n}, 1) for pred of shape "
                f"{p.shape}, got {t.shape}"
            )
        if np.any(t < 0) or np.any(t > 1):
            raise ValueError(
                f"binary accuracy expects targets in [0, 1], got values in "
                f"[{t.min()}, {t.max()}]; for class indices use a pred with one column per "
                f"class; {_FOR_REGRESSION}"
            )
        p = p.reshape(n)
        if self.from_logits:
            predicted = p > 0
        else:
            if np.any(p < 0) or np.any(p > 1):
                raise ValueError(
                    f"binary accuracy expects probabilities in [0, 1] (threshold 0.5), got "
                    f"predictions in [{np.nanmin(p)}, {np.nanmax(p)}]. If this is a classifier "
                    "that outputs logits, use Accuracy(from_logits=True) (threshold 0) or end "
                    f"the model with Sigmoid; {_FOR_REGRESSION}"
                )
            predicted = p > 0.5
        return float(np.mean(predicted == (t.reshape(n) > 0.5)))

    def check_targets(self, target: ArrayLike, *, name: str = "accuracy", where: str = "y") -> None:
        """Raise ValueError if no model output could make ``target`` valid class labels.

        Valid targets are, for some output shape: values in [0, 1] (binary targets, one-hot or
        probability rows), or non-negative integer class indices of shape (N,). Anything else
        (negative values, floats above 1, such as regression targets) fails here, with a
        message naming the metric (``name``) and the data (``where``). ``fit`` and
        ``evaluate`` call this on the whole ``y`` before they start; the checks that need the
        output's shape run on every batch.
        """
        t = np.asarray(target)
        if t.dtype.kind not in "biuf" or t.size == 0 or t.dtype.kind == "b":
            return  # other checks report non-numeric or empty targets
        in_unit = bool(np.all((t >= 0) & (t <= 1)))
        # (N,) indices, or (N, d1, ...) for N-D outputs; (N, 1) is refused below: it is far
        # more often a column of labels than a sequence of length 1
        column = t.ndim == 2 and t.shape[1] == 1
        indices = t.ndim >= 1 and not column and t.dtype.kind in "iu" and bool(np.all(t >= 0))
        if in_unit or indices:
            return
        integral = bool(np.all(t == np.round(t)))
        if integral and bool(np.any(t < 0)):
            hint = "class indices start at 0 (map -1/1 labels with (y > 0).astype(int)); "
        elif integral and t.ndim == 1:
            hint = "if they are class indices, convert them with y.astype(int); "
        elif integral and t.ndim == 2 and t.shape[1] == 1:
            hint = "if they are class indices, pass them as integers of shape (N,); "
        else:
            hint = "they look like regression values; "
        raise ValueError(
            f"{where} cannot be read by the metric {name!r}: accuracy needs class labels "
            "(integer class indices of shape (N,), binary targets in [0, 1], or one-hot or "
            f"probability rows in [0, 1]), got {t.dtype} values {_value_range(t)} of shape "
            f"{t.shape}; {hint}{_FOR_REGRESSION}"
        )

    def __repr__(self) -> str:
        return f"Accuracy(from_logits={self.from_logits})"


def _multiclass(p: NDArray[Any], t: NDArray[Any]) -> float:
    """Accuracy of class scores on axis 1 of (N, C) or (N, C, d1, ...)."""
    c = p.shape[1]
    indices_shape = (p.shape[0], *p.shape[2:])
    predicted = np.argmax(p, axis=1)
    if t.shape == p.shape:
        if not np.all((t >= 0) & (t <= 1)):
            raise ValueError(
                f"accuracy expects target rows of shape {p.shape} to be one-hot or "
                f"probabilities with values in [0, 1], got values {_value_range(t)}; pass "
                f"class indices of shape {indices_shape} or one-hot rows; {_FOR_REGRESSION}"
            )
        return float(np.mean(predicted == np.argmax(t, axis=1)))
    if t.shape != indices_shape:
        raise ValueError(
            f"accuracy expects target of shape {indices_shape} (class indices) or {p.shape} "
            f"(one-hot or probabilities) for pred of shape {p.shape}, got {t.shape}"
        )
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"accuracy expects integer class indices of shape {indices_shape}, got dtype "
            f"{t.dtype}; convert with y.astype(int), or pass one-hot rows of pred's shape"
        )
    if np.any(t < 0) or np.any(t >= c):
        bad = t[(t < 0) | (t >= c)][0]
        raise ValueError(f"accuracy got class index {bad}, outside [0, {c - 1}] for {c} classes")
    return float(np.mean(predicted == t))


def _value_range(t: NDArray[Any]) -> str:
    """``"in [low, high]"`` over the non-NaN values, noting NaN ones."""
    values = t[~np.isnan(t)] if t.dtype.kind == "f" else t
    if values.size == 0:
        return "that are all NaN"
    nan = " and NaN" if values.size < t.size else ""
    return f"in [{values.min()}, {values.max()}]{nan}"


def mse(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean squared error ``mean((pred - target)^2)`` over all elements (same shapes)."""
    diff = _difference("mse", pred, target)
    return float(np.mean(diff * diff))


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error ``mean(|pred - target|)`` over all elements (same shapes)."""
    return float(np.mean(np.abs(_difference("mae", pred, target))))


def _difference(name: str, pred: ArrayLike, target: ArrayLike) -> NDArray[Any]:
    p, t = _numeric(name, "pred", pred), _numeric(name, "target", target)
    if p.shape != t.shape:
        raise ValueError(
            f"{name} expects pred and target of the same shape, got pred {p.shape} and target "
            f"{t.shape}; reshape one of them (no broadcasting is done)"
        )
    if p.size == 0:
        raise ValueError(f"{name} got an empty batch; the mean of no values is undefined")
    diff: NDArray[Any] = p.astype(np.result_type(p.dtype, t.dtype, np.float32)) - t
    return diff


def _numeric(metric: str, which: str, value: ArrayLike) -> NDArray[Any]:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{metric} expects a numeric {which}, got dtype {array.dtype}")
    return array


_NAMED: dict[str, Metric] = {"mse": mse, "mae": mae}


def get_metric(metric: MetricSpec, loss_fn: object = None) -> tuple[str, Metric]:
    """Resolve a metric name or callable to ``(name, function)``.

    Names: ``"accuracy"`` gives ``Accuracy(from_logits=True)`` when ``loss_fn`` is a
    :class:`~nnkit.BCEWithLogitsLoss` (the model outputs logits) and ``Accuracy()`` otherwise;
    ``"mse"`` and ``"mae"`` give :func:`mse` and :func:`mae`. A callable keeps its
    ``__name__`` (``Accuracy`` instances are named ``"accuracy"``), or its class name when it
    has none; the name is the key in the logs and the History (``"val_"`` + name for
    validation).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        TypeError: neither a string nor a callable, or a class (``Accuracy`` instead of
            ``Accuracy()``).
    """
    if isinstance(metric, str):
        if metric == "accuracy":
            return metric, Accuracy(from_logits=isinstance(loss_fn, BCEWithLogitsLoss))
        if metric in _NAMED:
            return metric, _NAMED[metric]
        raise ValueError(
            f"unknown metric {metric!r}; use one of 'accuracy', 'mse', 'mae', or a callable "
            "metric(pred, target) -> float"
        )
    if isinstance(metric, type):
        raise TypeError(
            f"a metric must be a name, a callable metric(pred, target) -> float, or a metric "
            f"instance; got the class {metric.__name__}; write {metric.__name__}()"
        )
    if not callable(metric):
        raise TypeError(
            f"a metric must be a name or a callable metric(pred, target) -> float, got "
            f"{type(metric).__name__}"
        )
    name = getattr(metric, "__name__", None)
    return (name if isinstance(name, str) else type(metric).__name__), metric


def get_metrics(
    metrics: MetricSpec | Iterable[MetricSpec] | None, loss_fn: object = None
) -> dict[str, Metric]:
    """Resolve several metrics (or a single one) to ``{name: function}``, in order.

    ``None`` means no metrics, as ``()`` does.

    Raises:
        ValueError: two metrics with the same name, or a metric named ``"loss"`` or starting
            with ``"val_"`` (those keys belong to the loss and to validation).
    """
    if metrics is None:
        return {}
    specs: list[MetricSpec] = (
        [metrics] if isinstance(metrics, str) or callable(metrics) else list(metrics)
    )
    resolved: dict[str, Metric] = {}
    for spec in specs:
        name, fn = get_metric(spec, loss_fn)
        if name in resolved:
            raise ValueError(
                f"two metrics are named {name!r}; give each callable a distinct __name__"
            )
        if name == "loss" or name.startswith("val_"):
            raise ValueError(
                f"a metric may not be named {name!r}: 'loss' and 'val_...' are the keys of the "
                "loss and of validation values; rename the function"
            )
        resolved[name] = fn
    return resolved
