"""The static checks: what can be seen before any training step."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from nnkit import functional as F
from nnkit.diagnostics.findings import Finding, finding
from nnkit.diagnostics.trace import Tracer
from nnkit.layers.activations import LogSoftmax, Sigmoid, Softmax
from nnkit.layers.dense import Dense
from nnkit.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, NLLLoss
from nnkit.module import Module

__all__ = ["lint"]

SCALE_LIMIT = 20.0
"""A feature with ``|mean| + std`` above this is reported as unscaled."""

DOMINANCE_LIMIT = 1000.0
"""A feature whose std is this many times the median feature's std dominates the others."""


def lint(model: Module, loss_fn: Any, X: Any, y: Any) -> list[Finding]:
    """The checks that need no training: data, targets, the loss and the output layer,
    initialisation and biases.

    Runs the model once on (up to 256 of) the samples, on a copy (in the mode the model is
    in), to see its output and which module produced it. Returns the findings (codes
    ``unscaled_inputs``, ``constant_inputs``, ``target_mismatch``,
    ``activation_before_logits_loss``, ``probabilities_loss_on_logits``, ``bad_init``,
    ``no_bias``), unsorted; ``nnkit.diagnose``
    sorts them with the rest. ``fit`` runs it before training and warns about what it finds.
    """
    found: list[Finding] = []
    inputs = X if type(X) is tuple else (X,)  # a tuple is a model's several inputs
    X_ = np.asarray(inputs[0])
    y_ = np.asarray(y)
    replica = copy.deepcopy(model)
    order: list[tuple[str, Module]] = []
    leaves = {id(m) for _, m in replica.named_modules() if next(m.children(), None) is None}

    def record(name: str, module: Module, inputs: tuple[Any, ...], output: Any) -> None:
        if id(module) in leaves:
            order.append((name, module))

    sample = tuple(np.asarray(x)[:256] for x in inputs)
    try:
        with Tracer(replica, on_forward=record), np.errstate(all="ignore"):
            pred = replica(*sample)
    except Exception:  # the data does not fit the model: fit's own checks say why
        return found
    first = order[0][1] if order else None
    if X_.dtype.kind in "fiub" and not _takes_indices(first) and len(inputs) == 1:
        found.extend(_data_findings(X_))
    found.extend(_init_findings(replica, order))
    if isinstance(pred, np.ndarray) and isinstance(loss_fn, Loss):
        last = order[-1] if order else ("model", replica)
        found.extend(_loss_findings(loss_fn, pred, y_[: len(sample[0])], y_, last))
    return found


def _takes_indices(module: Module | None) -> bool:
    return module is not None and "Embedding" in type(module).__name__


SAMPLE_ROWS = 4096
"""The data checks read at most this many rows, evenly spaced (and a bounded copy)."""


