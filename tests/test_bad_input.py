"""Bad input gets a clear exception, never an assert, a silent broadcast or a NaN."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from cases import ACTIVATIONS, CONV_LAYERS, LAYERS, LOSSES, LayerCase, LossCase, ids
from tolerance import assert_close_float32

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


# (make, the error, words of its message): nnkit's own message, never Python's or NumPy's
CONSTRUCTOR_ERRORS: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: nnkit.MSELoss(reduction="avg"), ValueError, "reduction must be"),  # type: ignore[arg-type]
    (lambda: nnkit.HuberLoss(delta=0), ValueError, "delta must be > 0"),
    (lambda: nnkit.HuberLoss(delta="a"), TypeError, "HuberLoss delta must be a real number"),  # type: ignore[arg-type]
    (lambda: nnkit.HuberLoss(delta=float("inf")), ValueError, "delta must be a finite number"),
    (lambda: nnkit.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: nnkit.CrossEntropyLoss(label_smoothing="0.1"), TypeError,  # type: ignore[arg-type]
     "label_smoothing must be a real number, got '0.1'"),
    (lambda: nnkit.CrossEntropyLoss(label_smoothing=float("nan")), ValueError, r"in \[0, 1\]"),
    (lambda: nnkit.BCEWithLogitsLoss(pos_weight=np.ones((2, 2))), ValueError, "pos_weight"),
    (lambda: nnkit.BCEWithLogitsLoss(pos_weight="abc"), TypeError, "pos_weight must be a number"),
    (lambda: nnkit.BCEWithLogitsLoss(pos_weight=[1.0, float("nan")]), ValueError, "finite"),
    (lambda: nnkit.Dense(0, 3), ValueError, "in_features must be a positive integer"),
    (lambda: nnkit.Dense(2, 2.5), ValueError, "out_features must be a positive integer"),  # type: ignore[arg-type]
    (lambda: nnkit.Dense(10**20, 1), ValueError,
     r"Dense\(in_features=100000000000000000000, out_features=1\) would need .* more than "
     "this platform can address"),
    (lambda: nnkit.Dense(2, 2, bias="yes"), TypeError, "Dense bias must be True or False"),  # type: ignore[arg-type]
    (lambda: nnkit.Dense(2, 2, bias=None), TypeError, "Dense bias must be True or False"),  # type: ignore[arg-type]
    (lambda: nnkit.Dense(2, 2, dtype="int32"), TypeError, "Dense dtype must be a floating"),
    (lambda: nnkit.Dense(2, 2, dtype="fp32"), TypeError, "Dense dtype must be a floating"),
    (lambda: nnkit.Dense(2, 2, weight_init="nope"), ValueError, "unknown weight_init 'nope'"),
    (lambda: nnkit.Dense(2, 2, weight_init=3), TypeError, "weight_init must be None, a name"),  # type: ignore[arg-type]
    (lambda: nnkit.LeakyReLU(-1), ValueError, "negative_slope must be a finite number >= 0"),
    (lambda: nnkit.LeakyReLU("a"), TypeError, "LeakyReLU negative_slope must be a real number"),  # type: ignore[arg-type]
    (lambda: nnkit.LeakyReLU(float("inf")), ValueError, "negative_slope must be a finite"),
    (lambda: nnkit.ELU(0), ValueError, "alpha must be > 0"),
    (lambda: nnkit.ELU("a"), TypeError, "ELU alpha must be a real number"),  # type: ignore[arg-type]
    (lambda: nnkit.Softmax(axis=1.0), TypeError, "Softmax axis must be an int"),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize(("make", "error", "message"), CONSTRUCTOR_ERRORS)
def test_constructor_arguments_are_validated(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


ZERO_D = [case for case in ACTIVATIONS if case.name not in ("Softmax", "LogSoftmax")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ZERO_D, ids=ids(ZERO_D))
def test_elementwise_activations_take_a_0d_input(case: LayerCase, dtype: Any) -> None:
    """As ReLU, Tanh and Softplus did; Sigmoid and SiLU raised NumPy's internal TypeError."""
    layer = case.make(np.random.default_rng(0))
    x = np.array(-0.7, dtype=dtype)
    y = layer(x)
    dx = layer.backward(np.array(1.0, dtype=dtype))
    assert np.shape(y) == () and np.asarray(y).dtype == dtype
    assert np.shape(dx) == () and np.asarray(dx).dtype == dtype
    row = layer(np.array([[-0.7]], dtype=dtype))  # a 0-d and a (1, 1) input may take other
    assert_close_float32(y, row[0, 0])  # loops (SIMD or not): equal up to rounding
    assert_close_float32(dx, layer.backward(np.ones((1, 1), dtype=dtype))[0, 0])


