"""Bad input gets a clear exception, never an assert, a silent broadcast or a NaN."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from cases import ACTIVATIONS, LAYERS, LOSSES, LayerCase, LossCase, ids

import nnkit


def full_message(exc: BaseException) -> str:
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def test_dense_wrong_features_names_layer_and_shapes() -> None:
    layer = nnkit.Dense(10, 8)
    expected = "Dense(in_features=10, out_features=8) expected input of shape (N, 10), got (4, 5)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        layer(np.zeros((4, 5)))


@pytest.mark.parametrize("shape", [(10,), (4, 10, 1), ()])
def test_dense_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected input of shape"):
        nnkit.Dense(10, 8)(np.zeros(shape))


def test_sequential_says_which_child_raised() -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 3), nnkit.Sigmoid(), nnkit.Dense(4, 1))
    with pytest.raises(ValueError) as info:
        model(np.zeros((5, 2)))
    message = full_message(info.value)
    assert "expected input of shape (N, 4), got (5, 3)" in message
    assert 'raised in forward of child "2" (Dense)' in message


def test_nested_sequential_names_each_level() -> None:
    inner = nnkit.Sequential(nnkit.Dense(3, 3), nnkit.Dense(2, 1))
    model = nnkit.Sequential(nnkit.Dense(2, 3), inner)
    with pytest.raises(ValueError) as info:
        model(np.zeros((1, 2)))
    message = full_message(info.value)
    assert 'raised in forward of child "1.1" (Dense)' in message
    assert message.count("raised in") == 1  # one note with the whole path


def test_sequential_backward_error_names_child() -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 3), nnkit.Tanh())
    model(np.zeros((5, 2)))
    with pytest.raises(ValueError) as info:
        model.backward(np.zeros((5, 4)))
    assert 'raised in backward of child "1" (Tanh)' in full_message(info.value)


@pytest.mark.parametrize("bad", [None, "layer", np.zeros(3)])
def test_sequential_rejects_non_modules(bad: Any) -> None:
    with pytest.raises(TypeError, match="Sequential takes Modules"):
        nnkit.Sequential(nnkit.Dense(2, 2), bad)
    with pytest.raises(TypeError, match="Sequential takes Modules"):
        nnkit.Sequential().append(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "x", [np.array([[0, 1], [1, 0]]), np.array([[True, False]]), [[0.5, 1.5]]],
    ids=["int", "bool", "list"],
)
def test_integer_bool_and_list_input_use_layer_dtype(x: Any, dtype: Any) -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 3), nnkit.Sigmoid()).astype(dtype)
    y = model(x)
    assert y.dtype == dtype
    assert model.backward(np.ones_like(y)).dtype == dtype


def test_float64_input_into_float32_model_computes_in_float32() -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 3), nnkit.ReLU(), nnkit.Dense(3, 1))
    y = model(np.ones((4, 2), dtype=np.float64))
    assert y.dtype == np.float32
    assert model.backward(np.ones((4, 1), dtype=np.float64)).dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


@pytest.mark.parametrize("case", LAYERS, ids=ids(LAYERS))
@pytest.mark.parametrize(
    "bad", [np.array([["a", "b"]]), np.array([[object(), 1]], dtype=object)], ids=["str", "obj"]
)
def test_non_numeric_input_is_type_error(case: LayerCase, bad: Any) -> None:
    with pytest.raises(TypeError, match="numeric"):
        rest = case.inputs(np.random.default_rng(0))[1:]
        case.make(np.random.default_rng(0))(bad, *rest)


@pytest.mark.parametrize("case", LAYERS, ids=ids(LAYERS))
def test_backward_before_forward_is_runtime_error(case: LayerCase) -> None:
    with pytest.raises(RuntimeError, match="call forward"):
        case.make(np.random.default_rng(0)).backward(np.ones(case.in_shape))


@pytest.mark.parametrize("case", ACTIVATIONS, ids=ids(ACTIVATIONS))
def test_activation_rejects_grad_of_wrong_shape(case: LayerCase) -> None:
    layer = case.make(np.random.default_rng(0))
    layer(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"expected grad_out of shape \(4, 3\)"):
        layer.backward(np.ones((4, 1)))  # would broadcast silently without the check


@pytest.mark.parametrize("case", LAYERS, ids=ids(LAYERS))
def test_empty_batch_gives_empty_output(case: LayerCase) -> None:
    layer = case.make(np.random.default_rng(0))
    if case.options.get("empty_batch", True) is not True:
        layer.eval()
    xs = tuple(x[:0] for x in case.inputs(np.random.default_rng(0)))  # integer ids stay ints
    ys = layer(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert all(y.shape[0] == 0 for y in ys)
    dxs = layer.backward(*(np.zeros_like(y) for y in ys))
    dxs = dxs if isinstance(dxs, tuple) else (dxs,)
    for x, dx in zip(xs, dxs, strict=True):
        if x.dtype.kind == "f":  # integer inputs (indices) get no gradient
            assert dx.shape == x.shape


# -- losses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", LOSSES, ids=ids(LOSSES))
def test_loss_backward_before_forward(case: LossCase) -> None:
    with pytest.raises(RuntimeError, match="call loss_fn"):
        case.make().backward()


@pytest.mark.parametrize(
    "make", [nnkit.MSELoss, nnkit.L1Loss, nnkit.HuberLoss, nnkit.BCELoss, nnkit.BCEWithLogitsLoss]
)
def test_elementwise_loss_refuses_shape_mismatch(make: Callable[[], nnkit.Loss]) -> None:
    with pytest.raises(ValueError, match=r"pred \(4, 1\) and target \(4,\)"):
        make()(np.full((4, 1), 0.5), np.full(4, 0.5))


def test_failed_forward_clears_the_cached_gradient() -> None:
    loss = nnkit.MSELoss()
    loss(np.zeros((2, 1)), np.ones((2, 1)))
    with pytest.raises(ValueError):
        loss(np.zeros((2, 1)), np.ones(2))
    with pytest.raises(RuntimeError):
        loss.backward()


@pytest.mark.parametrize("make", [nnkit.CrossEntropyLoss, nnkit.NLLLoss])
@pytest.mark.parametrize(
    "target, message",
    [
        (np.array([0, 3, 1]), "class index 3, outside [0, 2]"),
        (np.array([0, -1, 1]), "class index -1, outside [0, 2]"),
        (np.array([0, 1]), "shape (3,) for pred of shape (3, 3), got (2,)"),
    ],
)
def test_class_index_errors_name_the_value(
    make: Callable[[], nnkit.Loss], target: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()(np.zeros((3, 3)), target)


@pytest.mark.parametrize("make", [nnkit.CrossEntropyLoss, nnkit.NLLLoss])
def test_classification_loss_needs_2d_pred(make: Callable[[], nnkit.Loss]) -> None:
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        make()(np.zeros(3), np.array([0, 1, 2]))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint32, np.uint64])
@pytest.mark.parametrize("make", [nnkit.CrossEntropyLoss, nnkit.NLLLoss])
def test_any_integer_class_index_dtype(make: Callable[[], nnkit.Loss], dtype: Any) -> None:
    pred = nnkit.LogSoftmax()(np.arange(6.0).reshape(2, 3))
    loss_fn = make()
    assert loss_fn(pred, np.array([2, 0], dtype=dtype)) == pytest.approx(
        loss_fn(pred, np.array([2, 0]))
    )


def test_one_column_cross_entropy_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="BCEWithLogitsLoss"):
        nnkit.CrossEntropyLoss()(np.zeros((2, 1)), np.array([0, 1]))


def test_nll_refuses_logits() -> None:
    with pytest.raises(ValueError, match="log-probabilities"):
        nnkit.NLLLoss()(np.array([[2.0, -1.0]]), np.array([0]))


def test_loss_class_given_an_array_as_reduction() -> None:
    with pytest.raises(ValueError, match="reduction must be"):
        nnkit.MSELoss(np.zeros(3))  # type: ignore[arg-type]


def test_nll_refuses_float_targets() -> None:
    with pytest.raises(TypeError, match="integer class indices"):
        nnkit.NLLLoss()(np.zeros((2, 3)), np.array([0.0, 1.0]))


@pytest.mark.parametrize("which, pred, target", [
    ("pred", [[1.5]], [[1.0]]),
    ("pred", [[-0.1]], [[1.0]]),
    ("target", [[0.5]], [[2.0]]),
])
def test_bce_refuses_values_outside_unit_interval(which: str, pred: Any, target: Any) -> None:
    with pytest.raises(ValueError, match=f"{which} probabilities in \\[0, 1\\]"):
        nnkit.BCELoss()(np.array(pred), np.array(target))


@pytest.mark.parametrize("case", LOSSES, ids=ids(LOSSES))
def test_empty_batch(case: LossCase) -> None:
    pred, target = case.data(np.random.default_rng(0), 0)
    config = case.make().get_config()
    mean = type(case.make())(**{**config, "reduction": "mean"})
    with pytest.raises(ValueError, match="empty batch"):
        mean(pred, target)
    summed = type(case.make())(**{**config, "reduction": "sum"})
    assert summed(pred, target) == 0.0
    assert summed.backward().shape == np.shape(pred)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nnkit.MSELoss(reduction="none"), "reduction must be"),  # type: ignore[arg-type]
        (lambda: nnkit.HuberLoss(delta=0), "delta must be > 0"),
        (lambda: nnkit.CrossEntropyLoss(label_smoothing=1.5), "label_smoothing"),
        (lambda: nnkit.BCEWithLogitsLoss(pos_weight=np.ones((2, 2))), "pos_weight"),
        (lambda: nnkit.Dense(0, 3), "in_features must be a positive integer"),
        (lambda: nnkit.Dense(2, 2.5), "out_features must be a positive integer"),  # type: ignore[arg-type]
        (lambda: nnkit.Dense(2, 2, weight_init="nope"), "unknown weight_init 'nope'"),
        (lambda: nnkit.LeakyReLU(-1), "negative_slope"),
        (lambda: nnkit.ELU(0), "alpha"),
    ],
)
def test_constructor_arguments_are_validated(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_pos_weight_of_one_entry_broadcasts_like_pytorch() -> None:
    pred, target = np.array([[0.3, -1.0, 2.0]]), np.array([[1.0, 0.0, 1.0]])
    one = nnkit.BCEWithLogitsLoss(pos_weight=[2.0])(pred, target)
    assert one == pytest.approx(nnkit.BCEWithLogitsLoss(pos_weight=[2.0, 2.0, 2.0])(pred, target))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [nnkit.ReLU, nnkit.Identity])
def test_backward_returns_forward_dtype(make: Callable[[], nnkit.Module], dtype: Any) -> None:
    layer = make()
    y = layer(np.ones((2, 2), dtype=dtype))
    other = np.float64 if dtype == np.float32 else np.float32
    assert layer.backward(np.ones_like(y, dtype=other)).dtype == dtype


def test_dense_rng_must_be_a_generator() -> None:
    with pytest.raises(TypeError, match=r"default_rng\(seed\)"):
        nnkit.Dense(2, 3, rng=0)  # type: ignore[arg-type]


def test_pos_weight_must_match_classes() -> None:
    with pytest.raises(ValueError, match="one weight per class"):
        nnkit.BCEWithLogitsLoss(pos_weight=[1.0, 2.0])(np.zeros((2, 3)), np.zeros((2, 3)))
