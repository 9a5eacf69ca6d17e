"""Tests for nnkit.training: fit, evaluate, predict, History, progress output, interruption."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerance import FLOAT32_RTOL, assert_close_float32

import nnkit
from nnkit.callbacks import Callback, EarlyStopping
from nnkit.datasets import blobs, spirals
from nnkit.metrics import Accuracy
from nnkit.optim import SGD, Adam
from nnkit.training import History, evaluate, fit, predict

FAST = settings(max_examples=25, deadline=None)


def classifier(seed: int = 0, n_in: int = 2, n_out: int = 3) -> nnkit.Sequential:
    rng = np.random.default_rng(seed)
    return nnkit.Sequential(
        nnkit.Dense(n_in, 16, rng=rng), nnkit.Tanh(), nnkit.Dense(16, n_out, rng=rng)
    )


def data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return blobs(n, centers=3, rng=np.random.default_rng(seed))


def modes(model: nnkit.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def mean_pred(pred: Any, target: Any) -> float:
    """A metric given as a callable."""
    return float(np.mean(pred))


def train(seed: int, **kwargs: Any) -> tuple[nnkit.Sequential, History]:
    """A short, seeded run with validation data."""
    X, y = data(90, seed=1)
    model = classifier(seed)
    kwargs = {"epochs": 3, "batch_size": 16, "verbose": 0, **kwargs}
    history = fit(
        model, nnkit.CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2), X, y,
        validation_data=data(30, seed=2), rng=np.random.default_rng(seed), **kwargs,
    )  # fmt: skip
    return model, history


# ---------------------------------------------------------------- the recipe


def test_spirals_recipe_reaches_95_percent_training_accuracy() -> None:
    """The documented recipe (docs/training.md): 900 spiral points, 3 classes."""
    rng = np.random.default_rng(0)
    X, y = spirals(300, 3, noise=0.2, rng=rng)
    model = nnkit.Sequential(
        nnkit.Dense(2, 64, rng=rng), nnkit.ReLU(),
        nnkit.Dense(64, 64, rng=rng), nnkit.ReLU(),
        nnkit.Dense(64, 3, rng=rng),
    )  # fmt: skip
    loss_fn = nnkit.CrossEntropyLoss()
    history = fit(
        model, loss_fn, Adam(model.parameters(), lr=1e-2), X, y,
        epochs=40, batch_size=32, rng=rng, verbose=0,
    )  # fmt: skip
    accuracy = evaluate(model, loss_fn, X, y)["accuracy"]
    assert accuracy >= 0.95, f"training accuracy {accuracy:.3f}"
    assert history.history["accuracy"][-1] >= 0.95
    assert history.history["loss"][-1] < history.history["loss"][0] / 4


# ---------------------------------------------------------------- History and reproducibility


def test_same_seed_same_history_bitwise() -> None:
    model_a, a = train(seed=3)
    model_b, b = train(seed=3)
    assert a.history == b.history  # exact float equality, every epoch and key
    assert a.epoch == b.epoch == [0, 1, 2]
    for (_, p), (_, q) in zip(model_a.named_parameters(), model_b.named_parameters(), strict=True):
        assert np.array_equal(p.data, q.data)
    _, c = train(seed=4)
    assert c.history != a.history


def test_history_has_train_and_validation_keys_per_epoch() -> None:
    model, history = train(seed=0, metrics=("accuracy", mean_pred), epochs=2)
    assert list(history.history) == [
        "loss", "accuracy", "mean_pred", "val_loss", "val_accuracy", "val_mean_pred",
    ]  # fmt: skip
    assert all(len(v) == 2 for v in history.history.values())
    assert not history.interrupted
    X_val, y_val = data(30, seed=2)
    # the last validation values are those of the final model
    final = evaluate(model, nnkit.CrossEntropyLoss(), X_val, y_val, batch_size=16,
                     metrics=("accuracy",))  # fmt: skip
    assert history.history["val_loss"][-1] == final["loss"]
    assert history.history["val_accuracy"][-1] == final["accuracy"]
    assert "epochs=2" in repr(history)


def test_mse_metric_on_one_hot_shaped_output_errors_clearly() -> None:
    # mse compares shapes: logits (N, 3) against indices (N,) is a user error, said before
    # anything is trained further than the first batch
    with pytest.raises(ValueError, match="same shape"):
        train(seed=0, metrics=("mse",))


@FAST
@given(n=st.integers(1, 50), batch_size=st.integers(1, 60))
def test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses(n: int, batch_size: int) -> None:
    X, y = data(max(n, 3))
    X, y = X[:n], y[:n]
    model = classifier()
    batch_losses: list[float] = []

    class Record(Callback):
        def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
            batch_losses.append(logs["loss"])

    loss_fn = nnkit.CrossEntropyLoss()
    before = evaluate(model, loss_fn, X, y, batch_size=n)["loss"]
    history = fit(
        model, loss_fn, SGD(model.parameters(), lr=0.0), X, y, epochs=1,
        batch_size=batch_size, callbacks=[Record()], shuffle=False, verbose=0,
    )  # fmt: skip
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full + ([rest] if rest else [])
    expected = sum(s * loss for s, loss in zip(sizes, batch_losses, strict=True)) / n
    assert history.history["loss"] == [pytest.approx(expected, rel=1e-12)]
    # with lr = 0 the weights never move: the epoch loss is the loss over all samples
    assert history.history["loss"][0] == pytest.approx(before, rel=FLOAT32_RTOL)


def test_zero_epochs_trains_nothing() -> None:
    model = classifier()
    before = model.state_dict()
    X, y = data()
    history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
                  epochs=0, verbose=0)  # fmt: skip
    assert history.history == {} and history.epoch == []
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_binary_accuracy_reads_logits_with_bce_with_logits() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2)).astype(np.float32)
    y = (X[:, :1] > 0).astype(np.float32)
    model = nnkit.Sequential(nnkit.Dense(2, 1, rng=rng))
    history = fit(model, nnkit.BCEWithLogitsLoss(), Adam(model.parameters(), lr=0.1), X, y,
                  epochs=30, batch_size=64, rng=rng, verbose=0)  # fmt: skip
    assert history.history["accuracy"][-1] >= 0.95


# ---------------------------------------------------------------- bad input, before training


class CountCalls(Callback):
    def __init__(self) -> None:
        self.calls = 0

    def on_train_begin(self, logs: dict[str, float]) -> None:
        self.calls += 1


X_OK, Y_OK = data(20)
X_NAN = X_OK.copy()
X_NAN[7, 1] = np.nan
X_INF = X_OK.copy()
X_INF[3, 0] = np.inf
Y_FLOAT_NAN = Y_OK.astype(np.float32)[:, None].repeat(3, axis=1)
Y_FLOAT_NAN[5, 0] = np.nan
Y_REGRESSION = X_OK @ np.array([2.0, -3.0]) + 5.0  # (20,) real values, some negative
Y_ROWS_NEGATIVE = np.eye(3)[Y_OK] - 0.5  # (20, 3) rows that are not probabilities

# (description, overrides of fit's arguments, error type, words in the message)
BAD_FIT: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("lengths differ", {"y": Y_OK[:-1]}, ValueError, "X has 20 samples but y has 19"),
    ("batch_size 0", {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ("batch_size negative", {"batch_size": -4}, ValueError, "batch_size must be >= 1"),
    ("batch_size float", {"batch_size": 8.0}, TypeError, "batch_size must be an int"),
    ("negative epochs", {"epochs": -1}, ValueError, "epochs must be >= 0"),
    ("NaN in X", {"X": X_NAN}, ValueError, "NaN or infinite values in 1 of 20 samples (the first "
     "at index 7)"),
    ("inf in X", {"X": X_INF}, ValueError, "first at index 3"),
    ("NaN in float y", {"y": Y_FLOAT_NAN}, ValueError, "fit: y has NaN"),
    ("empty X", {"X": X_OK[:0], "y": Y_OK[:0]}, ValueError, "X is empty"),
    ("scalar X", {"X": 3.0}, ValueError, "X is a scalar"),
    ("strings in X", {"X": np.array(["a"] * 20)}, TypeError, "X must be numeric"),
    ("NaN in validation X", {"validation_data": (X_NAN, Y_OK)}, ValueError,
     "validation_data X has NaN"),
    ("validation lengths", {"validation_data": (X_OK, Y_OK[:3])}, ValueError,
     "validation_data X has 20 samples but y has 3"),
    ("validation not a pair", {"validation_data": X_OK}, TypeError, "pair (X_val, y_val)"),
    ("unknown metric", {"metrics": ("acc",)}, ValueError, "unknown metric 'acc'"),
    ("bad verbose", {"verbose": 3}, ValueError, "verbose must be 0"),
    ("bad callback", {"callbacks": [print]}, TypeError, "callbacks[0]"),
    ("bad rng", {"rng": 0}, TypeError, "np.random.Generator"),
    ("model not a Module", {"model": print}, TypeError, "nnkit Module"),
    ("loss without backward", {"loss_fn": lambda p, t: 0.0}, TypeError, "loss_fn.backward()"),
    ("optimizer not an Optimizer", {"optimizer": object()}, TypeError, "nnkit.optim.Optimizer"),
    # a class where an instance is needed
    ("loss class", {"loss_fn": nnkit.CrossEntropyLoss}, TypeError, "loss_fn must be a loss "
     "instance, got the class CrossEntropyLoss; write CrossEntropyLoss()"),
    ("optimizer class", {"optimizer": Adam}, TypeError,
     "optimizer must be an optimizer instance, got the class Adam; write Adam(model.parameters())"),
    ("model class", {"model": nnkit.Sequential}, TypeError,
     "model must be a model instance, got the class Sequential; write Sequential(...)"),
    ("callback class in a list", {"callbacks": [EarlyStopping]}, TypeError,
     "callbacks[0] must be a callback instance, got the class EarlyStopping"),
    ("callback class alone", {"callbacks": EarlyStopping}, TypeError,
     "got the class EarlyStopping; write EarlyStopping(...)"),
    ("metric class", {"metrics": Accuracy}, TypeError, "got the class Accuracy; write Accuracy()"),
    ("callbacks neither a Callback nor a list", {"callbacks": 3}, TypeError,
     "callbacks must be a Callback or a list of Callbacks, got int"),
    # an optimizer that would train nothing of this model
    ("optimizer of another model", {"optimizer": SGD(classifier(1).parameters(), lr=0.1)},
     ValueError, "the optimizer holds none of the model's parameters"),
    ("model without parameters", {"model": nnkit.Sequential(nnkit.ReLU())}, ValueError,
     "the model has no parameters to train"),
    # targets that an explicit "accuracy" cannot read as classes, found before any step
    ("accuracy on regression targets", {"loss_fn": nnkit.MSELoss(), "y": Y_REGRESSION,
     "metrics": "accuracy"}, ValueError, "fit: y cannot be read by the metric 'accuracy'"),
    ("accuracy on regression validation targets", {"metrics": ("accuracy",),
     "validation_data": (X_OK, Y_REGRESSION)}, ValueError,
     "fit: validation_data y cannot be read by the metric 'accuracy'"),
    ("accuracy on rows outside [0, 1]", {"loss_fn": nnkit.MSELoss(), "y": Y_ROWS_NEGATIVE,
     "metrics": "accuracy"}, ValueError, "cannot be read by the metric 'accuracy'"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "error", "words"), [c[1:] for c in BAD_FIT],
                         ids=[c[0] for c in BAD_FIT])  # fmt: skip
def test_bad_input_fails_before_training(
    overrides: dict[str, Any], error: type[Exception], words: str
) -> None:
    model = classifier()
    before = model.state_dict()
    counter = CountCalls()
    args: dict[str, Any] = {
        "model": model, "loss_fn": nnkit.CrossEntropyLoss(),
        "optimizer": SGD(model.parameters(), lr=0.1), "X": X_OK, "y": Y_OK, "epochs": 2,
        "callbacks": [counter], "verbose": 0,
    }  # fmt: skip
    args.update(overrides)
    with pytest.raises(error) as info:
        fit(**args)
    assert words in str(info.value)
    assert counter.calls == 0  # nothing started
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_accuracy_on_regression_targets_says_what_to_do() -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 1, rng=np.random.default_rng(0)))
    with pytest.raises(ValueError) as info:
        fit(model, nnkit.MSELoss(), Adam(model.parameters()), X_OK, Y_REGRESSION[:, None],
            epochs=1, metrics=["accuracy"], verbose=0)  # fmt: skip
    message = str(info.value)
    assert "metric 'accuracy'" in message and "regression" in message
    assert 'for a regression, pass metrics=() or metrics=("mse",)' in message


def regressor(n_out: int = 1) -> nnkit.Sequential:
    return nnkit.Sequential(nnkit.Dense(2, n_out, rng=np.random.default_rng(0)))


@pytest.mark.parametrize(
    "loss_fn",
    [nnkit.MSELoss(), nnkit.L1Loss(), nnkit.HuberLoss(delta=0.5), nnkit.MSELoss(reduction="sum")],
    ids=repr,
)
def test_default_accuracy_is_dropped_for_regression_losses(loss_fn: Any) -> None:
    model = regressor()
    y = Y_REGRESSION[:, None]
    history = fit(model, loss_fn, Adam(model.parameters(), lr=1e-2), X_OK, y, epochs=2,
                  verbose=0)  # fmt: skip
    assert list(history.history) == ["loss"] and len(history.epoch) == 2
    assert list(evaluate(model, loss_fn, X_OK, y)) == ["loss"]
    # a metric asked for is logged
    history = fit(model, loss_fn, Adam(model.parameters()), X_OK, y, epochs=1, metrics=("mse",),
                  validation_data=(X_OK, y), verbose=0)  # fmt: skip
    assert list(history.history) == ["loss", "mse", "val_loss", "val_mse"]


def test_explicit_accuracy_is_kept_with_a_regression_loss() -> None:
    # binary classification trained with MSE on a sigmoid: "accuracy" given explicitly (even as
    # a tuple equal to the default) is computed
    rng = np.random.default_rng(0)
    model = nnkit.Sequential(nnkit.Dense(2, 1, rng=rng), nnkit.Sigmoid())
    y = (X_OK[:, :1] > X_OK[:, :1].mean()).astype(np.float64)
    for metrics in (("accuracy",), "accuracy", [Accuracy()]):
        history = fit(model, nnkit.MSELoss(), SGD(model.parameters(), lr=0.1), X_OK, y,
                      epochs=1, metrics=metrics, verbose=0)  # fmt: skip
        assert list(history.history) == ["loss", "accuracy"]
        assert list(evaluate(model, nnkit.MSELoss(), X_OK, y, metrics=metrics)) == [
            "loss", "accuracy",
        ]  # fmt: skip


class LogCoshLoss(nnkit.Loss):
    """A custom regression loss (the example of docs/custom-layers.md)."""

    def _forward(self, pred: Any, target: Any) -> Any:
        d = pred - np.asarray(target, dtype=pred.dtype)
        self._grad = np.tanh(d)
        return np.logaddexp(d, -d) - np.log(2.0)


def test_custom_regression_loss_keeps_accuracy_and_the_error_says_what_to_do() -> None:
    # only the built-in regression losses drop the default "accuracy"; with a custom one and
    # targets in [0, 1] accuracy fails on the first batch, advising classifier and regression
    model = regressor()
    y = np.linspace(0.0, 1.0, len(X_OK))[:, None]
    with pytest.raises(ValueError) as info:
        fit(model, LogCoshLoss(), SGD(model.parameters(), lr=0.1), X_OK, y, epochs=1,
            verbose=0)  # fmt: skip
    message = str(info.value)
    assert "Accuracy(from_logits=True)" in message
    assert 'for a regression, pass metrics=() or metrics=("mse",)' in message
    history = fit(model, LogCoshLoss(), SGD(model.parameters(), lr=0.1), X_OK, y, epochs=1,
                  metrics=("mse",), verbose=0)  # fmt: skip
    assert list(history.history) == ["loss", "mse"]


def test_metrics_none_means_no_metrics() -> None:
    model = classifier()
    history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X_OK, Y_OK,
                  epochs=1, metrics=None, validation_data=(X_OK, Y_OK), verbose=0)  # fmt: skip
    assert list(history.history) == ["loss", "val_loss"]
    assert list(evaluate(model, nnkit.CrossEntropyLoss(), X_OK, Y_OK, metrics=None)) == ["loss"]


def raise_on_call(pred: Any, target: Any) -> float:
    raise RuntimeError("metric failed")


# (description, loss, model, y, metrics, error type, words): a metric that fails on the first
# batch stops fit there, after that batch's step, whatever the metric
METRIC_FAILS: list[tuple[str, Any, Callable[[], nnkit.Module], Any, Any, type[Exception], str]] = [
    ("mse against class indices", nnkit.CrossEntropyLoss(), classifier, Y_OK, "mse",
     ValueError, "same shape"),
    ("a callable that raises", nnkit.CrossEntropyLoss(), classifier, Y_OK, [raise_on_call],
     RuntimeError, "metric failed"),
    ("probability accuracy on linear outputs", nnkit.MSELoss(), lambda: regressor(),
     (Y_OK[:, None] > 0).astype(float), Accuracy(), ValueError, "from_logits=True"),
    ("accuracy on regression targets", nnkit.MSELoss(), lambda: regressor(),
     Y_REGRESSION[:, None], "accuracy", ValueError, "metric 'accuracy'"),
    ("accuracy on 2-column regression targets", nnkit.MSELoss(), lambda: regressor(2),
     np.stack([Y_REGRESSION, -Y_REGRESSION], axis=1), "accuracy", ValueError,
     "metric 'accuracy'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("loss_fn", "make", "y", "metrics", "error", "words"),
    [c[1:] for c in METRIC_FAILS],
    ids=[c[0] for c in METRIC_FAILS],
)
def test_a_failing_metric_stops_fit_on_the_first_batch(
    loss_fn: Any, make: Callable[[], nnkit.Module], y: Any, metrics: Any,
    error: type[Exception], words: str,
) -> None:  # fmt: skip
    model = make()
    optimizer = Adam(model.parameters(), lr=0.5)
    with pytest.raises(error, match=re.escape(words)):
        fit(model, loss_fn, optimizer, X_OK * 10, y, epochs=2, batch_size=8, metrics=metrics,
            verbose=0, warn_setup=False)  # fmt: skip
    assert all(state["step"] <= 1 for state in optimizer.state.values())  # one step at most


def test_evaluate_checks_loss_model_and_targets() -> None:
    model = classifier()
    cases: list[tuple[tuple[Any, Any], type[Exception], str]] = [
        ((nnkit.Sequential, nnkit.CrossEntropyLoss()), TypeError, "got the class Sequential"),
        ((model, nnkit.CrossEntropyLoss), TypeError, "write CrossEntropyLoss()"),
        ((model, 3), TypeError, "loss_fn must be a loss"),
    ]
    for args, error, words in cases:
        with pytest.raises(error, match=re.escape(words)):
            evaluate(*args, X_OK, Y_OK)
    with pytest.raises(ValueError, match="evaluate: y cannot be read by the metric 'accuracy'"):
        evaluate(model, nnkit.MSELoss(), X_OK, Y_ROWS_NEGATIVE, metrics="accuracy")
    with pytest.raises(TypeError, match="got the class Sequential"):
        predict(nnkit.Sequential, X_OK)  # type: ignore[arg-type]


def test_a_single_callback_needs_no_list() -> None:
    stopper = EarlyStopping(monitor="loss", patience=0, min_delta=1e9)  # stops after epoch 1
    model = classifier()
    history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X_OK, Y_OK,
                  epochs=5, callbacks=stopper, verbose=0)  # fmt: skip
    assert history.epoch == [0, 1] and stopper.stopped_epoch == 1 and stopper.model is model


def test_an_optimizer_over_part_of_the_model_is_accepted() -> None:
    model = classifier()
    first = model.layers[0]
    before = model.layers[2].state_dict()
    fit(model, nnkit.CrossEntropyLoss(), SGD(first.parameters(), lr=0.1), X_OK, Y_OK, epochs=1,
        verbose=0)  # fmt: skip
    after = model.layers[2].state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # the frozen layer


def test_integer_y_is_not_checked_for_nan_and_int_X_is_accepted() -> None:
    model = classifier()
    X = np.round(X_OK).astype(np.int64)
    history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, Y_OK,
                  epochs=1, verbose=0)  # fmt: skip
    assert len(history.epoch) == 1


# ---------------------------------------------------------------- interruption and modes


class InterruptAt(Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)
        self.epoch = -1
        self.ended: dict[str, float] | None = None
        self.mode_in_training: bool | None = None

    def on_epoch_begin(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        self.mode_in_training = self.model.training
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt

    def on_train_end(self, logs: dict[str, float]) -> None:
        self.ended = logs


@pytest.mark.parametrize("start_in_eval", [False, True])
def test_keyboard_interrupt_returns_the_complete_epochs(start_in_eval: bool) -> None:
    X, y = data(60)
    model = classifier()
    if start_in_eval:
        model.eval()
    interrupt = InterruptAt(epoch=2, batch=1)
    optimizer = Adam(model.parameters(), lr=1e-2)
    with pytest.warns(RuntimeWarning, match=r"interrupted .* during epoch 3/10.* 2 complete"):
        history = fit(model, nnkit.CrossEntropyLoss(), optimizer, X, y, epochs=10,
                      batch_size=16, validation_data=(X, y), callbacks=[interrupt],
                      rng=np.random.default_rng(0), verbose=0, on_interrupt="return")  # fmt: skip
    assert history.interrupted
    assert history.epoch == [0, 1]
    assert all(len(values) == 2 for values in history.history.values())
    assert interrupt.mode_in_training is True  # fit trains in training mode
    assert modes(model) == [not start_in_eval] * 4  # and restores the mode it found
    assert interrupt.ended == {k: v[-1] for k, v in history.history.items()}
    # the model is usable: it predicts, and training continues from where it stopped
    assert np.all(np.isfinite(predict(model, X)))
    more = fit(model, nnkit.CrossEntropyLoss(), optimizer, X, y, epochs=1, verbose=0)
    assert len(more.epoch) == 1 and not more.interrupted


def test_keyboard_interrupt_during_validation_restores_training_mode() -> None:
    class InterruptInEval(nnkit.Identity):
        def forward(self, x: Any) -> Any:
            if not self.training:
                raise KeyboardInterrupt
            return super().forward(x)

    model = nnkit.Sequential(classifier(), InterruptInEval())
    X, y = data(30)
    with pytest.warns(RuntimeWarning, match="0 complete epochs"):
        history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
                      epochs=3, validation_data=(X, y), verbose=0,
                      on_interrupt="return")  # fmt: skip
    assert history.epoch == [] and history.interrupted
    assert all(modes(model))


def test_other_exceptions_propagate_and_restore_modes() -> None:
    class Boom(Callback):
        def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
            raise RuntimeError("boom")

    model = classifier()
    model.layers[1].eval()  # mixed modes are restored module by module
    before = modes(model)
    X, y = data(30)
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y, epochs=2,
            callbacks=[Boom()], verbose=0)  # fmt: skip
    assert modes(model) == before


def test_stop_requested_mid_epoch_leaves_that_epoch_out() -> None:
    class StopAt(Callback):
        def on_epoch_begin(self, epoch: int) -> None:
            self.epoch = epoch

        def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
            if self.epoch == 1 and batch == 0:
                self.stop_training = True

    X, y = data(60)
    model = classifier()
    history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
                  epochs=5, batch_size=16, callbacks=[StopAt()], verbose=0)  # fmt: skip
    assert history.epoch == [0] and not history.interrupted


# ---------------------------------------------------------------- evaluate and predict


def test_predict_equals_the_eval_forward_and_restores_mode() -> None:
    X, _ = data(50)
    model = classifier()
    expected = model.eval()(X)
    model.train()
    for batch_size in (1, 7, 50, 64):
        out = predict(model, X, batch_size=batch_size)
        assert out.shape == (50, 3)
        assert_close_float32(out, expected)  # other batch sizes may run other BLAS kernels
        assert all(modes(model))


def test_predict_restores_mode_on_an_exception() -> None:
    model = classifier()
    with pytest.raises(ValueError, match="expected input of shape"):
        predict(model, np.zeros((4, 5)))
    assert all(modes(model))
    model.eval()
    with pytest.raises(ValueError, match="expected input of shape"):
        predict(model, np.zeros((4, 5)))
    assert not any(modes(model))


@pytest.mark.parametrize(
    ("X", "batch_size", "error", "words"),
    [
        (np.zeros((0, 2)), 8, ValueError, "X is empty"),
        (np.zeros((3, 2)), 0, ValueError, "batch_size must be >= 1"),
        (np.array(["x", "y"]), 8, TypeError, "must be numeric"),
    ],
)
def test_predict_bad_input(X: Any, batch_size: int, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        predict(classifier(), X, batch_size=batch_size)
    assert words in str(info.value)


@FAST
@given(batch_size=st.integers(1, 80))
def test_evaluate_does_not_depend_on_batch_size(batch_size: int) -> None:
    X, y = data(61)
    model = classifier()
    loss_fn = nnkit.CrossEntropyLoss()
    result = evaluate(model, loss_fn, X, y, batch_size=batch_size, metrics=("accuracy",))
    pred = model(X)
    assert list(result) == ["loss", "accuracy"]
    assert result["loss"] == pytest.approx(loss_fn(pred, y), rel=FLOAT32_RTOL)
    assert result["accuracy"] == pytest.approx(np.mean(pred.argmax(1) == y), abs=1e-12)


def test_evaluate_checks_its_data() -> None:
    with pytest.raises(ValueError, match="evaluate: X has NaN"):
        evaluate(classifier(), nnkit.CrossEntropyLoss(), X_NAN, Y_OK)


# ---------------------------------------------------------------- progress


def quick_fit(verbose: int, epochs: int = 2, **kwargs: Any) -> History:
    X, y = data(40)
    model = classifier()
    return fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
               epochs=epochs, batch_size=16, verbose=verbose, rng=np.random.default_rng(0),
               **kwargs)  # fmt: skip


def test_verbose_0_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    quick_fit(verbose=0)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("verbose", [1, 2])
def test_one_line_per_epoch_without_tqdm(
    verbose: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    X, y = data(40)
    history = quick_fit(verbose=verbose, validation_data=(X, y))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == "" and len(lines) == 2
    h = history.history
    for epoch, line in enumerate(lines):
        assert line.startswith(f"Epoch {epoch + 1}/2 - ")
        assert line.endswith(
            f"s - loss: {h['loss'][epoch]:.4f} - accuracy: {h['accuracy'][epoch]:.4f} - "
            f"val_loss: {h['val_loss'][epoch]:.4f} - val_accuracy: {h['val_accuracy'][epoch]:.4f}"
        )


class FakeTqdm:
    """Records what fit does with its progress bar."""

    bars: ClassVar[list[FakeTqdm]] = []
    written: ClassVar[list[str]] = []

    def __init__(self, *, total: int, desc: str, unit: str) -> None:
        self.total, self.unit = total, unit
        self.n = 0
        self.descriptions: list[str] = []
        self.postfixes: list[str] = []
        self.closed = False
        FakeTqdm.bars.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def set_description_str(self, desc: str, refresh: bool = True) -> None:
        self.descriptions.append(desc)

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        self.postfixes.append(s)

    def close(self) -> None:
        self.closed = True

    @classmethod
    def write(cls, s: str, file: Any = None) -> None:
        cls.written.append(s)


@pytest.fixture
def fake_tqdm_terminal(monkeypatch: pytest.MonkeyPatch) -> type[FakeTqdm]:
    """tqdm installed, and stderr and stdout terminals."""
    FakeTqdm.bars, FakeTqdm.written = [], []
    monkeypatch.setattr("nnkit.progress.load_tqdm", lambda: FakeTqdm)
    monkeypatch.setattr("nnkit.progress.is_terminal", lambda stream: True)
    return FakeTqdm


def test_one_progress_bar_for_the_run_with_running_values(
    fake_tqdm_terminal: type[FakeTqdm], capsys: pytest.CaptureFixture[str]
) -> None:
    history = quick_fit(verbose=1, epochs=3)
    assert capsys.readouterr().out == ""  # the lines go through tqdm.write, above the bar
    [bar] = FakeTqdm.bars
    assert bar.total == 9 and bar.n == 9 and bar.closed  # 3 epochs of 3 batches (40 by 16)
    epochs = ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert bar.descriptions == epochs
    assert len(bar.postfixes) == 9 and bar.postfixes[0].startswith("loss: ")
    assert [line.split(" - ")[0] for line in FakeTqdm.written] == epochs
    assert FakeTqdm.written[-1].endswith(
        f"loss: {history.history['loss'][-1]:.4f} - "
        f"accuracy: {history.history['accuracy'][-1]:.4f}"
    )


def test_progress_bar_is_closed_on_interrupt(fake_tqdm_terminal: type[FakeTqdm]) -> None:
    with pytest.warns(RuntimeWarning, match="interrupted"):
        quick_fit(verbose=1, callbacks=[InterruptAt(epoch=0, batch=1)], on_interrupt="return")
    assert len(FakeTqdm.bars) == 1 and FakeTqdm.bars[0].closed


def test_verbose_2_prints_lines_even_with_tqdm(
    fake_tqdm_terminal: type[FakeTqdm], capsys: pytest.CaptureFixture[str]
) -> None:
    quick_fit(verbose=2)
    assert FakeTqdm.bars == [] and len(capsys.readouterr().out.splitlines()) == 2


def test_no_progress_bar_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Into a file or a CI log, tqdm's redrawn line would be written out again and again."""
    pytest.importorskip("tqdm")
    quick_fit(verbose=1)
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 2