@pytest.mark.parametrize(
    ("layer", "shape"),
    [(nnkit.Softmax(), ()), (nnkit.LogSoftmax(), ()), (nnkit.Softmax(axis=1), (3,)),
     (nnkit.LogSoftmax(axis=-3), (2, 3))],
    ids=["Softmax-0d", "LogSoftmax-0d", "Softmax-axis1-1d", "LogSoftmax-axis-3-2d"],
)  # fmt: skip
def test_softmax_needs_its_axis(layer: nnkit.Module, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"normalises along axis .* but the input has shape"):
        layer(np.zeros(shape))


@pytest.mark.parametrize(
    "loss_fn",
    [nnkit.BCEWithLogitsLoss(), nnkit.BCEWithLogitsLoss(pos_weight=2.0), nnkit.BCELoss(),
     nnkit.MSELoss(), nnkit.L1Loss(), nnkit.HuberLoss()],
    ids=["BCEWithLogits", "BCEWithLogits-pos_weight", "BCE", "MSE", "L1", "Huber"],
)  # fmt: skip
def test_elementwise_losses_take_a_0d_pair(loss_fn: nnkit.Loss) -> None:
    value = loss_fn(np.array(0.3), np.array(1.0))
    row = type(loss_fn)(**loss_fn.get_config())(np.array([0.3]), np.array([1.0]))
    assert value == pytest.approx(row)
    assert loss_fn.backward().shape == ()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    ("make", "target"),
    [(nnkit.CrossEntropyLoss, np.zeros(0, int)), (nnkit.CrossEntropyLoss, np.zeros((0, 0))),
     (nnkit.NLLLoss, np.zeros(0, int))],
    ids=["CE-indices", "CE-probabilities", "NLL"],
)  # fmt: skip
def test_classification_losses_need_a_class_column(
    make: Callable[..., nnkit.Loss], target: Any, reduction: str
) -> None:
    """CrossEntropyLoss(reduction="sum") on (0, 0) raised ZeroDivisionError."""
    with pytest.raises(ValueError, match=r"with C >= 1 classes on axis 1, got \(0, 0\)"):
        make(reduction=reduction)(np.zeros((0, 0)), target)


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


def _gradients(layer: nnkit.Module, x: np.ndarray, mutate: bool) -> list[np.ndarray]:
    """dx and every parameter gradient of ``layer`` at ``x``; with ``mutate``, ``x`` is
    doubled in place between forward and backward."""
    y = layer(x)
    if mutate:
        x *= 2
    dx = layer.backward(np.ones_like(y))
    return [dx, *(p.grad.copy() for p in layer.parameters())]


@pytest.mark.parametrize(
    "make", [lambda: nnkit.Dense(3, 2, rng=np.random.default_rng(0)), nnkit.GELU, nnkit.SiLU],
    ids=["Dense", "GELU", "SiLU"],
)  # fmt: skip
def test_a_layer_keeps_its_input_uncopied_as_documented(make: Callable[[], nnkit.Module]) -> None:
    """The documented rule (docs/architecture.md, the contract): a layer may keep its input
    without a copy, so modifying the input in place before backward silently changes the
    gradients. (For Dense the weight gradient is then that of the modified input.)"""
    x = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    correct = _gradients(make(), x.copy(), mutate=False)
    changed = x.copy()
    silent = _gradients(make(), changed, mutate=True)
    assert not all(np.allclose(a, b) for a, b in zip(silent, correct, strict=True))
    if len(silent) > 1:  # Dense: dL/dweight = x.T @ dy with the doubled x
        assert_close_float32(silent[1], changed.T @ np.ones((4, 2), np.float32))
# -- convolution, pooling and reshaping layers ------------------------------------------------

