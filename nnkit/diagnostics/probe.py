"""``nnkit.diagnose``: why won't my network learn?"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np

from nnkit.diagnostics.findings import Finding, Report, finding
from nnkit.diagnostics.gradients import first_bad_gradient
from nnkit.diagnostics.lint import lint
from nnkit.diagnostics.monitor import HealthMonitor
from nnkit.losses import Loss
from nnkit.module import Module
from nnkit.optim.adam import Adam
from nnkit.optim.optimizer import Optimizer

__all__ = ["diagnose"]

LOW_UPDATE_RATIO = 1e-5
"""Updates smaller than this fraction of the parameters (per step) learn too slowly."""

LARGE_UPDATE_RATIO = 1.0
"""A first update larger than the parameters themselves is a learning rate far too high."""


def diagnose(
    model: Module,
    loss_fn: Loss,
    X: Any,
    y: Any,
    *,
    optimizer: Optimizer | None = None,
    steps: int | None = None,
    samples: int = 128,
    rng: np.random.Generator | None = None,
) -> Report:
    """Find out why ``model`` does not learn ``(X, y)``, with the layer, the evidence and the fix.

    Works on copies: the model and the optimizer you pass are not changed. It runs, in order:

    1. the static checks of :func:`nnkit.diagnostics.lint` (data, targets, the loss and the
       output layer, initialisation, biases);
    2. the whole-model gradient check of :func:`nnkit.diagnostics.check_gradients`, which
       names the first module whose backward is wrong;
    3. a probe: ``steps`` full-batch training steps on (up to) ``samples`` samples drawn with
       ``rng`` (by default 100 steps, and 1000 for a data set of 16 samples or fewer, which
       such as XOR needs the longer run to leave its plateau), with a copy of
       ``optimizer`` (``Adam(lr=1e-3)`` when none is given: learning-rate findings are then
       left out), watched by a :class:`~nnkit.diagnostics.HealthMonitor` and with floating
       point errors trapped, so the first overflow or NaN is pinned to its module.

    Returns:
        A :class:`~nnkit.diagnostics.Report`: ``print(report)`` reads as advice,
        ``report.findings`` lists :class:`~nnkit.diagnostics.Finding` objects sorted by
        severity, likeliest cause first; a healthy setup gives none (or only info notes).
        ``report.notes`` holds the probe's losses and timing.
    """
    if not isinstance(model, Module):
        raise TypeError(f"diagnose takes an nnkit Module, got {type(model).__name__}")
    if not isinstance(loss_fn, Loss):
        raise TypeError(f"diagnose takes an nnkit Loss, got {type(loss_fn).__name__}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be an nnkit.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if steps is not None and (type(steps) is not int or steps < 2):
        raise ValueError(f"steps must be an int >= 2 or None, got {steps!r}")
    if type(samples) is not int or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    start = time.perf_counter()
    X_, y_ = np.asarray(X), np.asarray(y)
    if len(X_) != len(y_) or len(X_) == 0:
        raise ValueError(f"X and y must have the same non-zero length, got {len(X_)} and {len(y_)}")
    rng = rng if rng is not None else np.random.default_rng(0)
    pick = np.sort(rng.choice(len(X_), min(samples, len(X_)), replace=False))
    xb, yb = X_[pick], y_[pick]
    if steps is None:
        steps = 1000 if len(xb) <= 16 else 100

    findings = lint(model, loss_fn, X_, y_)
    notes: dict[str, Any] = {}
    blocking = any(f.code in ("target_mismatch", "probabilities_loss_on_logits") for f in findings)
    try:
        bad = first_bad_gradient(model, xb, yb, None if blocking else loss_fn)
    except Exception as exc:  # the model cannot run on the data: lint or fit says why
        notes["gradient_check_error"] = f"{type(exc).__name__}: {exc}"
        bad = None
    if bad is not None:
        findings.append(
            finding(
                "bad_gradient",
                bad[0],
                f"the backward of {bad[2]}. Its gradient disagrees with finite differences, "
                "so training follows a wrong direction: fix that module's backward (check it "
                "alone with nnkit.testing.check_module)",
                module=type(bad[1]).__name__,
            )
        )
    if not blocking:
        findings.extend(_probe(model, loss_fn, xb, yb, optimizer, steps, notes, findings))
    notes["seconds"] = time.perf_counter() - start
    return Report(_deduplicate(findings), notes)


def _probe(
    model: Module,
    loss_fn: Loss,
    xb: np.ndarray,
    yb: np.ndarray,
    optimizer: Optimizer | None,
    steps: int,
    notes: dict[str, Any],
    prior: list[Finding],
) -> list[Finding]:
    """Train copies for ``steps`` full-batch steps and read what happened; ``prior`` are the
    findings so far, which may already explain a loss that does not fall."""
    if optimizer is None:
        replica = copy.deepcopy(model)
        opt: Optimizer = Adam(replica.parameters(), lr=1e-3)
    else:
        replica, opt = copy.deepcopy((model, optimizer))
    if not replica.training:
        replica.train()
    monitor = HealthMonitor()
    monitor.attach(replica)
    chunk = max(steps // 10, 1)
    losses: list[float] = []
    failure: str | None = None
    preds: Any = None
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            for step in range(steps):
                if step % chunk == 0:
                    if step:
                        monitor.on_epoch_end(step // chunk - 1, {})
                    monitor.on_epoch_begin(step // chunk)
                opt.zero_grad()
                preds = replica(xb)
                loss = float(loss_fn(preds, yb))
                losses.append(loss)
                if not math.isfinite(loss):
                    failure = "loss"
                    break
                replica.accumulate_grad(loss_fn.backward())
                opt.step()
                monitor.on_batch_end(step, {"loss": loss})
        monitor.on_epoch_end(len(monitor.history), {})
    except FloatingPointError as exc:
        where = monitor._tracer.failed_in if monitor._tracer is not None else None
        failure = f"{where[1]} of module {where[0]!r}: {exc}" if where else f"the loss: {exc}"
        notes["floating_point_error"] = failure
        if where is not None and monitor.nonfinite is None:
            monitor.nonfinite = {
                "where": where[0],
                "pass": where[1],
                "epoch": 0,
                "step": len(losses),
                "error": str(exc),
            }
    except Exception as exc:
        notes["probe_error"] = f"{type(exc).__name__}: {exc}"
        monitor.detach()
        if "expects pred probabilities" in str(exc):  # the output left [0, 1] while training
            return [
                finding(
                    "probabilities_loss_on_logits",
                    "loss",
                    f"{type(loss_fn).__name__} needs probabilities, but after {len(losses)} "
                    f"training steps the model's output left [0, 1] ({exc}); end the model in "
                    "Sigmoid, or use BCEWithLogitsLoss on the raw outputs",
                    steps=len(losses),
                )
            ]
        return []
    finally:
        monitor.detach()
    notes["losses"] = losses
    found = monitor.findings()
    grew = len(losses) > 1 and max(losses[1:]) > 10 * losses[0]
    if failure is not None and grew and optimizer is not None:
        found = [f for f in found if f.code != "nonfinite"]
        found.append(
            finding(
                "lr_too_high",
                "optimizer",
                f"the loss grew from {losses[0]:.3g} to {max(losses):.3g} in {len(losses)} "
                f"steps and then overflowed ({failure}): the learning rate "
                f"{_lr(optimizer):.3g} is too high; divide it by 10",
                severity="error",
                first_loss=losses[0],
                largest_loss=max(losses),
                steps=len(losses),
            )
        )
        return found
    if failure is not None and monitor.nonfinite is None:
        found.append(
            finding(
                "nonfinite",
                "loss",
                f"the loss became {losses[-1] if losses else 'NaN'} ({failure}); check the "
                "targets and the loss's inputs",
                step=len(losses),
            )
        )
    if failure is not None or len(losses) < 4:
        return found
    first, end = losses[0], float(np.mean(losses[-max(len(losses) // 10, 1) :]))
    improved = (first - end) / abs(first) if first else 0.0
    notes["relative_improvement"] = improved
    if optimizer is not None:
        diffs = np.diff(losses)
        rises = float(np.mean(diffs > 0))
        first_step = (
            [r for r in monitor.history[0]["update_ratios"].values() if math.isfinite(r)]
            if monitor.history
            else []
        )
        leap = float(np.median(first_step)) if first_step else 0.0
        notes["first_update_ratio"] = leap
        if leap > LARGE_UPDATE_RATIO and improved < 0.5:
            found.append(
                finding(
                    "lr_too_high",
                    "optimizer",
                    f"the first step changed the parameters by {leap:.3g} times their own size "
                    f"(healthy training is near 1e-3), and the loss fell only {improved:.1%} "
                    f"in {len(losses)} steps: the learning rate {_lr(optimizer):.3g} is far "
                    "too high (a step that large can kill every ReLU at once); divide it by 10 "
                    "to 100",
                    first_update_ratio=leap,
                    relative_improvement=improved,
                )
            )
        elif end > 1.5 * first or (
            rises > 0.4 and improved < 0.05 and np.std(diffs) > 0.05 * abs(first)
        ):
            found.append(
                finding(
                    "lr_too_high",
                    "optimizer",
                    f"the loss went from {first:.3g} to {end:.3g} and rose on {rises:.0%} of the "
                    f"steps: it diverges or oscillates, so the learning rate {_lr(optimizer):.3g} "
                    "is too high; divide it by 10",
                    first_loss=first,
                    last_loss=end,
                    rising_steps=rises,
                )
            )
        ratios = [
            r for h in monitor.history for r in h["update_ratios"].values() if math.isfinite(r)
        ]
        median = float(np.median(ratios)) if ratios else math.nan
        notes["median_update_ratio"] = median
        diverged = any(f.code == "lr_too_high" for f in found)
        stuck = any(f.code in ("dead_units", "vanishing_gradient") for f in found)
        if ratios and 0 < median < LOW_UPDATE_RATIO and improved < 0.05 and not (diverged or stuck):
            found.append(
                finding(
                    "lr_too_low",
                    "optimizer",
                    f"each step changes the parameters by about {median:.2g} of their size "
                    f"(healthy training is near 1e-3) and the loss fell only {improved:.1%} in "
                    f"{len(losses)} steps: the learning rate {_lr(optimizer):.3g} is too low; "
                    "multiply it by 10 to 100",
                    median_update_ratio=median,
                    relative_improvement=improved,
                )
            )
    flat_module = any(f.code == "constant_output" for f in found)
    if improved < 0.05 and not flat_module and isinstance(preds, np.ndarray) and len(preds) > 1:
        spread = float(np.max(np.std(preds.reshape(len(preds), -1), axis=0)))
        size = float(np.mean(np.abs(preds))) + 1e-12
        if spread < 1e-3 * max(size, 1e-3):
            found.append(
                finding(
                    "constant_output",
                    "model",
                    f"the model gives (nearly) the same output for every sample (spread "
                    f"{spread:.2g} against a size of {size:.2g}): it predicts the average "
                    "target. Look at the findings above; if there are none, check that the "
                    "inputs reach the output (a layer that drops them, all-equal inputs)",
                    spread=spread,
                    size=size,
                )
            )
    explained = [f for f in [*prior, *found] if f.severity != "info"]
    if improved < 0.05 and not explained:
        found.append(
            finding(
                "not_learning",
                "model",
                f"the loss went from {first:.3g} to {end:.3g} in {len(losses)} steps on "
                f"{len(xb)} samples, and no other check explains it; try a larger model or "
                "learning rate, or look for a bug in a custom module (check_module)",
                first_loss=first,
                last_loss=end,
            )
        )
    return found


def _lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0].get("lr", math.nan))


def _deduplicate(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        key = (f.code, f.where)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