def test_real_tqdm_bar(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    monkeypatch.setattr("nnkit.progress.is_terminal", lambda stream: True)
    quick_fit(verbose=1)
    out, err = capsys.readouterr()
    assert "Epoch 2/2" in err and "loss: " in err  # the bar
    assert out.count("\n") == 2 and out.startswith("Epoch 1/2 - ")  # the lines, above it


def xor_fit(epochs: int, callbacks: Any = ()) -> History:
    """The README's XOR network trained by fit: one batch per epoch, many epochs."""
    rng = np.random.default_rng(0)
    model = nnkit.Sequential(
        nnkit.Dense(2, 3, rng=rng), nnkit.Sigmoid(), nnkit.Dense(3, 1, rng=rng), nnkit.Sigmoid()
    )
    X, y = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), np.array([[0], [1], [1], [0]])
    return fit(model, nnkit.BCELoss(), SGD(model.parameters(), lr=1.0, momentum=0.9), X, y,
               epochs=epochs, batch_size=4, callbacks=callbacks, verbose=1)  # fmt: skip


def test_verbose_1_prints_about_20_lines_for_2000_epochs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 2000-epoch XOR fit printed 2000 lines: now the first, every 100th (the last)."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    xor_fit(2000)
    lines = capsys.readouterr().out.splitlines()
    numbers = [int(line.split()[1].split("/")[0]) for line in lines]
    assert numbers == [1, *range(100, 2001, 100)]
    for number, line in zip(numbers, lines, strict=True):
        assert line.startswith(f"Epoch {number}/2000 - ")


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.stop_training = epoch == self.epoch