BAD_IMAGE_INPUT = [
    ("conv2d-channels", lambda: nnkit.Conv2d(3, 16, 3), (8, 1, 28, 28), re.escape(
        "Conv2d(in_channels=3, out_channels=16, kernel_size=(3, 3)) expected input of shape "
        "(N, 3, H, W), got (8, 1, 28, 28)")),
    ("conv2d-no-batch-axis", lambda: nnkit.Conv2d(3, 16, 3), (3, 28, 28),
     re.escape("expected input of shape (N, 3, H, W), got (3, 28, 28)")),
    ("conv1d-image", lambda: nnkit.Conv1d(1, 4, 3), (8, 1, 28, 28),
     re.escape("Conv1d(in_channels=1, out_channels=4, kernel_size=(3,)) expected input of "
               "shape (N, 1, L), got (8, 1, 28, 28)")),
    ("conv-transpose-channels", lambda: nnkit.ConvTranspose2d(4, 2, 2), (2, 2, 5, 5),
     re.escape("expected input of shape (N, 4, H, W), got (2, 2, 5, 5)")),
    ("conv2d-kernel-larger-than-padded-input", lambda: nnkit.Conv2d(1, 1, 5, padding=1),
     (2, 1, 2, 6), re.escape("spatial size (2, 6) padded to (4, 8) is smaller than the kernel")),
    ("conv2d-dilated-kernel-too-large", lambda: nnkit.Conv2d(1, 1, 3, dilation=3), (2, 1, 6, 7),
     r"spans \(7, 7\) with dilation \(3, 3\)"),
    ("conv1d-kernel-too-large", lambda: nnkit.Conv1d(1, 1, 4), (2, 1, 3),
     "smaller than the kernel"),
    ("conv-transpose-output-empty", lambda: nnkit.ConvTranspose2d(1, 1, 1, padding=1),
     (1, 1, 1, 1), r"gives an output of size \(-1, -1\)"),
    ("maxpool2d-kernel-too-large", lambda: nnkit.MaxPool2d(3), (2, 1, 2, 2),
     "smaller than the kernel"),
    ("maxpool2d-wrong-rank", lambda: nnkit.MaxPool2d(2), (4, 28, 28),
     re.escape("MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)) expected input of "
               "shape (N, C, H, W), got (4, 28, 28)")),
    ("avgpool1d-wrong-rank", lambda: nnkit.AvgPool1d(2), (4, 1, 8, 8),
     re.escape("expected input of shape (N, C, L), got (4, 1, 8, 8)")),
    ("adaptive-wrong-rank", lambda: nnkit.AdaptiveAvgPool2d(1), (4, 8),
     re.escape("AdaptiveAvgPool2d(output_size=(1, 1)) expected input of shape (N, C, H, W)")),
    ("adaptive-empty-image", lambda: nnkit.AdaptiveAvgPool2d(1), (4, 2, 0, 3),
     "needs a non-empty image"),
    ("flatten-one-axis", lambda: nnkit.Flatten(), (5,), re.escape(
        "Flatten(start_dim=1, end_dim=-1) cannot merge axes 1 to -1 of an input of shape (5,)")),
    ("flatten-negative-reaches-batch", lambda: nnkit.Flatten(-3), (5, 2, 2),
     "0 is the batch"),
    ("unflatten-sizes", lambda: nnkit.Unflatten(1, (16, 7, 7)), (8, 100), re.escape(
        "Unflatten(dim=1, unflattened_size=(16, 7, 7)) cannot split axis 1 of size 100")),
    ("unflatten-axis", lambda: nnkit.Unflatten(3, (2, 2)), (8, 4), "cannot split axis 3"),
    ("reshape-size", lambda: nnkit.Reshape(16, 7, 7), (8, 100), re.escape(
        "Reshape(16, 7, 7) cannot reshape an input of shape (8, 100) (100 values per sample)")),
    ("reshape-inferred-size", lambda: nnkit.Reshape(3, -1), (8, 10), "10 values per sample"),
]


