"""Sequence layers save and load: nnkit.save/load round trips of every case in
``cases.SEQUENCES``, get_config, the Transformer encoder whose config holds its encoder layer,
and generator states (dropout resumes with the same masks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import SEQUENCES, SequenceCase, ids
from sequence_adapters import Harnessed

import nnkit


def flat(value: Any) -> list[Any]:
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in flat(item)]
    return [value]


def saved_part(model: nnkit.Module) -> nnkit.Module:
    """The layer itself: the test adapter is not a saved model."""
    return model.inner if isinstance(model, Harnessed) else model


def rewrap(model: nnkit.Module, layer: nnkit.Module) -> nnkit.Module:
    if isinstance(model, Harnessed):
        return Harnessed(layer, model.lstm_state, model.moves, model.self_attention)
    return layer


@pytest.mark.parametrize("case", SEQUENCES, ids=ids(SEQUENCES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequence_layer_round_trips(case: SequenceCase, dtype: Any, tmp_path: Path) -> None:
    model = case.make(np.random.default_rng(0))
    layer = saved_part(model).astype(dtype)
    if dtype is np.float64:
        layer.eval()
    nnkit.save(layer, tmp_path / "m.npz")
    loaded = nnkit.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(layer)
    assert [type(m) for m in loaded.modules()] == [type(m) for m in layer.modules()]
    assert [m.training for m in loaded.modules()] == [m.training for m in layer.modules()]
    state, state_loaded = layer.state_dict(), loaded.state_dict()
    assert list(state) == list(state_loaded)
    assert all(
        state[k].dtype == v.dtype and np.array_equal(state[k], v) for k, v in state_loaded.items()
    )
    assert loaded.generator_state() == layer.generator_state()
    xs = [
        x.astype(dtype) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x
        for x in case.inputs(np.random.default_rng(1))
    ]
    ys = flat(rewrap(model, layer)(*xs))
    ys_loaded = flat(rewrap(model, loaded)(*xs))  # training mode: the same dropout draws
    for a, b in zip(ys, ys_loaded, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("case", SEQUENCES, ids=ids(SEQUENCES))
def test_config_rebuilds_an_equal_layer(case: SequenceCase) -> None:
    layer = saved_part(case.make(np.random.default_rng(0)))
    if isinstance(layer, (nnkit.Sequential, nnkit.TransformerEncoder)):
        rebuilt = type(layer).from_config(layer.get_config())
    else:
        rebuilt = type(layer)(**layer.get_config())
    assert repr(rebuilt) == repr(layer)
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [
        (n, p.shape) for n, p in layer.named_parameters()
    ]


def test_encoder_config_holds_its_layer_and_load_keeps_the_stack(tmp_path: Path) -> None:
    template = nnkit.TransformerEncoderLayer(
        8, 2, 16, dropout=0.3, batch_first=True, rng=np.random.default_rng(0)
    )
    encoder = nnkit.TransformerEncoder(template, 3, norm=nnkit.LayerNorm(8))
    config = encoder.get_config()
    assert config["encoder_layer"] is encoder.layers[0] and config["num_layers"] == 3
    assert template not in list(encoder.modules())  # copied, as PyTorch does
    names = [name for name, _ in encoder.named_parameters()]
    assert names[0] == "layers.0.self_attn.in_proj_weight" and names[-1] == "norm.bias"
    assert "layers.2.linear2.weight" in names
    nnkit.save(encoder, tmp_path / "encoder.npz")
    loaded = nnkit.load(tmp_path / "encoder.npz")
    assert isinstance(loaded, nnkit.TransformerEncoder) and len(loaded.layers) == 3
    assert [n for n, _ in loaded.named_parameters()] == names
    assert loaded.generator_state() == encoder.generator_state()
    params = [id(p.data) for p in loaded.parameters()]
    assert len(params) == len(set(params))  # three independent layers, nothing shared
    x = np.random.default_rng(1).normal(size=(2, 5, 8))
    np.testing.assert_array_equal(loaded(x), encoder(x))  # training: the same dropout masks
    encoder.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), encoder(x))


def test_encoder_copies_draw_independent_dropout_masks() -> None:
    template = nnkit.TransformerEncoderLayer(4, 2, 8, dropout=0.5, rng=np.random.default_rng(0))
    encoder = nnkit.TransformerEncoder(template, 2)
    first = dict(encoder.layers[0].named_generators())
    second = dict(encoder.layers[1].named_generators())
    assert first.keys() == second.keys() and len(first) == 4
    for name in first:
        assert first[name].random() != second[name].random()


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_dropout_resumes_from_a_checkpoint(kind: str, tmp_path: Path) -> None:
    layer = getattr(nnkit, kind)(3, 4, 2, dropout=0.5, rng=np.random.default_rng(0))
    assert "rng" in layer.generator_state()
    x = np.random.default_rng(1).normal(size=(5, 2, 3))
    layer(x)
    nnkit.save(layer, tmp_path / "m.npz")
    expected = flat(layer(x))
    resumed = flat(nnkit.load(tmp_path / "m.npz")(x))
    assert all(np.array_equal(a, b) for a, b in zip(expected, resumed, strict=True))
    again = flat(layer(x))
    assert not np.array_equal(again[0], expected[0])  # a new draw: dropout is on in training


def test_torch_state_dict_loads_into_a_saved_and_loaded_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    theirs = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    ours = nnkit.LSTM(3, 5, num_layers=2, bidirectional=True)
    nnkit.save(ours, tmp_path / "lstm.npz")
    loaded = nnkit.load(tmp_path / "lstm.npz")
    loaded.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(4, 2, 3)).astype(np.float32)
    out, _ = loaded(x)
    np.testing.assert_allclose(out, theirs(torch.from_numpy(x))[0].detach().numpy(), atol=1e-6)