def test_verbose_1_prints_the_last_epoch_run_when_stopped_early(
    capsys: pytest.CaptureFixture[str],
) -> None:
    history = xor_fit(500, callbacks=[StopAfter(epoch=136)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == [
        "Epoch 1/500", *(f"Epoch {n}/500" for n in range(25, 126, 25)), "Epoch 137/500",
    ]  # fmt: skip
    assert f"loss: {history.history['loss'][-1]:.4f} - " in lines[-1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_verbose_1_on_a_terminal_redraws_one_status_line_at_a_bounded_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    xor_fit(2000)
    text = terminal.getvalue()
    assert text.count("\n") == 21  # the same lines as off a terminal
    redraws = text.count("\r")
    assert 0 < redraws < 200  # at most every 0.1 s (a redraw per epoch would be 2000)
    final = text.rsplit("\n", 1)[-1]
    assert final.strip("\r ") == ""  # the status line is cleared at the end
    assert "batch 1/1 - loss: " in text


# ---------------------------------------------------------------- History.plot


def test_plot_saves_a_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    X, y = data(40)
    history = quick_fit(verbose=0, metrics=("accuracy", mean_pred), validation_data=(X, y))
    path = tmp_path / "history.png"
    figure = history.plot(path)
    assert path.stat().st_size > 1000
    assert [ax.get_title() for ax in figure.axes] == ["loss", "accuracy", "mean_pred"]
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["training", "validation"]


def test_plot_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "\.\[plot\]"') as info:
        quick_fit(verbose=0).plot(tmp_path / "x.png")
    # an unrelated package named nnkit is on PyPI: never point at it
    assert "nnkit[plot]" not in str(info.value) and "nnkit checkout" in str(info.value)


def test_plot_of_an_empty_history() -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="no complete epoch"):
        History().plot("unused.png")


# ---------------------------------------------------------------- the training step and modes


def test_a_custom_train_step_clips_gradients_inside_fit() -> None:
    from nnkit.optim import clip_grad_norm_

    norms: list[float] = []

    def clipped(model: Any, loss_fn: Any, optimizer: Any, xb: Any, yb: Any) -> Any:
        optimizer.zero_grad()
        pred = model(xb)
        loss = loss_fn(pred, yb)
        model.accumulate_grad(loss_fn.backward())
        clip_grad_norm_(model.parameters(), max_norm=0.01)
        norms.append(float(np.sqrt(sum(np.sum(p.grad**2) for p in model.parameters()))))
        optimizer.step()
        return loss, pred

    X, y = data(40)
    model = classifier()
    history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
                  epochs=2, batch_size=10, train_step=clipped, verbose=0)  # fmt: skip
    assert len(norms) == 8 and max(norms) <= 0.01 * (1 + 1e-5)
    assert list(history.history) == ["loss", "accuracy"]


def test_gradient_accumulation_over_micro_batches_equals_the_full_batch_step() -> None:
    def micro(model: Any, loss_fn: Any, optimizer: Any, xb: Any, yb: Any) -> Any:
        optimizer.zero_grad()
        total, preds = 0.0, []
        for xs, ys in zip(np.array_split(xb, 4), np.array_split(yb, 4), strict=True):
            pred = model(xs)
            total += loss_fn(pred, ys) * len(xs)
            model.accumulate_grad(loss_fn.backward() * (len(xs) / len(xb)))
            preds.append(pred)
        optimizer.step()
        return total / len(xb), np.concatenate(preds)

    X, y = data(40)
    results = []
    for step in (micro, nnkit.training.train_step):
        model = classifier().astype(np.float64)
        history = fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.5), X, y,
                      epochs=3, batch_size=20, train_step=step, shuffle=False,
                      verbose=0)  # fmt: skip
        results.append((model.state_dict(), history.history["loss"]))
    (a, loss_a), (b, loss_b) = results
    assert all(np.allclose(a[k], b[k], rtol=1e-12, atol=1e-14) for k in a)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-12)


