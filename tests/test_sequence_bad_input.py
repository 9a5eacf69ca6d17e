"""Bad input to the sequence layers gets a clear exception naming the layer and both shapes,
never a broadcast, an assert or a NumPy error from deep inside."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import nnkit


def message(exc: BaseException) -> str:
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


# -- recurrent layers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_feature_size_mismatch_names_layer_and_shapes(kind: str) -> None:
    layer = getattr(nnkit, kind)(3, 4)
    expected = (
        f"{kind}(input_size=3, hidden_size=4) expected input of shape (T, N, 3) "
        "(batch_first=False), got (5, 2, 4)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        layer(np.zeros((5, 2, 4)))
    batch_first = getattr(nnkit, kind)(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=re.escape("shape (N, T, 3) (batch_first=True)")):
        batch_first(np.zeros((2, 5, 4)))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_sequence_is_refused_with_a_hint(kind: str) -> None:
    with pytest.raises(ValueError, match="unbatched 2-D sequences are not supported"):
        getattr(nnkit, kind)(3, 4)(np.zeros((5, 3)))


@pytest.mark.parametrize("kind", ["RNN", "GRU"])
def test_h0_of_the_wrong_shape(kind: str) -> None:
    layer = getattr(nnkit, kind)(3, 4, num_layers=2)
    expected = (
        f"{kind}(input_size=3, hidden_size=4) expected h0 of shape (num_layers * "
        "num_directions, N, hidden_size) = (2, 2, 4) for input of shape (5, 2, 3), got (1, 2, 4)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        layer(np.zeros((5, 2, 3)), np.zeros((1, 2, 4)))


def test_lstm_state_of_the_wrong_shape_or_structure() -> None:
    lstm = nnkit.LSTM(3, 4, bidirectional=True)
    x, h = np.zeros((5, 2, 3)), np.zeros((2, 2, 4))
    with pytest.raises(ValueError, match=re.escape("expected c0 of shape")):
        lstm(x, (h, np.zeros((2, 3, 4))))
    with pytest.raises(TypeError, match=re.escape("as a pair (h0, c0)")):
        lstm(x, h)
    with pytest.raises(ValueError, match="give both h0 and c0"):
        lstm(x, (h, None))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_backward_gradients_of_the_wrong_shape(kind: str) -> None:
    layer = getattr(nnkit, kind)(3, 4)
    layer(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=re.escape("expected grad_out of shape (5, 2, 4)")):
        layer.backward(np.zeros((5, 2, 3)))
    bad_state = (np.zeros((2, 2, 4)), None) if kind == "LSTM" else np.zeros((2, 2, 4))
    with pytest.raises(ValueError, match=re.escape("gradient of h_n of shape (1, 2, 4)")):
        layer.backward(None, bad_state)


def test_lstm_backward_takes_the_state_gradient_as_a_pair() -> None:
    lstm = nnkit.LSTM(3, 4)
    lstm(np.zeros((5, 2, 3)))
    with pytest.raises(TypeError, match=re.escape("pair (d_h_n, d_c_n)")):
        lstm.backward(np.zeros((5, 2, 4)), np.zeros((1, 2, 4)))


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"hidden_size": 0}, ValueError, "hidden_size must be >= 1"),
        ({"num_layers": 1.5}, TypeError, "num_layers must be an int"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, ValueError, "dropout must be >= 0"),
        ({"bidirectional": 1}, TypeError, "bidirectional must be True or False"),
        ({"batch_first": "yes"}, TypeError, "batch_first must be True or False"),
        ({"nonlinearity": "sigmoid"}, ValueError, "nonlinearity must be 'tanh' or 'relu'"),
    ],
)
def test_recurrent_constructor_arguments(kwargs: dict[str, Any], error: type, text: str) -> None:
    arguments = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(error, match=text):
        nnkit.RNN(**arguments)


def test_sequential_names_the_recurrent_child() -> None:
    model = nnkit.Sequential(
        nnkit.GRU(3, 4, batch_first=True), nnkit.LastTimeStep(batch_first=True), nnkit.Dense(4, 2)
    )
    with pytest.raises(ValueError) as info:
        model(np.zeros((2, 5, 6)))
    assert 'raised in forward of child "0" (GRU)' in message(info.value)


@pytest.mark.parametrize(
    "layer, inputs",
    [
        (nnkit.LSTM(2, 3), ()),
        (nnkit.MultiheadAttention(4, 2), (np.zeros((3, 1, 4)),) * 2),
        (nnkit.TransformerEncoderLayer(4, 2, 8), ()),
        (nnkit.PositionalEmbedding(5, 2), ()),
        (nnkit.SinusoidalPositionalEncoding(2), ()),
        (nnkit.LastTimeStep(), ()),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nnkit.Module) else "",
)
def test_non_numeric_input_is_type_error(layer: nnkit.Module, inputs: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match="numeric"):
        layer(np.array([[["a", "b"]]]), *inputs)


@pytest.mark.parametrize(
    "layer",
    [
        nnkit.GRU(2, 3),
        nnkit.MultiheadAttention(4, 2),
        nnkit.TransformerEncoderLayer(4, 2, 8),
        nnkit.TransformerEncoder(nnkit.TransformerEncoderLayer(4, 2, 8), 2),
        nnkit.PositionalEmbedding(5, 2),
        nnkit.LastTimeStep(),
        nnkit.SequenceOutput(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_backward_before_forward_is_runtime_error(layer: nnkit.Module) -> None:
    with pytest.raises(RuntimeError, match="call forward"):
        layer.backward(np.ones((3, 2, 4)))


# -- attention -----------------------------------------------------------------------------------


def test_embed_dim_not_divisible_by_num_heads() -> None:
    with pytest.raises(
        ValueError, match=re.escape("embed_dim (10) must be divisible by num_heads (3)")
    ):
        nnkit.MultiheadAttention(10, 3)


def test_query_key_value_shapes() -> None:
    mha = nnkit.MultiheadAttention(8, 2, kdim=3)
    q, k, v = np.zeros((4, 2, 8)), np.zeros((5, 2, 3)), np.zeros((5, 2, 8))
    expected = (
        "MultiheadAttention(embed_dim=8, num_heads=2) expected query of shape (L, N, 8) "
        "(batch_first=False), got (4, 2, 6)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        mha(np.zeros((4, 2, 6)), k, v)
    with pytest.raises(ValueError, match=re.escape("expected key of shape (S, N, 3)")):
        mha(q, v, v)
    with pytest.raises(ValueError, match="batch sizes must agree"):
        mha(q, np.zeros((5, 3, 3)), np.zeros((5, 3, 8)))
    with pytest.raises(ValueError, match="key and value must have the same length"):
        mha(q, k, np.zeros((6, 2, 8)))


@pytest.mark.parametrize(
    "name, mask, error, text",
    [
        (
            "attn_mask",
            np.zeros((4, 4), bool),
            ValueError,
            r"expected attn_mask of shape \(4, 5\) or \(4, 4, 5\) for query length 4, key length 5"
            r" and batch 2, got \(4, 4\)",
        ),
        (
            "key_padding_mask",
            np.zeros((5, 2), bool),
            ValueError,
            r"expected key_padding_mask of shape \(2, 5\).*got \(5, 2\)",
        ),
        (
            "key_padding_mask",
            np.zeros((2, 5), np.int64),
            TypeError,
            "key_padding_mask must be bool .* or floating .*, got dtype int64",
        ),
        ("attn_mask", np.zeros((4, 5), np.uint8), TypeError, "got dtype uint8"),
    ],
)
def test_masks_of_the_wrong_shape_or_dtype(name: str, mask: Any, error: type, text: str) -> None:
    mha = nnkit.MultiheadAttention(8, 2)
    q, k = np.zeros((4, 2, 8)), np.zeros((5, 2, 8))
    with pytest.raises(error, match=text):
        mha(q, k, k, **{name: mask})


def test_attention_arguments_are_bound_as_python_binds_them() -> None:
    mha = nnkit.MultiheadAttention(4, 2)
    x = np.zeros((3, 1, 4))
    with pytest.raises(TypeError, match="unexpected keyword argument 'mask'"):
        mha(x, x, x, mask=None)
    with pytest.raises(TypeError, match="multiple values for argument 'need_weights'"):
        mha(x, x, x, None, True, need_weights=False)
    with pytest.raises(TypeError, match="at most 5 further arguments"):
        mha(x, x, x, None, True, None, True, False, 1)
    with pytest.raises(TypeError, match="need_weights must be True or False"):
        mha(x, x, x, need_weights="no")


def test_gradient_for_weights_that_were_not_returned() -> None:
    mha = nnkit.MultiheadAttention(4, 2)
    x = np.zeros((3, 1, 4))
    mha(x, x, x, need_weights=False)
    with pytest.raises(ValueError, match="need_weights=False"):
        mha.backward(np.zeros((3, 1, 4)), np.zeros((1, 3, 3)))


# -- encoder and positions -------------------------------------------------------------------


def test_encoder_layer_input_and_arguments() -> None:
    layer = nnkit.TransformerEncoderLayer(8, 2, 16)
    expected = (
        "TransformerEncoderLayer(d_model=8, nhead=2) expected src of shape (S, N, 8) "
        "(batch_first=False), got (5, 2, 4)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        layer(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match="activation must be 'relu' or 'gelu'"):
        nnkit.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nnkit.TransformerEncoderLayer(8, 3)
    with pytest.raises(TypeError, match="takes a TransformerEncoderLayer"):
        nnkit.TransformerEncoder(nnkit.Dense(2, 2), 2)  # type: ignore[arg-type]


def test_encoder_names_the_failing_layer() -> None:
    encoder = nnkit.TransformerEncoder(nnkit.TransformerEncoderLayer(8, 2, 16), 2)
    with pytest.raises(ValueError) as info:
        encoder(np.zeros((5, 2, 8)), np.zeros((4, 4), bool))
    assert "expected attn_mask of shape (5, 5)" in message(info.value)
    assert 'raised in forward of child "layers.0" (TransformerEncoderLayer)' in message(info.value)


@pytest.mark.parametrize(
    "layer",
    [nnkit.PositionalEmbedding(4, 3), nnkit.SinusoidalPositionalEncoding(3, max_len=4)],
    ids=lambda m: type(m).__name__,
)
def test_positions_longer_than_max_len_or_wrong_width(layer: nnkit.Module) -> None:
    with pytest.raises(
        ValueError, match=r"length 5 \(input shape \(5, 2, 3\)\), longer than its max_len 4"
    ):
        layer(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=re.escape("expected input of shape (L, N, 3)")):
        layer(np.zeros((3, 2, 2)))


def test_last_time_step_needs_a_sequence() -> None:
    with pytest.raises(ValueError, match="with at least one step, got"):
        nnkit.LastTimeStep(batch_first=True)(np.zeros((2, 0, 3)))
    with pytest.raises(ValueError, match=re.escape("got (4,)")):
        nnkit.LastTimeStep()(np.zeros(4))


def test_final_state_needs_an_output_and_a_state() -> None:
    with pytest.raises(ValueError, match=r"FinalState takes a recurrent layer's \(output, h_n\)"):
        nnkit.FinalState()(np.zeros((2, 5, 7)), np.zeros((2, 2, 4)))  # 7 is not D * 4
