"""nnkit.diagnose on a corpus of broken and healthy setups, and the diagnostics API."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diagnosis_cases import BROKEN, HEALTHY, Broken, ForgetsScale, mlp, spirals_data

import nnkit
from nnkit.diagnostics import (
    CODES,
    Finding,
    HealthMonitor,
    Report,
    SetupWarning,
    check_gradients,
    lint,
)
from nnkit.optim import SGD, Adam


@pytest.mark.parametrize("case", BROKEN, ids=[c.name for c in BROKEN])
def test_a_broken_setup_gets_the_right_first_finding(case: Broken) -> None:
    model, loss_fn, X, y, optimizer = case.make()
    report = nnkit.diagnose(model, loss_fn, X, y, optimizer=optimizer)
    assert report.findings, f"nothing found; notes: {report.notes}"
    top = report.findings[0]
    assert (top.code, top.where) == (case.code, case.where), str(report)
    assert top.severity == CODES[top.code][0] or top.code == "lr_too_high"


@pytest.mark.parametrize("name, make", HEALTHY, ids=[name for name, _ in HEALTHY])
def test_a_healthy_setup_gets_no_warning(name: str, make: Any) -> None:
    model, loss_fn, X, y, optimizer = make()
    report = nnkit.diagnose(model, loss_fn, X, y, optimizer=optimizer)
    assert not report.problems, str(report)
    assert "no problems found" in str(report)


def test_the_corpus_covers_every_code() -> None:
    assert len(BROKEN) >= 20 and len(HEALTHY) >= 8
    assert {case.code for case in BROKEN} == set(CODES)


def test_diagnose_leaves_the_model_and_the_optimizer_untouched() -> None:
    model = mlp()
    optimizer = Adam(model.parameters(), lr=1e-2)
    X, y = spirals_data()
    before, opt_before = model.state_dict(), copy.deepcopy(optimizer.state_dict())
    modes = [m.training for m in model.modules()]
    nnkit.diagnose(model, nnkit.CrossEntropyLoss(), X, y, optimizer=optimizer)
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in before.items())
    assert optimizer.state_dict() == opt_before
    assert [m.training for m in model.modules()] == modes
    assert all("forward" not in vars(m) for m in model.modules())  # no tracer left


def test_report_reads_as_advice_and_orders_by_severity() -> None:
    report = Report(
        [
            Finding("no_bias", "warning", "0", "add a bias"),
            Finding("bad_gradient", "error", "2", "fix backward", {"module": "Dense"}),
            Finding("constant_inputs", "info", "data", "a constant feature"),
        ]
    )
    assert report.codes == ["bad_gradient", "no_bias", "constant_inputs"]
    text = str(report)
    assert text.splitlines()[0] == "nnkit.diagnose: 2 problems and 1 note found, likeliest first."
    assert "1. [error] bad_gradient at 2" in text and "evidence: module='Dense'" in text
    assert bool(report) and not Report([Finding("constant_inputs", "info", "data", "x")])


def test_check_gradients_names_the_first_faulty_module_and_passes_good_models() -> None:
    X, y = spirals_data()
    check_gradients(mlp(), X, y, nnkit.CrossEntropyLoss())
    r = np.random.default_rng(0)
    model = nnkit.Sequential(
        nnkit.Dense(2, 8, rng=r),
        nnkit.Residual(nnkit.Sequential(nnkit.Dense(8, 8, rng=r), ForgetsScale())),
        nnkit.Dense(8, 3, rng=r),
    )
    with pytest.raises(nnkit.GradcheckError, match=r"module '1\.body\.1' \(ForgetsScale\)"):
        check_gradients(model, X)


def test_check_gradients_does_not_mistake_a_kink_for_a_bug() -> None:
    """A max over equal values (a ReLU at exactly 0) is a kink, not a bug."""
    model = nnkit.Sequential(nnkit.ReLU(), nnkit.Dense(2, 3, rng=np.random.default_rng(0)))
    X = np.zeros((8, 2))  # every ReLU input sits on its kink
    check_gradients(model, X, include_builtin=True)
    r = np.random.default_rng(1)
    pooled = nnkit.Sequential(  # ReLU zeros tie inside the max-pool windows
        nnkit.Conv2d(1, 4, 3, padding=1, rng=r), nnkit.ReLU(), nnkit.MaxPool2d(2),
        nnkit.Flatten(), nnkit.Dense(16, 3, rng=r),
    )  # fmt: skip
    images = np.maximum(r.normal(size=(8, 1, 4, 4)), 0)
    check_gradients(pooled, images, include_builtin=True)


def test_check_gradients_skips_nnkit_classes_unless_asked() -> None:
    calls: list[str] = []

    class Counting(nnkit.Dense):
        def backward(self, grad_out: Any) -> Any:
            calls.append("backward")
            return super().backward(grad_out)

    X, _ = spirals_data()
    model = nnkit.Sequential(Counting(2, 3), nnkit.Tanh(), nnkit.Dense(3, 2))
    check_gradients(model, X)
    assert calls  # the user's subclass is checked
    calls.clear()
    check_gradients(nnkit.Sequential(nnkit.Dense(2, 3)), X)
    assert not calls


def test_health_monitor_records_each_epoch_in_fit(tmp_path: Path) -> None:
    X, y = spirals_data()
    model = mlp()
    monitor = HealthMonitor()
    nnkit.fit(model, nnkit.CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2), X, y,
              epochs=3, callbacks=[monitor], verbose=0)  # fmt: skip
    assert [h["epoch"] for h in monitor.history] == [0, 1, 2]
    layers = monitor.history[-1]["layers"]
    assert set(layers) == {"0", "1", "2", "3", "4"}
    assert 0 <= layers["1"]["dead_fraction"] <= 1
    assert set(monitor.history[0]["gradients"]) == {n for n, _ in model.named_parameters()}
    assert all(r > 0 for r in monitor.history[0]["update_ratios"].values())
    assert monitor.nonfinite is None and monitor.findings() == []
    assert "forward" not in vars(model[0])  # the model's methods are back
    pytest.importorskip("matplotlib")
    monitor.plot(tmp_path / "health.png")
    assert (tmp_path / "health.png").stat().st_size > 0


def test_health_monitor_pins_the_first_nan_to_its_module_in_a_hand_written_loop() -> None:
    class Breaks(nnkit.Module):
        def forward(self, x: Any) -> Any:
            y = np.array(x, dtype=np.float64, copy=True)
            y[0, 0] = np.nan
            return y

        def backward(self, grad_out: Any) -> Any:
            return grad_out

    r = np.random.default_rng(0)
    model = nnkit.Sequential(nnkit.Dense(2, 4, rng=r), Breaks(), nnkit.Dense(4, 1, rng=r))
    monitor = HealthMonitor()
    monitor.attach(model)
    monitor.on_epoch_begin(0)
    model(np.ones((3, 2)))
    monitor.on_batch_end(0, {"loss": 1.0})
    monitor.on_epoch_end(0, {})
    monitor.detach()
    assert monitor.nonfinite == {"where": "1", "pass": "forward", "epoch": 0, "step": 0}
    assert [f.code for f in monitor.findings()][:1] == ["nonfinite"]


def test_fit_warns_about_the_setup_and_can_be_told_not_to() -> None:
    X, y = spirals_data()
    model = nnkit.Sequential(*mlp().layers, nnkit.Softmax())
    with pytest.warns(SetupWarning, match="activation_before_logits_loss at 5"):
        nnkit.fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
                  epochs=1, verbose=0)  # fmt: skip
    nnkit.fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
              epochs=1, verbose=0, warn_setup=False)  # fmt: skip
    assert lint(mlp(), nnkit.CrossEntropyLoss(), X, y) == []


def test_diagnose_checks_its_arguments() -> None:
    X, y = spirals_data()
    with pytest.raises(TypeError, match="nnkit Loss"):
        nnkit.diagnose(mlp(), lambda p, t: 0.0, X, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same non-zero length"):
        nnkit.diagnose(mlp(), nnkit.CrossEntropyLoss(), X, y[:3])
    with pytest.raises(ValueError, match="steps"):
        nnkit.diagnose(mlp(), nnkit.CrossEntropyLoss(), X, y, steps=1)


def test_a_monitor_is_detached_when_fit_raises_and_copies_never_run_the_original() -> None:
    class Boom(nnkit.callbacks.Callback):
        def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
            raise RuntimeError("boom")

    X, y = spirals_data()
    model = mlp()
    with pytest.raises(RuntimeError, match="boom"):
        nnkit.fit(model, nnkit.CrossEntropyLoss(), Adam(model.parameters()), X, y, epochs=1,
                  callbacks=[HealthMonitor(), Boom()], verbose=0)  # fmt: skip
    assert all("forward" not in vars(m) for m in model.modules())
    monitor = HealthMonitor()
    monitor.attach(model)
    clone = copy.deepcopy(model)  # while traced
    monitor.detach()
    clone[0].weight.data += 1.0
    assert not np.array_equal(clone(X), model(X))  # the copy runs its own weights


def test_a_callback_that_freezes_a_layer_is_obeyed() -> None:
    from stateful_layers import Center

    class Freeze(nnkit.callbacks.Callback):
        def on_epoch_begin(self, epoch: int) -> None:
            if epoch == 1:
                self.model[1].eval()

    X, y = spirals_data()
    model = nnkit.Sequential(nnkit.Dense(2, 4), Center(4), nnkit.Dense(4, 3))
    nnkit.fit(model, nnkit.CrossEntropyLoss(), Adam(model.parameters()), X, y, epochs=3,
              batch_size=len(X), callbacks=[Freeze()], verbose=0)  # fmt: skip
    assert int(model[1].steps.data) == 1  # counted in epoch 0 only


def test_lint_does_not_flag_zero_initialised_output_layers() -> None:
    X, y = spirals_data()
    model = mlp()
    model[4].weight.data[...] = 0.0  # a common choice: the symmetry breaks after one step
    assert lint(model, nnkit.CrossEntropyLoss(), X, y) == []
