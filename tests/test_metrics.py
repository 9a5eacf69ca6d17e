"""Tests for nnkit.metrics: how each metric reads its inputs, names, and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnkit
from nnkit.metrics import Accuracy, get_metric, get_metrics, mae, mse

FAST = settings(max_examples=60, deadline=None)

LOGITS = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.1, 0.9], [1.0, 0.0, 4.0]])
PROBS_COL = np.array([[0.9], [0.2], [0.6], [0.4]])

# (N=2, C=3, T=3): predicted classes [[0, 1, 0], [2, 0, 1]]
SEQ_LOGITS = np.moveaxis(np.eye(3)[[[0, 1, 0], [2, 0, 1]]], -1, 1) * 2 - 0.5

# (description, metric, pred, target, expected)
CASES: list[tuple[str, Any, Any, Any, float]] = [
    ("multiclass logits vs indices", Accuracy(), LOGITS, np.array([0, 1, 0, 2]), 0.75),
    ("multiclass logits vs one-hot", Accuracy(), LOGITS, np.eye(3)[[0, 1, 2, 2]], 1.0),
    ("multiclass vs integer one-hot", Accuracy(), LOGITS, np.eye(3, dtype=int)[[0, 1, 2, 0]],
     0.75),
    ("multiclass vs bool one-hot", Accuracy(), LOGITS, np.eye(3, dtype=bool)[[0, 1, 2, 2]], 1.0),
    ("multiclass vs probability rows", Accuracy(), LOGITS,
     np.array([[0.6, 0.4, 0], [0, 0.3, 0.7], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]]), 0.75),
    ("multiclass ignores from_logits", Accuracy(from_logits=True), LOGITS,
     np.array([0, 1, 2, 2]), 1.0),
    ("multiclass log-probabilities", Accuracy(), np.log(np.array([[0.7, 0.3], [0.4, 0.6]])),
     np.array([0, 0]), 0.5),
    ("binary probabilities (N, 1) vs (N,)", Accuracy(), PROBS_COL, np.array([1, 0, 1, 0]), 1.0),
    ("binary probabilities (N, 1) vs (N, 1)", Accuracy(), PROBS_COL,
     np.array([[1.0], [1.0], [1.0], [0.0]]), 0.75),
    ("binary probabilities (N,) vs bool", Accuracy(), PROBS_COL[:, 0],
     np.array([True, False, False, False]), 0.75),
    ("binary 0.5 is class 0", Accuracy(), np.array([0.5, 0.5]), np.array([0, 1]), 0.5),
    ("binary soft targets", Accuracy(), PROBS_COL, np.array([0.9, 0.1, 0.8, 0.3]), 1.0),
    ("binary logits threshold 0", Accuracy(from_logits=True), np.array([[2.0], [-1.0], [0.3]]),
     np.array([1, 0, 0]), 2 / 3),
    ("binary logits in [0, 1]", Accuracy(from_logits=True), np.array([0.2, 0.0]),
     np.array([1, 0]), 1.0),
    ("sequence logits (N, C, T) vs (N, T)", Accuracy(), SEQ_LOGITS,
     np.array([[0, 1, 1], [2, 0, 0]]), 4 / 6),
    ("sequence logits vs one-hot (N, C, T)", Accuracy(), SEQ_LOGITS,
     np.moveaxis(np.eye(3)[[[0, 1, 0], [2, 0, 0]]], -1, 1), 5 / 6),
    ("image logits (N, C, H, W) vs (N, H, W)", Accuracy(),
     np.stack([np.eye(2), 1 - np.eye(2)])[None], np.array([[[0, 1], [1, 1]]]), 3 / 4),
    ("mse", mse, np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [3.0, 5.0]]), 1.25),
    ("mse int target", mse, np.array([0.5, 1.5]), np.array([0, 2]), 0.25),
    ("mae", mae, np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [3.0, 5.0]]), 0.75),
]  # fmt: skip


@pytest.mark.parametrize(("metric", "pred", "target", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_metric_values(metric: Any, pred: Any, target: Any, expected: float) -> None:
    value = metric(pred, target)
    assert type(value) is float
    assert value == pytest.approx(expected)


# (description, metric, pred, target, error type, words in the message)
BAD: list[tuple[str, Any, Any, Any, type[Exception], str]] = [
    ("logits read as probabilities", Accuracy(), np.array([[2.0], [-1.0]]), np.array([1, 0]),
     ValueError, "from_logits=True"),
    ("binary target outside [0, 1]", Accuracy(), PROBS_COL, np.array([0, 1, 2, 0]),
     ValueError, "targets in [0, 1]"),
    ("binary target wrong length", Accuracy(), PROBS_COL, np.array([0, 1]),
     ValueError, "target of shape (4,) or (4, 1)"),
    ("multiclass index out of range", Accuracy(), LOGITS, np.array([0, 1, 3, 0]),
     ValueError, "class index 3"),
    ("multiclass negative index", Accuracy(), LOGITS, np.array([0, -1, 2, 0]),
     ValueError, "class index -1"),
    ("multiclass float indices", Accuracy(), LOGITS, np.array([0.0, 1.0, 2.0, 0.0]),
     TypeError, "integer class indices"),
    ("multiclass wrong target shape", Accuracy(), LOGITS, np.zeros((4, 2)),
     ValueError, "(4,) (class indices) or (4, 3)"),
    ("multiclass negative target rows", Accuracy(), LOGITS, np.eye(3)[[0, 1, 2, 2]] - 0.5,
     ValueError, "one-hot or probabilities with values in [0, 1], got values in [-0.5, 0.5]"),
    ("multiclass target rows above 1", Accuracy(), LOGITS, 2.0 * np.eye(3)[[0, 1, 2, 2]],
     ValueError, 'for a regression, pass metrics=() or metrics=("mse",)'),
    ("multiclass integer rows above 1", Accuracy(), LOGITS, np.full((4, 3), 3),
     ValueError, "one-hot or probabilities"),
    ("multiclass NaN target rows", Accuracy(), LOGITS, np.full((4, 3), np.nan),
     ValueError, "one-hot or probabilities"),
    ("binary regression targets", Accuracy(), PROBS_COL, np.array([0.5, 1.5, -2.0, 0.0]),
     ValueError, 'for a regression, pass metrics=() or metrics=("mse",)'),
    ("3-d pred, 1-d target", Accuracy(), np.zeros((2, 3, 4)), np.zeros(2, int), ValueError,
     "target of shape (2, 4) (class indices) or (2, 3, 4)"),
    ("3-d pred of one class", Accuracy(), np.zeros((2, 1, 4)), np.zeros((2, 4), int), ValueError,
     "(N, C, d1, ...) for classes (C >= 2)"),
    ("3-d pred, float indices", Accuracy(), np.zeros((2, 3, 4)), np.zeros((2, 4)), TypeError,
     "integer class indices of shape (2, 4)"),
    ("empty pred", Accuracy(), np.zeros((0, 3)), np.zeros(0, int), ValueError, "N >= 1"),
    ("string pred", Accuracy(), np.array(["a"]), np.array([1]), TypeError, "numeric pred"),
    ("mse shapes", mse, np.zeros((4, 1)), np.zeros(4), ValueError, "same shape"),
    ("mae empty", mae, np.zeros(0), np.zeros(0), ValueError, "empty batch"),
]  # fmt: skip


@pytest.mark.parametrize(("metric", "pred", "target", "error", "words"),
                         [c[1:] for c in BAD], ids=[c[0] for c in BAD])  # fmt: skip
def test_bad_input_is_a_clear_error(
    metric: Any, pred: Any, target: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=None) as info:
        metric(pred, target)
    assert words in str(info.value)


def test_nan_predictions_do_not_raise() -> None:
    # a diverged model must reach TerminateOnNaN, not fail inside the metric
    assert Accuracy()(np.array([np.nan, 0.9]), np.array([1, 1])) == 0.5


@FAST
@given(
    ints=hnp.arrays(np.int64, st.tuples(st.integers(1, 20), st.integers(2, 5)),
                    elements=st.integers(-5, 5)),
    data=st.data(),
)  # fmt: skip
def test_multiclass_accuracy_is_invariant_under_softmax(ints: np.ndarray, data: Any) -> None:
    n, c = ints.shape
    logits = ints + 1e-3 * np.arange(c)  # no ties: a tie's argmax is the first column
    target = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    probs = nnkit.functional.softmax(logits, axis=1)
    acc = Accuracy()(logits, target)
    assert acc == Accuracy()(probs, target) == Accuracy()(np.log(probs), target)
    assert acc == np.mean([np.argmax(row) == t for row, t in zip(logits, target, strict=True)])


LOGIT = st.floats(-30, 30).filter(lambda v: v == 0 or abs(v) > 1e-9)  # sigmoid(tiny) == 0.5


@FAST
@given(logits=hnp.arrays(np.float64, st.integers(1, 30), elements=LOGIT), data=st.data())
def test_binary_logits_and_probabilities_agree(logits: np.ndarray, data: Any) -> None:
    target = data.draw(hnp.arrays(np.int64, len(logits), elements=st.integers(0, 1)))
    probs = nnkit.functional.sigmoid(logits)
    assert Accuracy(from_logits=True)(logits, target) == Accuracy()(probs, target)


def test_names_resolve() -> None:
    name, fn = get_metric("accuracy")
    assert name == "accuracy" and isinstance(fn, Accuracy) and not fn.from_logits
    assert get_metric("mse") == ("mse", mse)
    assert get_metric("mae") == ("mae", mae)


def test_accuracy_reads_logits_when_the_loss_takes_logits() -> None:
    _, fn = get_metric("accuracy", nnkit.BCEWithLogitsLoss())
    assert isinstance(fn, Accuracy) and fn.from_logits
    _, fn = get_metric("accuracy", nnkit.BCELoss())
    assert isinstance(fn, Accuracy) and not fn.from_logits


def test_callables_are_named_by_their_name() -> None:
    def top2(pred: Any, target: Any) -> float:
        return 1.0

    assert list(get_metrics([top2, Accuracy(from_logits=True), "mse"])) == [
        "top2", "accuracy", "mse",
    ]  # fmt: skip
    assert list(get_metrics("mae")) == ["mae"]  # a single name is one metric
    assert list(get_metrics(mse)) == ["mse"]
    assert get_metrics(None) == {} == get_metrics(())  # None: no metrics


def test_linear_outputs_error_advises_a_classifier_and_a_regression() -> None:
    # a prediction outside [0, 1] means logits, or a regression model (e.g. one with a custom
    # loss, for which fit keeps its default "accuracy"): the message covers both
    with pytest.raises(ValueError) as info:
        Accuracy()(np.array([[2.0], [-1.0]]), np.array([1.0, 0.25]))
    message = str(info.value)
    assert "classifier" in message and "Accuracy(from_logits=True)" in message
    assert 'for a regression, pass metrics=() or metrics=("mse",)' in message
    assert "only for MSELoss, L1Loss and HuberLoss" in message


@pytest.mark.parametrize(
    ("metrics", "error", "words"),
    [
        (["acuracy"], ValueError, "unknown metric 'acuracy'"),
        ([3], TypeError, "name or a callable"),
        (["mse", "mse"], ValueError, "two metrics are named 'mse'"),
        ([lambda p, t: 0.0, lambda p, t: 1.0], ValueError, "distinct __name__"),
        ([Accuracy], TypeError, "got the class Accuracy; write Accuracy()"),
        (Accuracy, TypeError, "got the class Accuracy; write Accuracy()"),
    ],
)
def test_bad_metric_specs(metrics: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        get_metrics(metrics)
    assert words in str(info.value)


def test_reserved_names_are_refused() -> None:
    def loss(pred: Any, target: Any) -> float:
        return 0.0

    with pytest.raises(ValueError, match="may not be named 'loss'"):
        get_metrics([loss])


# targets that some model output makes valid class labels
GOOD_TARGETS: dict[str, Any] = {
    "class indices": np.array([0, 4, 2, 7]),
    "binary": np.array([0, 1, 1, 0]),
    "soft binary (N, 1)": np.array([[0.2], [1.0], [0.0], [0.7]]),
    "one-hot": np.eye(3)[[0, 1, 2, 2]],
    "probability rows": np.array([[0.6, 0.4], [0.0, 1.0]]),
    "bool": np.array([True, False]),
    "uint8 indices": np.array([3, 0], dtype=np.uint8),
    "sequence indices (N, T)": np.array([[0, 4, 2], [7, 1, 1]]),
}

# (description, targets, words in the message)
BAD_TARGETS: list[tuple[str, Any, str]] = [
    ("regression values", np.array([0.5, -1.2, 3.4]), "they look like regression values"),
    ("2-column regression", np.array([[0.5, -0.5], [2.0, -2.0]]), "regression"),
    ("float class indices", np.array([0.0, 2.0, 1.0]), "convert them with y.astype(int)"),
    ("indices as a column", np.array([[0], [2], [1]]), "integers of shape (N,)"),
    ("-1/1 labels", np.array([-1, 1, 1, -1]), "class indices start at 0"),
]  # fmt: skip


@pytest.mark.parametrize("target", GOOD_TARGETS.values(), ids=GOOD_TARGETS.keys())
def test_check_targets_accepts_class_labels(target: Any) -> None:
    Accuracy().check_targets(target)


@pytest.mark.parametrize(("target", "words"), [c[1:] for c in BAD_TARGETS],
                         ids=[c[0] for c in BAD_TARGETS])  # fmt: skip
def test_check_targets_refuses_what_cannot_be_classes(target: Any, words: str) -> None:
    with pytest.raises(ValueError) as info:
        Accuracy().check_targets(target, name="acc", where="fit: y")
    message = str(info.value)
    assert message.startswith("fit: y cannot be read by the metric 'acc'")
    assert words in message
    assert 'for a regression, pass metrics=() or metrics=("mse",)' in message