def test_fit_keeps_a_frozen_module_in_eval_mode_and_restores_modes() -> None:
    from stateful_layers import Center

    seen: list[list[bool]] = []

    class Record(Callback):
        def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
            seen.append(modes(self.model))

    model = nnkit.Sequential(nnkit.Dense(2, 4, rng=np.random.default_rng(0)), Center(4),
                             nnkit.Dense(4, 3, rng=np.random.default_rng(1)))  # fmt: skip
    model[1].eval()  # frozen statistics
    frozen = model[1].state_dict()
    before = modes(model)
    X, y = data(30)
    fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y, epochs=3,
        validation_data=(X, y), callbacks=[Record()], verbose=0)  # fmt: skip
    assert all(m == before for m in seen)  # every batch, every epoch, after validation too
    assert modes(model) == before
    assert all(np.array_equal(frozen[k], v) for k, v in model[1].state_dict().items())


def test_fit_switches_a_model_wholly_in_eval_mode_to_training_and_back() -> None:
    seen: list[list[bool]] = []

    class Record(Callback):
        def on_batch_end(self, batch: int, logs: dict[str, float]) -> None:
            seen.append(modes(self.model))

    model = classifier().eval()
    X, y = data(20)
    fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y, epochs=1,
        callbacks=[Record()], verbose=0)  # fmt: skip
    assert seen and all(all(m) for m in seen)
    assert not any(modes(model))


