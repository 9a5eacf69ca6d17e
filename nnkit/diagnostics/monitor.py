"""HealthMonitor: per-layer statistics of a training run, turned into findings."""

from __future__ import annotations

import importlib
import math
import os
from typing import Any

import numpy as np

from nnkit._types import Logs
from nnkit.callbacks import Callback
from nnkit.diagnostics.findings import Finding, finding
from nnkit.diagnostics.trace import Tracer, finite
from nnkit.layers.activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from nnkit.module import Module

__all__ = ["HealthMonitor"]

_RECTIFIERS = (ReLU,)
_SQUASHERS = (Sigmoid, Tanh)
_ACTIVATIONS = (ReLU, LeakyReLU, ELU, GELU, SiLU, Sigmoid, Tanh)

DEAD_FRACTION = 0.5
"""A ReLU layer is reported when more than this fraction of its units never fire."""

SATURATED_FRACTION = 0.5
"""A sigmoid/tanh layer is reported when more than this fraction of its units are saturated."""

SATURATED_SAMPLES = 2 / 3
"""A unit is saturated when it is in the flat region for more than this fraction of the
samples."""

GRADIENT_SPAN = 1e3
"""Vanishing/exploding: the gradient reaching the first layer with weights and the one
reaching the last differ by more than this factor."""


def _units(y: np.ndarray) -> np.ndarray:
    """y as (samples, units): axis 1 is the unit (feature or channel) axis."""
    if y.ndim == 1:
        return y[:, None]
    if y.ndim == 2:
        return y
    moved = np.moveaxis(y, 1, -1)
    return moved.reshape(-1, y.shape[1])


