"""Losses: ``loss = loss_fn(pred, target)`` returns a float; ``loss_fn.backward()`` dL/dpred.

Each loss has PyTorch's math, defaults and reductions for the loss of the same name, with
stricter input checks: pred and target must have the same shape (PyTorch only warns), and a
mean over an empty batch is an error instead of NaN. docs/losses.md derives every gradient.

``reduction="mean"`` averages the per-element losses (per-sample for the classification
losses, whose per-sample loss already sums over classes; weighted by the class weights when
``CrossEntropyLoss`` or ``NLLLoss`` has them); ``"sum"`` adds them; ``"none"`` returns them
as an array, and ``backward`` then takes their upstream gradient (ones by default).
"""

from __future__ import annotations

import math
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

Reduction = Literal["mean", "sum", "none"]


class Loss:
    """Base class of losses.

    Subclasses implement :meth:`_forward`, which returns the per-element (or per-sample)
    losses and stores the gradient of their *sum* with respect to ``pred`` in ``self._grad``
    (or an array from which :meth:`_backward` computes it). The base class reduces, and scales
    the gradient by ``1 / count`` for ``"mean"`` (``count`` is the number of losses, or the
    ``self._mean_weight`` a weighted ``_forward`` sets). For ``"none"`` it returns the
    losses and scales the gradient by the upstream gradient of each loss, expanded to pred's
    shape by :meth:`_expand` (identity for elementwise losses).
    """

    def __init__(self, reduction: Reduction = "mean") -> None:
        if not isinstance(reduction, str) or reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction: Reduction = reduction
        self._grad: Array | None = None
        self._scale = 1.0
        self._losses_shape: tuple[int, ...] = ()
        self._mean_weight: float | None = None

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float | Any:
        return self.forward(pred, target)

    def forward(self, pred: ArrayLike, target: ArrayLike) -> float | Any:
        """The reduced loss as a Python float, or for ``reduction="none"`` the array of the
        per-element (per-sample) losses in pred's dtype; caches what :meth:`backward` needs.

        (The return type reads ``float | Any`` rather than ``float | NDArray`` so that code
        written for the float contract, such as ``fit``, type-checks unchanged.)
        """
        self._grad = None
        self._mean_weight = None
        losses = self._forward(as_float_array(pred), target)
        self._losses_shape = losses.shape
        self._scale = 1.0
        if self.reduction == "none":
            return losses
        total = float(np.add.reduce(losses, axis=None))
        if self.reduction == "sum":
            return total
        count = float(losses.size) if self._mean_weight is None else self._mean_weight
        if count == 0:
            self._grad = None
            if losses.size == 0:
                raise ValueError(
                    f"{type(self).__name__} with reduction='mean' got an empty batch; the mean "
                    "of no losses is undefined (use reduction='sum' or skip empty batches)"
                )
            raise ValueError(
                f"{type(self).__name__} with reduction='mean': every target of the batch is "
                "ignored (ignore_index) or has class weight 0, so the weighted mean is "
                "undefined (PyTorch returns NaN); use reduction='sum' or skip such batches"
            )
        self._scale = 1.0 / count
        return total / count

    def backward(self, grad_out: Any = None) -> Array:
        """dL/dpred for the most recent forward, with pred's shape and dtype (a new array).

        ``grad_out`` is the upstream gradient of the loss: None means 1 (``loss.backward()``
        of the loss itself). For ``"mean"`` and ``"sum"`` it is a scalar; for ``"none"`` an
        array of the losses' shape (None: ones, the gradient of their sum).
        """
        grad = self._grad
        if grad is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before a successful forward; "
                "call loss_fn(pred, target) first"
            )
        if grad_out is None:
            return self._backward(grad, self._scale)
        upstream = as_float_array(grad_out, grad.dtype)
        if self.reduction != "none":
            if upstream.ndim != 0:
                raise ValueError(
                    f"{type(self).__name__}.backward() with reduction={self.reduction!r} takes "
                    f"a scalar grad_out (the loss is a scalar), got shape {upstream.shape}"
                )
            return self._backward(grad, self._scale * float(upstream))
        if upstream.shape != self._losses_shape:
            raise ValueError(
                f"{type(self).__name__}.backward() with reduction='none' expected grad_out of "
                f"the losses' shape {self._losses_shape}, got {upstream.shape}"
            )
        return self._backward(grad, self._expand(upstream))

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        raise NotImplementedError

    def _expand(self, upstream: Array) -> Array:
        """The upstream gradient of the losses, broadcastable against pred (for "none")."""
        return upstream

    def _backward(self, cached: Array, scale: float | Array) -> Array:
        """``scale`` times the gradient of the summed loss, as a new array.

        ``scale`` is a number, or for ``"none"`` the expanded upstream gradient. By default
        the gradient is the array ``_forward`` cached in ``self._grad``.
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

    def _backward(self, cached: Array, scale: float | Array) -> Array:
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


def _class_layout(name: str, pred: Array) -> tuple[int, int, int]:
    """``(N, C, S)`` of class scores of shape (N, C) or (N, C, d1, ...), S = d1 * ... (1)."""
    if pred.ndim < 2 or not pred.shape[1]:
        raise ValueError(
            f"{name} expects pred of shape (N, C) or (N, C, d1, ...) with C >= 1 classes on "
            f"axis 1, got {pred.shape}"
        )
    n, c = pred.shape[:2]
    return n, c, math.prod(pred.shape[2:])


def _class_targets(
    name: str, logits: Array, target: ArrayLike, ignore_index: int
) -> tuple[Array, Array | None]:
    """Class indices for pred of shape (N, C, d1, ...): an intp array of shape (N, S), and the
    mask of the targets equal to ``ignore_index`` (None when there are none), whose indices
    are replaced by 0 so that they can still be gathered."""
    target_array = np.asarray(target)
    if target_array.dtype.kind not in "iu":
        raise TypeError(
            f"{name} expects integer class indices, got dtype {target_array.dtype}; convert "
            "labels with .astype(np.int64)"
            + (", or give class probabilities of pred's shape" if name.startswith("Cross") else "")
        )
    n, c, s = _class_layout(name, logits)
    expected = (n, *logits.shape[2:])
    if target_array.shape != expected:
        raise ValueError(
            f"{name} expected class indices of shape {expected} for pred of shape "
            f"{logits.shape}, got {target_array.shape}"
        )
    # one reduction checks both ends: viewed as unsigned, a negative index is huge. When every
    # index is in [0, C) and ignore_index is not, nothing is ignored: no comparison pass
    unsigned = target_array.view(_UNSIGNED[target_array.dtype.itemsize])
    in_range = not target_array.size or np.maximum.reduce(unsigned, axis=None) < c
    if in_range and not 0 <= ignore_index < c:
        ignored_or_none = None
        checked = target_array
    else:
        ignored = target_array == ignore_index
        if not ignored.any():
            ignored_or_none = None
            checked = target_array
        else:
            ignored_or_none = ignored.reshape(n, s)
            checked = target_array[~ignored]
        unsigned = checked.view(_UNSIGNED[checked.dtype.itemsize])
        in_range = not checked.size or np.maximum.reduce(unsigned, axis=None) < c
    if not in_range:
        bad = checked[(checked < 0) | (checked >= c)][0]
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
    indices = target_array.reshape(n, s).astype(np.intp, copy=ignored_or_none is not None)
    if ignored_or_none is not None:
        indices[ignored_or_none] = 0
    return indices, ignored_or_none


def _target_positions(n: int, c: int, s: int, indices: Array) -> Array:
    """Flat positions in a C-contiguous (N, C, S) array of the entries [i, indices[i, j], j]."""
    if s == 1:
        base = np.arange(0, n * c, c)
        return base + indices.reshape(n)
    base2 = np.arange(n)[:, None] * (c * s) + np.arange(s)
    flat: Array = (base2 + indices * s).reshape(-1)
    return flat


def _check_weight(name: str, weight: ArrayLike | None) -> Array | None:
    if weight is None:
        return None
    w = np.asarray(weight)
    if w.dtype.kind not in "iuf" or w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)):
        raise ValueError(
            f"{name} weight must be a 1-D array of finite numbers, one per class, got {weight!r}"
        )
    return w.astype(np.float64)


def _check_ignore_index(name: str, ignore_index: object) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{name} ignore_index must be an int, got {ignore_index!r}")
    return int(ignore_index)


class _ClassLoss(Loss):
    """What CrossEntropyLoss and NLLLoss share: class weights, ignore_index, N-D layouts."""

    def __init__(
        self,
        reduction: Reduction = "mean",
        *,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction)
        name = type(self).__name__
        self.weight = _check_weight(name, weight)
        self.ignore_index = _check_ignore_index(name, ignore_index)

    def _expand(self, upstream: Array) -> Array:
        return upstream[:, None]  # the losses are (N, d1, ...); pred is (N, C, d1, ...)

    def _class_weight(self, pred: Array) -> Array | None:
        """The class weights in pred's dtype, checked against its C classes."""
        if self.weight is None:
            return None
        c = pred.shape[1]
        if self.weight.shape[0] != c:
            raise ValueError(
                f"{type(self).__name__} has {self.weight.shape[0]} class weights for pred with "
                f"{c} classes (axis 1 of {pred.shape}); give one weight per class"
            )
        w: Array = self.weight.astype(pred.dtype)
        return w

    def _sample_weights(
        self, pred: Array, indices: Array, ignored: Array | None
    ) -> tuple[Array | None, Array | None]:
        """The class weights (or None) and each target's weight ``w[t]``, 0 where ignored, of
        shape (N, S) (None when every weight is 1); sets the divisor of the weighted mean."""
        w = self._class_weight(pred)
        if w is None and ignored is None:
            return None, None
        wt = np.ones(indices.shape, dtype=pred.dtype) if w is None else w[indices]
        if ignored is not None:
            wt[ignored] = 0
        self._mean_weight = float(np.add.reduce(wt, axis=None))
        return w, wt

    def get_config(self) -> dict[str, Any]:
        return {
            "reduction": self.reduction,
            "weight": None if self.weight is None else self.weight.tolist(),
            "ignore_index": self.ignore_index,
        }


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy from logits ``x`` of shape (N, C) or (N, C, d1, ...), classes on
    axis 1, as ``torch.nn.CrossEntropyLoss``.

    Targets are class indices of shape (N,) or (N, d1, ...), or class probabilities ``q`` of
    pred's shape. Indices become one-hot rows. With ``label_smoothing = e`` the target is
    ``q' = (1 - e) q + e / C``. With class weights ``w`` (``weight=``), per sample (each
    position of d1, ... is a sample)::

        a_c = w_c q'_c
        l = -sum_c a_c log_softmax(x)_c
        dl/dx = softmax(x) * sum_c a_c - a

    (``w = 1`` without weights, so ``dl/dx = softmax(x) - q'`` when q' sums to 1.) For index
    targets PyTorch weights the smoothing term per class, as here: with target t,
    ``a = (1 - e) w_t onehot(t) + (e / C) w``. A target equal to ``ignore_index`` contributes
    no loss and no gradient.

    ``"mean"`` divides by the number of samples; for index targets with class weights or
    ignored targets, by the sum of ``w_t`` over the targets not ignored (PyTorch's weighted
    mean). Probability targets ignore ``ignore_index`` and always divide by the number of
    samples, as PyTorch. With class indices the one-hot rows are never formed:
    ``l = logsumexp(x) - x_t``.

    Args:
        reduction: "mean", "sum" or "none" (per-sample losses of shape (N, d1, ...)).
        label_smoothing: e in [0, 1].
        weight: one weight per class (C,), or None.
        ignore_index: a target index that is skipped (-100 by default, as PyTorch).
    """

    def __init__(
        self,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction, weight=weight, ignore_index=ignore_index)
        label_smoothing = check_real("label_smoothing", label_smoothing)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        c = _class_layout("CrossEntropyLoss", pred)[1]
        target_array = np.asarray(target)
        if target_array.dtype.kind in "iu" or target_array.ndim == pred.ndim - 1:
            indices, ignored = _class_targets(
                "CrossEntropyLoss", pred, target_array, self.ignore_index
            )
            return self._from_indices(pred, indices, ignored)
        q = _same_shape("CrossEntropyLoss", pred, target_array)
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / c
        w = self._class_weight(pred)
        if w is not None:
            q = q * w.reshape((1, c) + (1,) * (pred.ndim - 2))
        log_p = F.log_softmax(pred, axis=1)
        self._grad = np.exp(log_p) * np.sum(q, axis=1, keepdims=True) - q
        losses: Array = -np.sum(q * log_p, axis=1)
        return losses

    def _from_indices(self, pred: Array, indices: Array, ignored: Array | None) -> Array:
        if pred.ndim == 2 and self.weight is None and ignored is None:
            return self._from_indices_2d(pred, indices.reshape(-1))
        n, c, s = _class_layout("CrossEntropyLoss", pred)
        # C order, so that the flat positions address the arrays derived from pred (a
        # transposed, Fortran-ordered pred would give Fortran-ordered ones)
        pred = np.ascontiguousarray(pred)
        at_target = _target_positions(n, c, s, indices)  # flat positions of x[i, t_i, j]
        z, _ = F.shift_by_max(pred.reshape(n, c, s), axis=1)
        e = np.exp(z)
        sums = np.add.reduce(e, axis=1, keepdims=True)
        log_s = np.log(sums).reshape(n, s)  # log_softmax = z - log_s
        e /= sums  # softmax
        z_t = z.reshape(-1)[at_target].reshape(n, s)
        eps = self.label_smoothing
        w, wt = self._sample_weights(pred, indices, ignored)
        if wt is None:  # no weights, nothing ignored
            losses = log_s
            if eps:  # l = log_s - (1 - eps) z_t - eps/C sum_c z_c
                losses -= (1 - eps) * z_t
                losses -= (eps / c) * np.add.reduce(z, axis=1)
                e -= eps / c
                e.reshape(-1)[at_target] -= 1 - eps
            else:
                losses -= z_t
                e.reshape(-1)[at_target] -= 1
        else:
            # a_c = (1 - eps) w_t [c == t] + (eps / C) w_c (w_c = 1 without weights), zero for
            # an ignored target; l = sum_c a_c (log_s - z_c); dl/dx = softmax * sum(a) - a
            losses = (1 - eps) * wt * (log_s - z_t)
            total_a = (1 - eps) * wt
            if eps:
                kept = np.ones_like(wt) if ignored is None else (~ignored).astype(pred.dtype)
                w_all = np.ones(c, dtype=pred.dtype) if w is None else w
                wz = np.einsum("c,ncs->ns", w_all, z)
                losses += (eps / c) * kept * (np.add.reduce(w_all) * log_s - wz)
                total_a += (eps / c) * np.add.reduce(w_all) * kept
                e *= total_a[:, None, :]
                e -= (eps / c) * w_all[None, :, None] * kept[:, None, :]
            else:
                e *= total_a[:, None, :]
            e.reshape(-1)[at_target] -= ((1 - eps) * wt).reshape(-1)
        self._grad = e.reshape(pred.shape)
        out: Array = losses.reshape((n, *pred.shape[2:]))
        return out

    def _from_indices_2d(self, pred: Array, indices: Array) -> Array:
        """The common case, (N, C) logits without weights or ignored targets, with fewer
        temporaries: the same equations as above with w = 1 and S = 1."""
        n, c = pred.shape
        at_target = np.arange(0, n * c, c) + indices  # flat positions of x[i, t_i]
        z, _ = F.shift_by_max(np.ascontiguousarray(pred), axis=1)
        e = np.exp(z)
        sums = np.add.reduce(e, axis=1, keepdims=True)
        losses: Array = np.log(sums).reshape(n)  # log_softmax = z - log(sums)
        e /= sums  # softmax
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
        return {
            "reduction": self.reduction,
            "label_smoothing": self.label_smoothing,
            "weight": None if self.weight is None else self.weight.tolist(),
            "ignore_index": self.ignore_index,
        }


class NLLLoss(_ClassLoss):
    """Negative log-likelihood from log-probabilities ``x`` of shape (N, C) or (N, C, d1, ...)
    and class indices ``t`` of shape (N,) or (N, d1, ...), as ``torch.nn.NLLLoss``::

        l = -w_t x[t];   dl/dx_c = -w_t if c == t else 0

    ``w_t`` is the class weight of the target (1 without ``weight=``), 0 for a target equal
    to ``ignore_index``. ``"mean"`` divides by the sum of ``w_t`` (the number of targets
    not ignored, without weights), as PyTorch.
    """

    def _forward(self, pred: Array, target: ArrayLike) -> Array:
        n, c, s = _class_layout("NLLLoss", pred)
        indices, ignored = _class_targets("NLLLoss", pred, target, self.ignore_index)
        if pred.size and np.maximum.reduce(pred, axis=None) > 0:
            raise ValueError(
                "NLLLoss expects log-probabilities (all <= 0), got a value of "
                f"{np.maximum.reduce(pred, axis=None)}; apply LogSoftmax first, or use "
                "CrossEntropyLoss on logits"
            )
        at_target = _target_positions(n, c, s, indices)
        _, wt = self._sample_weights(pred, indices, ignored)
        picked = pred.reshape(-1)[at_target]
        grad = np.zeros(pred.shape, dtype=pred.dtype)  # C order: the flat positions fit it
        if wt is None:
            grad.reshape(-1)[at_target] = -1
            losses = -picked
        else:
            grad.reshape(-1)[at_target] = -wt.reshape(-1)
            losses = -picked * wt.reshape(-1)
        self._grad = grad
        out: Array = losses.reshape((n, *pred.shape[2:]))
        return out