def _data_findings(X: np.ndarray) -> list[Finding]:
    found: list[Finding] = []
    if len(X) < 2:
        return found
    X = X[:: max(1, len(X) // SAMPLE_ROWS)][:SAMPLE_ROWS]
    flat = X.reshape(len(X), -1).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    tabular = X.ndim == 2
    if np.all(np.ptp(flat, axis=0) == 0) or (len(X) > 1 and np.all(flat == flat[0])):
        found.append(
            finding(
                "constant_inputs",
                "data",
                "every sample has the same values, so the network cannot tell them apart; check "
                "how X was built (a broadcast, a copy of one row)",
                samples=len(X),
            )
        )
        return found
    constant = np.flatnonzero(std == 0)
    if tabular and constant.size:
        most = constant.size > flat.shape[1] / 2  # a few constant features are harmless
        found.append(
            finding(
                "constant_inputs",
                "data",
                f"{constant.size} of {flat.shape[1]} input features never change (features "
                f"{constant[:8].tolist()}{' ...' if constant.size > 8 else ''}); they carry no "
                "information: drop them",
                severity=None if most else "info",
                features=constant[:20].tolist(),
                count=int(constant.size),
            )
        )
    scale = np.abs(mean) + std
    worst = int(np.argmax(scale))
    varying = std[std > 0]
    if scale[worst] > SCALE_LIMIT:
        found.append(
            finding(
                "unscaled_inputs",
                "data",
                f"input feature {worst} has mean {mean[worst]:.3g} and std {std[worst]:.3g}; "
                "features far from zero mean and unit scale saturate activations and slow "
                "training. Standardise X ((X - X.mean(0)) / X.std(0)) or, for pixels, divide "
                "by the maximum (X / 255)",
                feature=worst,
                mean=float(mean[worst]),
                std=float(std[worst]),
            )
        )
    elif tabular and varying.size > 1 and varying.max() > DOMINANCE_LIMIT * np.median(varying):
        top = int(np.argmax(std))
        found.append(
            finding(
                "unscaled_inputs",
                "data",
                f"input feature {top} varies {std[top] / np.median(varying):.3g}x more than the "
                "median feature, so it dominates the first layer; standardise the features",
                feature=top,
                std=float(std[top]),
                median_std=float(np.median(varying)),
            )
        )
    return found


def _weight_layout(module: Module, weight: np.ndarray) -> tuple[int, np.ndarray]:
    """(fan_in, weight as (fan_in, units)) for Dense's (in, out) or PyTorch's (out, in, ...)."""
    if isinstance(module, Dense):
        return weight.shape[0], weight.reshape(weight.shape[0], -1)
    units = weight.shape[0]
    return int(np.prod(weight.shape[1:])), weight.reshape(units, -1).T


ONE_SIGN_SIZE = 16
"""A layer with this many weights or more, all of one sign, is reported (a zero-mean random
initialisation gives that with probability 2^-15)."""

MODEL_ONE_SIGN_SIZE = 12
"""A smaller layer is reported when all weight matrices of the model together, at least this
many weights, have one sign (probability 2^-11 by chance): the 14 weights of a 2-3-2-1
network drawn with np.random.rand."""


def _weight_matrices(order: list[tuple[str, Module]]) -> list[np.ndarray]:
    out = []
    for _, module in order:
        data = getattr(getattr(module, "weight", None), "data", None)
        if isinstance(data, np.ndarray) and data.ndim >= 2:
            out.append(data)
    return out


def _init_findings(model: Module, order: list[tuple[str, Module]]) -> list[Finding]:
    found: list[Finding] = []
    names = {id(m): n for n, m in model.named_modules()}
    matrices = _weight_matrices(order)
    total = sum(w.size for w in matrices)
    all_positive = total >= MODEL_ONE_SIGN_SIZE and all(np.all(w > 0) for w in matrices)
    all_negative = total >= MODEL_ONE_SIGN_SIZE and all(np.all(w < 0) for w in matrices)
    for index, (name, module) in enumerate(order):
        weight = getattr(module, "weight", None)
        data = getattr(weight, "data", None)
        if (
            not isinstance(data, np.ndarray)
            or data.ndim < 2
            or "Embedding" in type(module).__name__
        ):
            continue
        fan_in, columns = _weight_layout(module, data)
        where = names.get(id(module), name)
        one_sign = np.all(data > 0) or np.all(data < 0)
        if one_sign and (data.size >= ONE_SIGN_SIZE or all_positive or all_negative):
            sign = "positive" if np.all(data > 0) else "negative"
            found.append(
                finding(
                    "bad_init",
                    where,
                    f"every weight of {type(module).__name__} {where!r} is {sign} (as "
                    "np.random.rand gives), so all its units move together and the layer "
                    "cannot form differences; initialise around zero (nnkit's default, or "
                    "Dense(..., weight_init='xavier_uniform' or 'he_normal'))",
                    sign=sign,
                    mean=float(data.mean()),
                )
            )
        elif (
            columns.shape[1] >= 2
            and np.all(columns == columns[:, :1])
            and _symmetric_next(order, index)
        ):
            found.append(
                finding(
                    "bad_init",
                    where,
                    f"all units of {type(module).__name__} {where!r} have identical weights, so "
                    "they get identical gradients and stay identical (the symmetry is never "
                    "broken); initialise with random values",
                    units=int(columns.shape[1]),
                )
            )
        else:
            rms = float(np.sqrt(np.mean(np.square(data, dtype=np.float64))))
            scale = rms * float(np.sqrt(fan_in))
            if data.size >= 4 and (scale > 10 or 0 < scale < 0.01):
                found.append(
                    finding(
                        "bad_init",
                        where,
                        f"the weights of {type(module).__name__} {where!r} have a root mean square "
                        f"of {rms:.3g}, {scale:.3g} times 1/sqrt(fan_in) = "
                        f"{1 / np.sqrt(fan_in):.3g}; so far from it, activations "
                        f"{'explode or saturate' if scale > 10 else 'shrink to nothing'} layer by "
                        "layer. Use nnkit's default initialisation (PyTorch's "
                        "U(+-1/sqrt(fan_in))) or weight_init='he_normal' / 'xavier_normal'",
                        rms=rms,
                        relative_scale=scale,
                    )
                )
        if getattr(module, "bias", "absent") is None and not _normalised_next(order, index):
            found.append(
                finding(
                    "no_bias",
                    where,
                    f"{type(module).__name__} {where!r} has no bias, so every unit's boundary "
                    "passes through the origin and an output cannot shift (the original XOR "
                    "network's problem); keep bias=True unless a normalisation layer follows",
                )
            )
    return found


def _normalised_next(order: list[tuple[str, Module]], index: int) -> bool:
    """Whether the module after ``index`` adds a shift of its own: a 1-D parameter (a bias, a
    normalisation's beta) or a floating buffer (a running mean)."""
    if index + 1 >= len(order):
        return False
    following = order[index + 1][1]
    return any(p.data.ndim == 1 for p in following.parameters()) or any(
        b.dtype.kind == "f" for b in following.buffers()
    )


def _symmetric_next(order: list[tuple[str, Module]], index: int) -> bool:
    """Whether the next layer with weights treats the units of layer ``index`` alike (its
    weights from them are identical), so that identical units get identical gradients and
    the symmetry is never broken. A layer whose successors differ (a zero-initialised output
    layer, the last layer of a residual branch) learns apart after one step."""
    for _, module in order[index + 1 :]:
        data = getattr(getattr(module, "weight", None), "data", None)
        if isinstance(data, np.ndarray) and data.ndim >= 2:
            _, columns = _weight_layout(module, data)
            return bool(np.all(columns == columns[:1, :]))
    return False


def _loss_findings(
    loss_fn: Loss, pred: np.ndarray, y: np.ndarray, y_all: np.ndarray, last: tuple[str, Module]
) -> list[Finding]:
    name, module = last
    kind = type(loss_fn).__name__
    found: list[Finding] = []
    if isinstance(loss_fn, CrossEntropyLoss) and isinstance(module, (Softmax, LogSoftmax)):
        found.append(
            finding(
                "activation_before_logits_loss",
                name,
                f"the model ends in {type(module).__name__} ({name!r}) but {kind} applies "
                "log-softmax itself, so it squashes twice and the gradients shrink; remove the "
                f"final {type(module).__name__} and feed the logits",
                module=type(module).__name__,
            )
        )
    elif isinstance(loss_fn, BCEWithLogitsLoss) and isinstance(module, Sigmoid):
        found.append(
            finding(
                "activation_before_logits_loss",
                name,
                f"the model ends in Sigmoid ({name!r}) but {kind} applies the sigmoid itself; "
                "remove the final Sigmoid, or keep it and use BCELoss",
                module="Sigmoid",
            )
        )
    linear_end = any(True for _ in module.parameters())  # Dense, a conv: unbounded outputs
    outside = bool(pred.size) and (pred.min() < 0 or pred.max() > 1)
    if type(loss_fn) is BCELoss and (outside or linear_end):
        found.append(
            finding(
                "probabilities_loss_on_logits",
                name,
                f"BCELoss needs probabilities in [0, 1], but the model ends in "
                f"{type(module).__name__} ({name!r}), whose outputs range over "
                f"[{pred.min():.3g}, {pred.max():.3g}] and are not bounded: end the model in "
                "Sigmoid, or use BCEWithLogitsLoss on the raw outputs (more stable)",
                low=float(pred.min()),
                high=float(pred.max()),
            )
        )
    if isinstance(loss_fn, NLLLoss) and pred.ndim == 2 and pred.size:
        total = np.exp(F.logsumexp(pred.astype(np.float64), axis=1))
        if not np.allclose(total, 1.0, atol=1e-3):
            found.append(
                finding(
                    "probabilities_loss_on_logits",
                    name,
                    "NLLLoss needs log-probabilities (rows whose exp sums to 1), but the "
                    f"output of {name!r} is not (exp-sums from {total.min():.3g} to "
                    f"{total.max():.3g}): end the model in LogSoftmax, or use CrossEntropyLoss "
                    "on the logits",
                    exp_sum_min=float(total.min()),
                    exp_sum_max=float(total.max()),
                )
            )
    found.extend(_target_findings(loss_fn, pred, y, y_all))
    return found


def _target_findings(
    loss_fn: Loss, pred: np.ndarray, y: np.ndarray, y_all: np.ndarray
) -> list[Finding]:
    kind = type(loss_fn).__name__

    def mismatch(message: str, **evidence: Any) -> list[Finding]:
        return [finding("target_mismatch", "data", message, **evidence)]

    if isinstance(loss_fn, (CrossEntropyLoss, NLLLoss)) and pred.ndim == 2:
        classes = pred.shape[1]
        if y_all.shape == (len(y_all), 1):
            return mismatch(
                f"{kind} takes class indices of shape (N,), but y has shape {y_all.shape}; "
                "pass y.ravel()",
                shape=list(y_all.shape),
            )
        if y_all.ndim == 2 and y_all.shape[1] == classes and y_all.dtype.kind == "f":
            return []  # class probabilities
        if y_all.ndim != 1:
            return mismatch(f"{kind} takes y of shape (N,) (class indices), got {y_all.shape}")
        if y_all.dtype.kind == "f":
            if not np.all(np.mod(y_all, 1) == 0):
                distinct = len(np.unique(y_all))
                return mismatch(
                    f"y holds {distinct} distinct non-integer values, which are regression "
                    f"targets, not classes; {kind} is for classification: use MSELoss (and one "
                    "output) for a regression",
                    distinct=distinct,
                )
            return mismatch(
                f"y holds class labels as floats ({y_all.dtype}); pass integer labels "
                "(y.astype(np.int64))",
                dtype=str(y_all.dtype),
            )
        low, high = int(y_all.min()), int(y_all.max())
        if low < 0 or high >= classes:
            return mismatch(
                f"y holds labels from {low} to {high}, but the model has {classes} outputs "
                f"(classes 0 to {classes - 1}); give the last layer {high + 1} outputs or "
                "relabel the classes from 0",
                low=low,
                high=high,
                classes=classes,
            )
    if isinstance(loss_fn, (BCELoss, BCEWithLogitsLoss)):
        if y_all.size and (y_all.min() < 0 or y_all.max() > 1):
            return mismatch(
                f"{kind} needs targets in [0, 1], but y ranges over [{y_all.min():.3g}, "
                f"{y_all.max():.3g}]; use class indices with CrossEntropyLoss for several "
                "classes, or MSELoss for a regression",
                low=float(y_all.min()),
                high=float(y_all.max()),
            )
        if y_all.ndim == 1 and pred.ndim == 2 and pred.shape[1] == 1:
            return mismatch(
                f"the model outputs shape (N, 1) but y has shape {y_all.shape}; pass "
                "y.reshape(-1, 1) so they line up",
                shape=list(y_all.shape),
            )
    return []
