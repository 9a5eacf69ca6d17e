"""Losses: ``loss = loss_fn(pred, target)`` returns a float; ``loss_fn.backward()`` dL/dpred.

Each loss has PyTorch's math, defaults and reductions for the loss of the same name, with
stricter input checks: pred and target must have the same shape (PyTorch only warns), and a
mean over an empty batch is an error instead of NaN. docs/losses.md derives every gradient.

``reduction="mean"`` averages the per-element losses (per-sample for the classification
losses, whose per-sample loss already sums over classes); ``"sum"`` adds them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from nnkit import functional as F
from nnkit._checks import check_real
from nnkit.module import Array, as_float_array

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "L1Loss",
    "Loss",
    "MSELoss",
    "NLLLoss",
]

Reduction = Literal["mean", "sum"]


class Loss:
    """Base class of losses.

    Subclasses implement :meth:`_forward`, which returns the per-element (or per-sample)
    losses and stores the gradient of their *sum* with respect to ``pred`` in ``self._grad``
    (or an array from which :meth:`_backward` computes it). The base class reduces, and scales
    the gradient by ``1 / count`` for ``"mean"``.
    """

    def __init__(self, reduction: Reduction = "mean") -> None:
        if not isinstance(reduction, str) or reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction: Reduction = reduction
        self._grad: Array | None = None
        self._scale = 1.0

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        return self.forward(pred, target)

    def forward(self, pred: ArrayLike, target: ArrayLike) -> float:
        """The reduced loss as a Python float; caches what :meth:`backward` needs."""
        self._grad = None
        losses = self._forward(as_float_array(pred), target)
        total = float(np.add.reduce(losses, axis=None))
        if self.reduction == "sum":
            self._scale = 1.0
            return total
        count = losses.size
        if count == 0:
            self._grad = None
            raise ValueError(
                f"{type(self).__name__} with reduction='mean' got an empty batch; the mean "
                "of no losses is undefined (use reduction='sum' or skip empty batches)"
            )
        self._scale = 1.0 / count
        return total / count

    def backward(self) -> Array:
        """dL/dpred for the most recent forward, with pred's shape and dtype (a new array)."""
        grad = self._grad
        if grad is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before a successful forward; "
                "call loss_fn(pred, target) first"
            )
        return self._backward(grad, self._scale)

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        raise NotImplementedError

    def _backward(self, cached: Array, scale: float) -> Array:
        """``scale`` times the gradient of the summed loss, as a new array.

        By default the gradient is the array ``_forward`` cached in ``self._grad``.
        """
        grad: Array = cached * scale
        return grad

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this loss."""
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _same_shape(name: str, pred: Array, target: ArrayLike) -> Array:
    """``target`` as an array of pred's dtype, or a ValueError if the shapes differ."""
    target_array = as_float_array(target, pred.dtype)
    if target_array.shape != pred.shape:
        raise ValueError(
            f"{name} expected pred and target of the same shape, got pred {pred.shape} and "
            f"target {target_array.shape}; reshape one of them (no broadcasting is done)"
        )
    return target_array


class MSELoss(Loss):
    """``l = (pred - target)^2``; ``dl/dpred = 2 (pred - target)``."""

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        diff = pred - _same_shape("MSELoss", pred, target)
        self._grad = diff
        losses: Array = diff * diff
        return losses

    def _backward(self, cached: Array, scale: float) -> Array:
        grad: Array = cached * (2 * scale)
        return grad


class L1Loss(Loss):
    """``l = |pred - target|``; ``dl/dpred = sign(pred - target)`` (0 where equal)."""

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        diff = pred - _same_shape("L1Loss", pred, target)
        self._grad = np.sign(diff)
        losses: Array = np.abs(diff)
        return losses