def test_ctrl_c_re_raises_after_cleaning_up_so_a_grid_search_stops() -> None:
    ended: list[dict[str, float]] = []

    class Interrupt(Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
            if epoch == 1:
                raise KeyboardInterrupt

        def on_train_end(self, logs: dict[str, float]) -> None:
            ended.append(logs)

    X, y = data(30)
    runs = []
    with pytest.raises(KeyboardInterrupt) as info:
        for lr in (0.1, 0.01, 0.001):
            model = classifier()
            model[1].eval()
            runs.append(lr)
            fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=lr), X, y,
                epochs=5, callbacks=[Interrupt()], verbose=0)  # fmt: skip
    assert runs == [0.1]  # the loop stopped at the first interrupt
    history = info.value.history  # type: ignore[attr-defined]
    assert history.interrupted and history.epoch == [0, 1]
    assert ended == [{k: v[-1] for k, v in history.history.items()}]
    assert modes(model) == [True, True, False, True]  # restored, usable
    assert np.all(np.isfinite(predict(model, X)))


def test_fit_checks_train_step_and_on_interrupt() -> None:
    model = classifier()
    X, y = data(10)
    with pytest.raises(TypeError, match="train_step must be callable"):
        fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters()), X, y, epochs=1,
            train_step="sgd", verbose=0)  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(ValueError, match="on_interrupt"):
        fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters()), X, y, epochs=1,
            on_interrupt="ignore", verbose=0)  # type: ignore[arg-type]  # fmt: skip