class _LayerStats:
    """What one module's outputs did in one epoch."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.active: np.ndarray | None = None  # per unit: samples where y > 0
        self.saturated: np.ndarray | None = None  # per unit: samples in the flat region
        self.samples = 0
        self.input_varies = False
        self.output_varies = False

    def add(self, module: Module, x: Any, y: np.ndarray) -> None:
        if isinstance(x, np.ndarray) and x.ndim >= 1 and len(x) > 1:
            self.input_varies = self.input_varies or bool(np.any(x != x[:1]))
        if y.ndim >= 1 and len(y) > 1:
            self.output_varies = self.output_varies or bool(np.any(y != y[:1]))
        values = y.astype(np.float64, copy=False)
        self.count += values.size
        self.total += float(values.sum())
        self.total_sq += float(np.square(values).sum())
        if y.ndim == 0 or y.shape[0] == 0:
            return
        units = _units(y)
        self.samples += units.shape[0]
        if isinstance(module, _RECTIFIERS):
            active = (units > 0).sum(axis=0)
            self.active = active if self.active is None else self.active + active
        elif isinstance(module, _SQUASHERS):
            if isinstance(module, Sigmoid):
                flat = (units < 0.01) | (units > 0.99)
            else:
                flat = np.abs(units) > 0.99
            sat = flat.sum(axis=0)
            self.saturated = sat if self.saturated is None else self.saturated + sat

    def summary(self) -> dict[str, Any]:
        mean = self.total / self.count if self.count else math.nan
        var = self.total_sq / self.count - mean * mean if self.count else math.nan
        out: dict[str, Any] = {"mean": mean, "std": math.sqrt(max(var, 0.0))}
        out["constant"] = self.input_varies and not self.output_varies
        if self.active is not None:
            out["dead_fraction"] = float(np.mean(self.active == 0))
        if self.saturated is not None and self.samples:
            out["saturated_fraction"] = float(
                np.mean(self.saturated > SATURATED_SAMPLES * self.samples)
            )
        return out


class HealthMonitor(Callback):
    """Records per-layer statistics while a model trains, and turns them into findings.

    Per epoch, for every module without children: the mean and standard deviation of its
    output; for a ReLU, the fraction of dead units (never positive on the epoch's data); for a
    hidden Sigmoid or Tanh (not the output layer, which a confident model saturates), the
    fraction of saturated units (in the flat region, ``y < 0.01`` or
    ``> 0.99`` for a sigmoid, ``|y| > 0.99`` for a tanh, on more than 2/3 of the samples).
    Per parameter: the gradient norm (mean over the epoch's steps) and the update-to-parameter
    ratio ``|delta p| / |p|`` of the epoch's first step. Per layer with weights: the norm per
    sample of the gradient reaching its output, whose fall or rise from the last layer to the
    first is a vanishing or exploding gradient. And the first module, pass (forward or
    backward), epoch and step where a NaN or inf appeared.

    Use it as a ``fit`` callback, ``fit(..., callbacks=[monitor])``, or from a hand-written
    loop: ``monitor.attach(model)``, then ``monitor.on_epoch_begin(epoch)``,
    ``monitor.on_batch_end(step, {"loss": loss})`` after each optimizer step,
    ``monitor.on_epoch_end(epoch, {})``, and ``monitor.detach()`` at the end.

    Attributes:
        history: one dict per epoch: ``{"epoch", "loss", "layers": {name: stats},
            "gradients": {param: norm}, "update_ratios": {param: ratio}}``.
        nonfinite: ``{"where", "pass", "epoch", "step"}`` of the first NaN or inf, or None.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.nonfinite: dict[str, Any] | None = None
        self._tracer: Tracer | None = None
        self._model: Module | None = None
        self._epoch = 0
        self._step = 0
        self._layers: dict[str, _LayerStats] = {}
        self._grads: dict[str, float] = {}
        self._grad_steps = 0
        self._before: dict[str, np.ndarray] | None = None
        self._ratios: dict[str, float] = {}
        self._losses: list[float] = []
        self._order: list[str] = []  # leaf modules in the order their forwards first ran
        self._deltas: dict[str, float] = {}  # summed per-sample norm of dL/doutput
        self._delta_counts: dict[str, int] = {}

    # -- attaching ---------------------------------------------------------------------------
    def attach(self, model: Module) -> None:
        """Start watching ``model`` (fit does this through ``on_train_begin``)."""
        self.detach()
        self._model = model
        leaves = {id(m) for _, m in model.named_modules() if next(m.children(), None) is None}

        def on_forward(name: str, module: Module, inputs: tuple[Any, ...], output: Any) -> None:
            if self.nonfinite is None and not finite(output) and all(finite(x) for x in inputs):
                self._record_nonfinite(name, "forward")
            if id(module) in leaves and isinstance(output, np.ndarray) and output.dtype.kind == "f":
                first = inputs[0] if inputs else None
                self._layers.setdefault(name, _LayerStats()).add(module, first, output)
                if name not in self._order:
                    self._order.append(name)

        weighted = {id(m) for m in model.modules() if id(m) in leaves and _has_weight(m)}

        def on_backward(name: str, module: Module, grads: tuple[Any, ...], result: Any) -> None:
            if id(module) in weighted and grads and isinstance(grads[0], np.ndarray):
                g = grads[0]
                if g.size and g.ndim and finite(g):  # the norm per sample: width-independent
                    norm = float(np.sqrt(np.sum(np.square(g, dtype=np.float64)) / len(g)))
                    self._deltas[name] = self._deltas.get(name, 0.0) + norm
                    self._delta_counts[name] = self._delta_counts.get(name, 0) + 1
            if self.nonfinite is not None or not all(finite(g) for g in grads):
                return
            bad_params = any(not finite(p.grad) for p in module.parameters())
            if not finite(result) or (id(module) in leaves and bad_params):
                self._record_nonfinite(name, "backward")

        self._tracer = Tracer(model, on_forward, on_backward)

    def detach(self) -> None:
        """Stop watching; the model's own methods are put back."""
        if self._tracer is not None:
            self._tracer.close()
            self._tracer = None

    def _record_nonfinite(self, name: str, where: str) -> None:
        self.nonfinite = {"where": name, "pass": where, "epoch": self._epoch, "step": self._step}

    # -- the callback hooks ------------------------------------------------------------------
    def on_train_begin(self, logs: Logs) -> None:
        self.attach(self.model)

    def on_epoch_begin(self, epoch: int) -> None:
        self._epoch = epoch
        self._layers, self._grads, self._grad_steps, self._ratios = {}, {}, 0, {}
        self._deltas, self._delta_counts = {}, {}
        self._losses = []
        if self._model is not None:
            self._before = {n: p.data.copy() for n, p in self._model.named_parameters()}

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        self._step += 1
        if "loss" in logs:
            self._losses.append(float(logs["loss"]))
        if self._model is None:
            return
        self._grad_steps += 1
        for name, param in self._model.named_parameters():
            norm = float(np.sqrt(np.sum(np.square(param.grad, dtype=np.float64))))
            self._grads[name] = self._grads.get(name, 0.0) + norm
            if self._before is not None and name in self._before:
                base = float(np.linalg.norm(self._before[name]))
                change = float(np.linalg.norm(param.data - self._before[name]))
                self._ratios[name] = change / base if base > 0 else math.inf
        self._before = None

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        losses = self._losses
        self.history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)) if losses else logs.get("loss", math.nan),
                "losses": list(losses),
                "layers": {name: s.summary() for name, s in self._layers.items()},
                "gradients": {n: g / max(self._grad_steps, 1) for n, g in self._grads.items()},
                "update_ratios": dict(self._ratios),
                "output_gradients": {
                    n: self._deltas[n] / self._delta_counts[n]
                    for n in self._order
                    if n in self._deltas
                },
            }
        )

    def on_train_end(self, logs: Logs) -> None:
        self.detach()

    def _release(self) -> None:
        self.detach()

    # -- findings ----------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        """What the recorded statistics say (see docs/why-wont-it-learn.md for each code)."""
        found: list[Finding] = []
        if self.nonfinite is not None:
            nf = self.nonfinite
            cause = f" ({nf['error']})" if "error" in nf else ""
            found.append(
                finding(
                    "nonfinite",
                    nf["where"],
                    f"a NaN or inf first appeared in the {nf['pass']} pass of module "
                    f"{nf['where']!r}{cause} (epoch {nf['epoch']}, step {nf['step']}), from "
                    "finite inputs; look at that module's arithmetic (an exp that overflows, a "
                    "division by zero, a log of 0: nnkit.functional has stable versions), or "
                    "lower the learning rate if the values grew until they overflowed",
                    module=nf["where"],
                    **{k: v for k, v in nf.items() if k != "where"},
                )
            )
        if not self.history:
            return found
        last = self.history[-1]
        modules = dict(self._model.named_modules()) if self._model is not None else {}
        output = self._order[-1] if self._order else None
        constant = next((n for n in self._order if last["layers"].get(n, {}).get("constant")), None)
        downstream = set(self._order[self._order.index(constant) + 1 :]) if constant else set()
        if constant is not None:
            kind = type(modules.get(constant)).__name__
            found.append(
                finding(
                    "constant_output",
                    constant,
                    f"{kind} {constant!r} gives the same output for every sample although its "
                    "input varies, so nothing after it can tell the samples apart and the "
                    "network predicts the average; "
                    + (
                        "its units are all inactive (see dead_units)"
                        if kind == "ReLU"
                        else "check what it computes (a zero scale, a constant, a wrong axis)"
                    ),
                    module=kind,
                )
            )
        for epoch in (self.history[0], last):  # at the start (initialisation), and at the end
            at_start = epoch is self.history[0]
            for name, stats in epoch["layers"].items():
                if name == output or name in downstream:
                    continue  # a confident output layer saturates; after a constant, symptoms
                dead = stats.get("dead_fraction")
                if dead is not None and dead > DEAD_FRACTION:
                    found.append(
                        finding(
                            "dead_units",
                            name,
                            f"{dead:.0%} of the units of ReLU {name!r} are never active on the "
                            "data, so they pass no gradient; lower the learning rate, give the "
                            "layer before it biases near 0 and a zero-mean initialisation "
                            "(nnkit's default, or Dense(..., weight_init='he_normal')), or use "
                            "LeakyReLU",
                            dead_fraction=dead,
                        )
                    )
                saturated = stats.get("saturated_fraction")
                if at_start and saturated is not None and saturated > SATURATED_FRACTION:
                    # at the start only: a network that has learned (XOR) saturates on purpose
                    kind = type(modules.get(name)).__name__
                    found.append(
                        finding(
                            "saturated_units",
                            name,
                            f"{saturated:.0%} of the units of {kind} {name!r} sit in the flat "
                            "part of the curve for most samples, where the gradient is about "
                            "0; scale the inputs, use a smaller initialisation for the layer "
                            "before it, or use ReLU in hidden layers",
                            saturated_fraction=saturated,
                        )
                    )
        for record in (self.history[0], last):  # at the start, and as training went on
            gradient = _gradient_findings(self._model, record)
            if gradient:
                found.extend(gradient)
                break
        return found

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Draw the per-layer statistics over epochs (needs matplotlib: the ``plot`` extra).

        Three panels: the output std of each layer, the gradient norm of each parameter, and
        the update ratio of each parameter (log scale). With ``path`` the figure is saved there
        without opening a window; without it, ``matplotlib.pyplot.show()`` displays it.

        Returns:
            The matplotlib ``Figure``.

        Raises:
            ImportError: matplotlib is not installed.
            ValueError: nothing was recorded yet.
        """
        try:
            figure_module = importlib.import_module("matplotlib.figure")
        except ImportError as exc:
            raise ImportError(
                "HealthMonitor.plot() needs matplotlib, which is not installed; install the "
                'plot extra from the nnkit checkout: pip install ".[plot]"'
            ) from exc
        if not self.history:
            raise ValueError("the HealthMonitor has recorded no epoch yet")
        if path is None:
            figure = importlib.import_module("matplotlib.pyplot").figure()
        else:
            figure = figure_module.Figure()
        figure.set_size_inches(15, 4)
        axes = figure.subplots(1, 3, squeeze=False)[0]
        epochs = [h["epoch"] + 1 for h in self.history]
        last = self.history[-1]
        for name in last["layers"]:
            stds = [h["layers"].get(name, {}).get("std", math.nan) for h in self.history]
            axes[0].plot(epochs, stds, label=name)
        axes[0].set_title("output std")
        for ax, key, title in (
            (axes[1], "gradients", "gradient norm"),
            (axes[2], "update_ratios", "update / parameter"),
        ):
            for name in last[key]:
                ax.plot(epochs, [h[key].get(name, math.nan) for h in self.history], label=name)
            ax.set_yscale("log")
            ax.set_title(title)
        for ax in axes:
            ax.set_xlabel("epoch")
            if ax.lines:
                ax.legend(fontsize="small")
        figure.tight_layout()
        if path is None:
            importlib.import_module("matplotlib.pyplot").show()
        else:
            figure.savefig(os.fspath(path))
        return figure


def _has_weight(module: Module) -> bool:
    return any(p.data.ndim >= 2 for p in module.parameters())


def _gradient_findings(model: Module | None, record: dict[str, Any]) -> list[Finding]:
    """Vanishing or exploding gradients: the per-sample norm of dL/d(output) of the layers
    with weights, in forward order, compared between the first such layer and the last."""
    deltas = list(record.get("output_gradients", {}).items())
    if model is None or len(deltas) < 3:
        return []
    (first, g_first), (last, g_last) = deltas[0], deltas[-1]
    if g_first <= 0 or g_last <= 0:
        return []
    ratio = g_first / g_last
    evidence: dict[str, Any] = {
        "first": first,
        "last": last,
        "first_to_last": ratio,
        "output_gradient_norms": [g for _, g in deltas],
    }
    if ratio < 1 / GRADIENT_SPAN:
        return [
            finding(
                "vanishing_gradient",
                first,
                f"the gradient reaching layer {first!r} is {1 / ratio:.2g}x smaller than the "
                f"one reaching {last!r}: it shrinks layer by layer on the way back, so the "
                "first layers barely learn; use ReLU instead of sigmoid/tanh in hidden layers, "
                "weight_init='xavier_normal' (tanh) or 'he_normal' (ReLU), fewer layers, or "
                "residual connections",
                **evidence,
            )
        ]
    if ratio > GRADIENT_SPAN:
        return [
            finding(
                "exploding_gradient",
                first,
                f"the gradient reaching layer {first!r} is {ratio:.2g}x larger than the one "
                f"reaching {last!r}: it grows layer by layer on the way back; use a smaller "
                "initialisation (nnkit's default, PyTorch's U(+-1/sqrt(fan_in))), "
                "normalisation layers, or "
                "gradient clipping (nnkit.optim.clip_grad_norm_ in a train_step)",
                **evidence,
            )
        ]
    return []