@pytest.mark.parametrize(
    "make, shape, message", [case[1:] for case in BAD_IMAGE_INPUT],
    ids=[case[0] for case in BAD_IMAGE_INPUT],
)
def test_image_layer_refuses_bad_input(
    make: Callable[[], nnkit.Module], shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make()(np.zeros(shape))


BAD_IMAGE_ARGUMENTS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("conv-groups-in", lambda: nnkit.Conv2d(3, 4, 3, groups=2), ValueError,
     re.escape("Conv2d in_channels (3) must be divisible by groups (2)")),
    ("conv-groups-out", lambda: nnkit.Conv1d(4, 3, 3, groups=2), ValueError,
     re.escape("Conv1d out_channels (3) must be divisible by groups (2)")),
    ("conv-transpose-groups", lambda: nnkit.ConvTranspose2d(4, 6, 3, groups=4), ValueError,
     "out_channels \\(6\\) must be divisible by groups \\(4\\)"),
    ("conv-padding-string", lambda: nnkit.Conv2d(1, 1, 3, padding="full"), ValueError,
     "padding 'full' is not a padding string; use 'valid', 'same'"),
    ("conv-same-strided", lambda: nnkit.Conv2d(1, 1, 3, stride=(1, 2), padding="same"),
     ValueError, "padding='same' is not supported for strided convolutions"),
    ("conv1d-same-strided", lambda: nnkit.Conv1d(1, 1, 3, stride=2, padding="same"), ValueError,
     "not supported for strided"),
    ("conv-transpose-padding-string",
     lambda: nnkit.ConvTranspose2d(1, 1, 3, padding="same"),  # type: ignore[arg-type]
     ValueError, "takes no padding strings"),
    ("conv-transpose-output-padding", lambda: nnkit.ConvTranspose2d(1, 1, 3, 2, output_padding=2),
     ValueError, "output_padding \\(2, 2\\) must be smaller than the stride"),
    ("conv-kernel-zero", lambda: nnkit.Conv2d(1, 1, 0), ValueError, "kernel_size must be >= 1"),
    ("conv-kernel-length", lambda: nnkit.Conv2d(1, 1, (3, 3, 3)), ValueError,
     "kernel_size must be an int or 2 ints"),
    ("conv-kernel-float", lambda: nnkit.Conv2d(1, 1, 2.5), TypeError,  # type: ignore[arg-type]
     "kernel_size must be an int or 2 ints, got 2.5"),
    ("conv-stride-zero", lambda: nnkit.Conv1d(1, 1, 3, stride=0), ValueError,
     "stride must be >= 1"),
    ("conv-negative-padding", lambda: nnkit.Conv2d(1, 1, 3, padding=-1), ValueError,
     "padding must be >= 0"),
    ("conv-dilation-zero", lambda: nnkit.Conv2d(1, 1, 3, dilation=(1, 0)), ValueError,
     "dilation must be >= 1"),
    ("conv-channels-zero", lambda: nnkit.Conv2d(0, 1, 3), ValueError,
     "Conv2d in_channels must be >= 1"),
    ("conv-bool-channels", lambda: nnkit.Conv2d(True, 1, 3), TypeError,
     "in_channels must be an int"),
    ("conv-rng", lambda: nnkit.Conv2d(1, 1, 3, rng=0), TypeError,  # type: ignore[arg-type]
     r"default_rng\(seed\)"),
    ("pool-padding-over-half", lambda: nnkit.MaxPool2d(3, padding=2), ValueError,
     "padding \\(2, 2\\) must be at most half the kernel size"),
    ("pool-stride-zero", lambda: nnkit.AvgPool1d(2, stride=0), ValueError, "stride must be >= 1"),
    ("adaptive-size-zero", lambda: nnkit.AdaptiveAvgPool2d((0, 2)), ValueError,
     "output_size must be >= 1"),
    ("flatten-batch", lambda: nnkit.Flatten(0), ValueError, "would merge the batch axis"),
    ("flatten-float", lambda: nnkit.Flatten(1.0), TypeError,  # type: ignore[arg-type]
     "start_dim must be an int"),
    ("unflatten-batch", lambda: nnkit.Unflatten(0, (2, 2)), ValueError, "batch axis"),
    ("unflatten-two-inferred", lambda: nnkit.Unflatten(1, (-1, -1)), ValueError,
     "at most one -1"),
    ("reshape-zero", lambda: nnkit.Reshape(0, 4), ValueError, "sizes >= 1"),
]


@pytest.mark.parametrize(
    "make, error, message", [case[1:] for case in BAD_IMAGE_ARGUMENTS],
    ids=[case[0] for case in BAD_IMAGE_ARGUMENTS],
)
def test_image_layer_arguments_are_validated(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("case", CONV_LAYERS, ids=ids(CONV_LAYERS))
def test_image_layer_rejects_grad_of_wrong_shape(case: LayerCase) -> None:
    layer = case.make(np.random.default_rng(0))
    y = layer(np.zeros(case.in_shape))
    assert y.shape[0] > 1
    bad = np.ones((1, *y.shape[1:]))  # would broadcast over the batch without the check
    with pytest.raises(ValueError, match="expected grad_out of shape"):
        layer.backward(bad)