class HuberLoss(Loss):
    """With ``d = pred - target``::

        l = 0.5 d^2                    if |d| < delta
            delta (|d| - 0.5 delta)    otherwise
        dl/dpred = clip(d, -delta, delta)
    """

    def __init__(self, reduction: Reduction = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = check_real("HuberLoss delta", delta, finite=True)
        if not self.delta > 0:
            raise ValueError(f"HuberLoss delta must be > 0, got {delta}")

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        diff = pred - _same_shape("HuberLoss", pred, target)
        abs_diff = np.abs(diff)
        self._grad = np.clip(diff, -self.delta, self.delta)
        losses: Array = np.where(
            abs_diff < self.delta, 0.5 * diff * diff, self.delta * (abs_diff - 0.5 * self.delta)
        )
        return losses

    def get_config(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "delta": self.delta}


class BCELoss(Loss):
    """Binary cross-entropy on probabilities ``p`` in [0, 1] with targets ``t`` in [0, 1]::

        l = -(t * max(log p, -100) + (1 - t) * max(log(1 - p), -100))
        dl/dp = (p - t) / max(p (1 - p), 1e-12)

    The clamp of each log term at -100 and of the denominator at 1e-12 are PyTorch's, so the
    loss and gradient stay finite at p = 0 and p = 1. Prefer :class:`BCEWithLogitsLoss` on
    logits: it never loses precision to a saturated sigmoid.
    """

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        target_array = _same_shape("BCELoss", pred, target)
        for name, values in (("pred", pred), ("target", target_array)):
            if values.size and not (values.min() >= 0 and values.max() <= 1):
                raise ValueError(
                    f"BCELoss expects {name} probabilities in [0, 1], got values in "
                    f"[{values.min()}, {values.max()}]; apply a Sigmoid first, or use "
                    "BCEWithLogitsLoss on logits"
                )
        tiny = np.finfo(pred.dtype).smallest_subnormal
        log_p = np.maximum(np.log(np.maximum(pred, tiny)), -100)
        log_1mp = np.maximum(np.log(np.maximum(1 - pred, tiny)), -100)
        self._grad = (pred - target_array) / np.maximum(pred * (1 - pred), 1e-12)
        losses: Array = -(target_array * log_p + (1 - target_array) * log_1mp)
        return losses


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits ``x``, fused with the sigmoid::

        w = 1 + (pos_weight - 1) * t                    (w = 1 without pos_weight)
        l = (1 - t) x + w * softplus(-x)
        dl/dx = (1 - t) - w * sigmoid(-x)               (= sigmoid(x) - t without pos_weight)

    ``softplus`` and ``sigmoid`` are the stable forms of ``nnkit.functional``, so any finite
    logit works. ``pos_weight`` (broadcast along the last axis, one weight per class) scales
    the positive term, as in PyTorch.
    """

    def __init__(self, reduction: Reduction = "mean", pos_weight: ArrayLike | None = None) -> None:
        super().__init__(reduction)
        self.pos_weight = None if pos_weight is None else _pos_weight(pos_weight)

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        t = _same_shape("BCEWithLogitsLoss", pred, target)
        if self.pos_weight is None:
            self._grad = F.sigmoid(pred) - t
            return (1 - t) * pred + F.softplus(-pred)
        pos_weight = self.pos_weight.astype(pred.dtype)
        if pos_weight.size > 1 and (pred.ndim == 0 or pred.shape[-1] != pos_weight.shape[0]):
            raise ValueError(
                f"pos_weight has {pos_weight.shape[0]} entries but pred's last axis has shape "
                f"{pred.shape}; give one weight per class (last axis)"
            )
        w = 1 + (pos_weight - 1) * t
        self._grad = (1 - t) - w * F.sigmoid(-pred)
        losses: Array = (1 - t) * pred + w * F.softplus(-pred)
        return losses

    def get_config(self) -> dict[str, Any]:
        pos_weight = None if self.pos_weight is None else self.pos_weight.tolist()
        return {"reduction": self.reduction, "pos_weight": pos_weight}


def _pos_weight(value: ArrayLike) -> Array:
    """``pos_weight`` as a float64 array of at most one dimension, all finite."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.dtype.kind == "b":
        raise TypeError(
            f"pos_weight must be a number or a list of numbers (one per class), got {value!r}"
        )
    if array.ndim > 1:
        raise ValueError(
            f"pos_weight must be a scalar or 1-D (one weight per class), got shape {array.shape}"
        )
    weights: Array = array.astype(np.float64)
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"pos_weight must be finite, got {value!r}")
    return weights


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _class_targets(name: str, logits: Array, target: ArrayLike) -> Array:
    """Integer class indices of shape (N,), checked against logits of shape (N, C)."""
    target_array = np.asarray(target)
    if target_array.dtype.kind not in "iu":
        raise TypeError(
            f"{name} expects integer class indices, got dtype {target_array.dtype}; convert "
            "labels with .astype(np.int64)"
            + (", or give class probabilities of shape (N, C)" if name.startswith("Cross") else "")
        )
    n, c = logits.shape
    if target_array.shape != (n,):
        raise ValueError(
            f"{name} expected class indices of shape ({n},) for pred of shape {logits.shape}, "
            f"got {target_array.shape}"
        )
    # one reduction checks both ends: viewed as unsigned, a negative index is huge
    unsigned = target_array.view(_UNSIGNED[target_array.dtype.itemsize])
    if n and np.maximum.reduce(unsigned) >= c:
        bad = target_array[(target_array < 0) | (target_array >= c)][0]
        hint = (
            "; a single output column holds no class scores: use 2 columns, or "
            "BCEWithLogitsLoss for a binary problem"
            if c == 1
            else ""
        )
        raise ValueError(
            f"{name} got class index {bad}, outside [0, {c - 1}] for pred with {c} "
            f"class columns{hint}"
        )
    return target_array.astype(np.intp, copy=False)