def two_input_graph() -> nnkit.Graph:
    r = np.random.default_rng(0)
    return nnkit.Graph(
        inputs=["a", "b"],
        nodes={
            "ha": (nnkit.Dense(2, 8, rng=r), "a"),
            "hb": (nnkit.Dense(3, 8, rng=r), "b"),
            "h": (nnkit.Add(), ["ha", "hb"]),
            "act": (nnkit.Tanh(), "h"),
            "out": (nnkit.Dense(8, 3, rng=r), "act"),
        },
        outputs="out",
    )


def test_fit_evaluate_and_predict_take_a_tuple_of_inputs() -> None:
    X, y = data(90)
    extra = np.random.default_rng(1).normal(size=(90, 3))
    model = two_input_graph()
    history = fit(model, nnkit.CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2),
                  (X, extra), y, epochs=20, validation_data=((X, extra), y),
                  rng=np.random.default_rng(0), verbose=0)  # fmt: skip
    assert history.history["accuracy"][-1] > 0.9
    result = evaluate(model, nnkit.CrossEntropyLoss(), (X, extra), y)
    assert result["accuracy"] == pytest.approx(history.history["val_accuracy"][-1])
    pred = predict(model, (X, extra), batch_size=7)
    assert pred.shape == (90, 3)
    assert_close_float32(pred, model.eval()(X, extra))


@pytest.mark.parametrize(
    "X, error, words",
    [
        ((np.ones((5, 2)), np.ones((4, 3))), ValueError, "different numbers of samples [5, 4]"),
        ([np.ones((5, 2)), np.ones((5, 3))], TypeError, "pass a model's several inputs as a tuple"),
        ((), ValueError, "empty tuple"),
    ],
)  # fmt: skip
def test_bad_input_tuples_are_refused_clearly(X: Any, error: type[Exception], words: str) -> None:
    model = two_input_graph()
    with pytest.raises(error, match=re.escape(words)):
        fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters()), X, np.zeros(5, int),
            epochs=1, verbose=0)  # fmt: skip


def test_predict_concatenates_each_output_of_a_two_output_model() -> None:
    r = np.random.default_rng(0)
    model = nnkit.Graph(
        inputs="x",
        nodes={"h": (nnkit.Dense(2, 4, rng=r), "x"), "p": (nnkit.Sigmoid(), "h"),
               "q": (nnkit.Tanh(), "h")},
        outputs=["p", "q"],
    )  # fmt: skip
    X, _ = data(20)
    p, q = predict(model, X, batch_size=6)
    assert p.shape == q.shape == (20, 4)