def _check_2d(name: str, pred: Array) -> None:
    if pred.ndim != 2 or not pred.shape[1]:
        raise ValueError(
            f"{name} expects pred of shape (N, C) with C >= 1 class columns, got {pred.shape}"
        )


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy from logits ``x`` of shape (N, C).

    Targets are class indices of shape (N,) or class probabilities ``q`` of shape (N, C).
    Indices become one-hot rows. With ``label_smoothing = e`` the target is
    ``q' = (1 - e) q + e / C``. Per sample::

        l = -sum_c q'_c log_softmax(x)_c
        dl/dx = softmax(x) * sum_c q'_c - q'     (= softmax(x) - q' when q' sums to 1)

    ``"mean"`` averages over the N samples (PyTorch's behaviour without class weights).
    With class indices the one-hot rows are never formed: ``l = logsumexp(x) - x_t``.
    """

    def __init__(self, reduction: Reduction = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        self.label_smoothing = check_real("label_smoothing", label_smoothing)
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        _check_2d("CrossEntropyLoss", pred)
        target_array = np.asarray(target)
        if target_array.ndim == 1 or target_array.dtype.kind in "iu":
            return self._from_indices(pred, _class_targets("CrossEntropyLoss", pred, target_array))
        q = _same_shape("CrossEntropyLoss", pred, target_array)
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / pred.shape[1]
        log_p = F.log_softmax(pred, axis=1)
        self._grad = np.exp(log_p) * np.sum(q, axis=1, keepdims=True) - q
        losses: Array = -np.sum(q * log_p, axis=1)
        return losses

    def _from_indices(self, pred: Array, indices: Array) -> Array:
        n, c = pred.shape
        at_target = np.arange(0, n * c, c) + indices  # flat positions of x[i, t_i]
        z, _ = F.shift_by_max(pred, axis=1)
        e = np.exp(z)
        s = np.add.reduce(e, axis=1, keepdims=True)
        losses: Array = np.log(s).reshape(n)  # log_softmax = z - log(s)
        e /= s  # softmax
        eps = self.label_smoothing
        if eps:  # l = log_s - (1 - eps) z_t - eps/C sum_c z_c
            losses -= (1 - eps) * z.reshape(-1)[at_target]
            losses -= (eps / c) * np.add.reduce(z, axis=1)
            e -= eps / c
            e.reshape(-1)[at_target] -= 1 - eps
        else:
            losses -= z.reshape(-1)[at_target]
            e.reshape(-1)[at_target] -= 1
        self._grad = e
        return losses

    def get_config(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "label_smoothing": self.label_smoothing}


class NLLLoss(Loss):
    """Negative log-likelihood from log-probabilities ``x`` of shape (N, C) and class indices
    ``t`` of shape (N,)::

        l_i = -x[i, t_i];   dl/dx[i, c] = -1 if c == t_i else 0
    """

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        _check_2d("NLLLoss", pred)
        indices = _class_targets("NLLLoss", pred, target)
        if pred.size and np.maximum.reduce(pred, axis=None) > 0:
            raise ValueError(
                "NLLLoss expects log-probabilities (all <= 0), got a value of "
                f"{np.maximum.reduce(pred, axis=None)}; apply LogSoftmax first, or use "
                "CrossEntropyLoss on logits"
            )
        rows = np.arange(pred.shape[0])
        grad = np.zeros_like(pred)
        grad[rows, indices] = -1
        self._grad = grad
        return -pred[rows, indices]
