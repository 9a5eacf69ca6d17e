"""nnkit.serialization.limits: every built-in layer's parameters are known from its config, so
a file whose architecture asks for more than its weights hold is refused before anything is
built (test_hostile_files.py has the first Dense cases)."""

from __future__ import annotations

import json
import re
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit import layers as L
from nnkit import serialization as ser
from nnkit.serialization import archive, limits
from nnkit.serialization.architecture import Plan, parse_architecture
from nnkit.serialization.limits import PARAMETER_SHAPES, check_parameter_sizes
from nnkit.serialization.model import decode_weights

CONTAINERS = [nnkit.Sequential, nnkit.Residual, nnkit.Concat, nnkit.Parallel, nnkit.Graph]
BUILT_IN = [getattr(L, name) for name in L.__all__] + CONTAINERS

# -- the entries against the layers they describe ---------------------------------------------

# Layers built with the configs that change their parameters: the entry of each, given its
# get_config(), must list exactly its state dict (parameters and buffers) with the shapes.
LAYERS: list[Callable[[], nnkit.Module]] = [
    lambda: L.Dense(3, 4),
    lambda: L.Dense(3, 4, bias=False),
    lambda: L.Conv1d(2, 4, 3),
    lambda: L.Conv1d(4, 6, 3, groups=2, bias=False, padding="same"),
    lambda: L.Conv2d(2, 4, (3, 2), stride=2, dilation=(1, 2)),
    lambda: L.Conv2d(4, 6, 3, groups=2),
    lambda: L.ConvTranspose2d(4, 6, 3, groups=2),
    lambda: L.ConvTranspose2d(2, 3, (2, 3), stride=2, output_padding=1, bias=False),
    lambda: L.BatchNorm1d(3),
    lambda: L.BatchNorm2d(3, affine=False),
    lambda: L.BatchNorm1d(3, track_running_stats=False),
    lambda: L.BatchNorm2d(3, affine=False, track_running_stats=False),
    lambda: L.LayerNorm(4),
    lambda: L.LayerNorm([2, 3], elementwise_affine=False),
    lambda: L.LayerNorm((2, 3), bias=False),
    lambda: L.GroupNorm(2, 4),
    lambda: L.GroupNorm(2, 4, affine=False),
    lambda: L.Embedding(5, 3),
    lambda: L.Embedding(5, 3, padding_idx=1),
    lambda: L.PositionalEmbedding(7, 3),
    lambda: L.SinusoidalPositionalEncoding(6, 10),
    lambda: L.RNN(3, 4),
    lambda: L.RNN(3, 4, 2, nonlinearity="relu", bias=False, bidirectional=True),
    lambda: L.LSTM(3, 4, 2, bidirectional=True, dropout=0.5),
    lambda: L.GRU(3, 4, 3),
    lambda: L.GRU(3, 4, bias=False, batch_first=True),
    lambda: L.MultiheadAttention(8, 2),
    lambda: L.MultiheadAttention(8, 2, bias=False, kdim=4, vdim=3),
    lambda: L.MultiheadAttention(8, 2, kdim=8, vdim=5, dropout=0.1),
    lambda: L.TransformerEncoderLayer(8, 2, 16),
    lambda: L.TransformerEncoderLayer(8, 2, 16, bias=False, norm_first=True, activation="gelu"),
    lambda: L.Dropout(0.3),
    lambda: L.Dropout2d(),
    lambda: L.MaxPool1d(2),
    lambda: L.MaxPool2d(2, stride=1, padding=1),
    lambda: L.AvgPool1d(3),
    lambda: L.AvgPool2d((2, 3)),
    lambda: L.AdaptiveAvgPool2d((2, 3)),
    lambda: L.Flatten(),
    lambda: L.Unflatten(1, (2, 3)),
    lambda: L.Reshape(3, 4),
    lambda: L.Add(),
    lambda: L.Multiply(),
    lambda: L.Concatenate(axis=2),
    lambda: L.LastTimeStep(batch_first=True),
    lambda: L.SequenceOutput(),
    lambda: L.FinalState(),
    *[lambda name=name: getattr(L.activations, name)() for name in L.activations.__all__],
]


def state_shapes(module: nnkit.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(array.shape) for name, array in module.state_dict().items()}


def test_every_built_in_class_has_an_entry() -> None:
    """A layer added to nnkit.layers.__all__ without an entry fails here (and load refuses
    it, see below)."""
    missing = [cls.__name__ for cls in BUILT_IN if cls not in PARAMETER_SHAPES]
    assert not missing, f"no entry in limits.PARAMETER_SHAPES for {missing}"
    assert set(PARAMETER_SHAPES) == set(BUILT_IN)  # and no entry for anything else


def test_every_built_in_layer_is_compared_with_its_entry_below() -> None:
    """LAYERS (and the TransformerEncoder case) cover every class of nnkit.layers, so a new
    layer needs a case there too."""
    covered = {type(make()) for make in LAYERS} | {L.TransformerEncoder}
    assert covered == {getattr(L, name) for name in L.__all__}


@pytest.mark.parametrize("make", LAYERS, ids=lambda make: type(make()).__name__)
def test_an_entry_lists_exactly_the_state_of_the_built_layer(make: Callable[[], Any]) -> None:
    layer = make()
    shapes = PARAMETER_SHAPES[type(layer)](layer.get_config())
    assert shapes is not None
    assert dict(shapes) == state_shapes(layer)


def test_the_entries_of_a_saved_model_cover_its_whole_state(tmp_path: Path) -> None:
    """Over a model of containers, a Transformer encoder (whose copies and constructor-built
    children are saved as nodes) and a recurrent layer: every key of the state dict is
    required by some module's entry, with its shape."""
    model = nnkit.Sequential(
        nnkit.Residual(L.Dense(8, 8)),
        L.TransformerEncoder(L.TransformerEncoderLayer(8, 2, 16), 3, norm=L.LayerNorm(8)),
        L.LSTM(8, 4, 2, bidirectional=True),
        L.SequenceOutput(),
    )
    path = tmp_path / "m.npz"
    ser.save(model, path)
    plan, _, _ = read_plan(path)
    required: dict[str, tuple[int, ...]] = {}
    for node in nodes(limits._resolved(plan)):
        shapes = PARAMETER_SHAPES[node.cls](node.config)
        for name, shape in (shapes or {}).items():
            full = f"{node.path}.{name}" if node.path else name
            assert required.setdefault(full, shape) == shape
    assert required == state_shapes(model)
    (encoder,) = [n for n in nodes(limits._resolved(plan)) if n.cls is L.TransformerEncoder]
    shapes = PARAMETER_SHAPES[L.TransformerEncoder](encoder.config)
    assert shapes is not None and len(shapes) == 3 * 12  # the copies, not the given norm


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (L.Dense, {"in_features": 0, "out_features": 3}),
        (L.Dense, {"in_features": 2, "out_features": 3, "bias": "yes"}),
        (L.Conv2d, {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2}),
        (L.Conv1d, {"in_channels": 3, "out_channels": 4}),
        (L.GroupNorm, {"num_groups": 3, "num_channels": 4}),
        (L.LayerNorm, {"normalized_shape": [2, True]}),
        (L.LSTM, {"input_size": 3, "hidden_size": 4, "bidirectional": 1}),
        (L.RNN, {"input_size": 3, "hidden_size": 4, "nonlinearity": "sigmoid"}),
        (L.MultiheadAttention, {"embed_dim": 9, "num_heads": 2}),
        (L.TransformerEncoderLayer, {"d_model": 8, "nhead": 3}),
        (L.TransformerEncoder, {"encoder_layer": {"d_model": 8}, "num_layers": 2}),
        (L.SinusoidalPositionalEncoding, {"d_model": -1}),
    ],
)
def test_an_entry_is_none_where_the_constructor_refuses_the_config(
    cls: type[nnkit.Module], config: dict[str, Any]
) -> None:
    """None: the constructor raises before it allocates, so nothing is to bound (load then
    reports the config as a StateMismatchError)."""
    assert PARAMETER_SHAPES[cls](config) is None
    with pytest.raises((TypeError, ValueError, KeyError)):
        cls(**config)


# -- files whose architecture asks for more than their weights --------------------------------


def read_plan(path: Path) -> tuple[Plan, dict[str, Any], dict[str, str]]:
    header, source = archive.read_file(path, ("model",))
    plan = parse_architecture(header["architecture"], source)
    return plan, decode_weights(header["weights"], source), header["tied"]


def nodes(plan: Plan) -> Iterator[Plan]:
    yield plan
    for _, child in plan.children:
        if isinstance(child, Plan):
            yield from nodes(child)


def edit_header(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    with zipfile.ZipFile(path) as z:
        items = {name: z.read(name) for name in z.namelist()}
    header = json.loads(items["header.json"])
    edit(header)
    items["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items.items():
            z.writestr(name, data)


def config_at(*names: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of the config of the module reached through the children ``names``."""

    def edit(header: dict[str, Any]) -> None:
        node = header["architecture"]
        for name in names:
            node = dict(node["children"])[name]
        node["config"].update(changes)

    return edit


def peak_of(load: Callable[[], object]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        load()
        raised = None
    except Exception as exc:
        raised = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, raised


def conv_net() -> nnkit.Module:
    return nnkit.Sequential(
        L.Conv2d(2, 4, 3),
        L.ReLU(),
        L.ConvTranspose2d(4, 6, 3, groups=2),
        L.Conv1d(2, 2, 1, bias=False),
    )


def norm_net() -> nnkit.Module:
    return nnkit.Sequential(
        L.BatchNorm1d(3), L.BatchNorm2d(3, affine=False), L.LayerNorm([2, 3]), L.GroupNorm(2, 4)
    )


def sequence_net() -> nnkit.Module:
    return nnkit.Sequential(
        L.Embedding(5, 4),
        L.PositionalEmbedding(6, 4),
        L.SinusoidalPositionalEncoding(4, 6),
        L.RNN(4, 3),
        L.LSTM(4, 3, 2),
        L.GRU(4, 3),
        L.LastTimeStep(),
    )


def attention_net() -> nnkit.Module:
    return nnkit.Sequential(
        L.MultiheadAttention(8, 2),
        L.MultiheadAttention(8, 2, kdim=4, vdim=3),
        L.TransformerEncoder(L.TransformerEncoderLayer(8, 2, 16), 2),
    )


MODELS = {"conv": conv_net, "norm": norm_net, "sequence": sequence_net, "attention": attention_net}

# (id, model, edit of its header, what the CorruptFileError says)
FAULTS: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    ("conv2d-in-channels", "conv", config_at("0", in_channels=20000),
     r"module '0' as a Conv2d whose weight has shape \(4, 20000, 3, 3\) \(720,000 values\), "
     r"but the file holds '0\.weight' of shape \(4, 2, 3, 3\)"),
    ("conv2d-kernel", "conv", config_at("0", kernel_size=[20000, 20000]),
     r"Conv2d whose weight has shape \(4, 2, 20000, 20000\)"),
    ("conv1d-bias-added", "conv", config_at("3", bias=1),
     r"Conv1d whose bias .* holds no '3\.bias'"),
    ("conv-transpose-out", "conv", config_at("2", out_channels=20000),
     r"ConvTranspose2d whose weight has shape \(4, 10000, 3, 3\)"),
    ("conv-transpose-groups", "conv", config_at("2", groups=1),
     r"ConvTranspose2d whose weight has shape \(4, 6, 3, 3\) .* of shape \(4, 3, 3, 3\)"),
    ("conv1d-out", "conv", config_at("3", out_channels=10**8, in_channels=10**8),
     r"Conv1d whose weight has shape \(100000000, 100000000, 1\)"),
    ("batchnorm-features", "norm", config_at("0", num_features=10**9),
     r"BatchNorm1d whose weight has shape \(1000000000,\)"),
    ("batchnorm-buffers", "norm", config_at("1", num_features=10**9),
     r"module '1' as a BatchNorm2d whose running_mean has shape \(1000000000,\)"),
    ("batchnorm-affine-added", "norm", config_at("1", affine=True), r"holds no '1\.weight'"),
    ("layernorm-shape", "norm", config_at("2", normalized_shape=[20000, 20000]),
     r"LayerNorm whose weight has shape \(20000, 20000\)"),
    ("layernorm-int", "norm", config_at("2", normalized_shape=10**9),
     r"LayerNorm whose weight has shape \(1000000000,\)"),
    ("groupnorm-channels", "norm", config_at("3", num_channels=10**9),
     r"GroupNorm whose weight has shape \(1000000000,\)"),
    ("embedding-rows", "sequence", config_at("0", num_embeddings=10**8),
     r"Embedding whose weight has shape \(100000000, 4\)"),
    ("positional-embedding", "sequence", config_at("1", max_len=10**8),
     r"PositionalEmbedding whose weight has shape \(100000000, 4\)"),
    ("sinusoidal-table", "sequence", config_at("2", max_len=10**8),
     r"module '2' as a SinusoidalPositionalEncoding whose table of max_len x d_model = "
     r"100000000 x 4 = 400,000,000 values .* more than the 33,554,432 values"),
    ("rnn-hidden", "sequence", config_at("3", hidden_size=20000),
     r"RNN whose weight_ih_l0 has shape \(20000, 4\)"),
    ("lstm-layers", "sequence", config_at("4", num_layers=10**9),
     r"LSTM whose weight_ih_l2 has shape \(12, 3\) \(36 values\), but the file holds no "
     r"'4\.weight_ih_l2'"),
    ("lstm-layers-beyond-int64", "sequence", config_at("4", num_layers=10**30),
     r"holds no '4\.weight_ih_l2'"),
    ("gru-bidirectional", "sequence", config_at("5", bidirectional=True),
     r"GRU whose weight_ih_l0_reverse has shape \(9, 4\)"),
    ("attention-embed-dim", "attention", config_at("0", embed_dim=20000, kdim=20000, vdim=20000),
     r"MultiheadAttention whose in_proj_weight has shape \(60000, 20000\)"),
    ("attention-kdim", "attention", config_at("1", kdim=10**9),
     r"MultiheadAttention whose k_proj_weight has shape \(8, 1000000000\)"),
    ("attention-packed", "attention", config_at("1", kdim=8, vdim=8),
     r"whose in_proj_weight has shape \(24, 8\) .* holds no '1\.in_proj_weight'"),
    ("encoder-layer-d-model", "attention", config_at("2", "layers.0", d_model=20000),
     r"module '2\.layers\.0' as a TransformerEncoderLayer whose self_attn\.in_proj_weight has "
     r"shape \(60000, 20000\)"),
    ("encoder-layer-feedforward", "attention",
     config_at("2", "layers.0", dim_feedforward=10**9),
     r"TransformerEncoderLayer whose linear1\.weight has shape \(1000000000, 8\)"),
    ("encoder-copies", "attention", config_at("2", num_layers=10**9),
     r"module '2' as a TransformerEncoder whose layers\.2\.self_attn\.in_proj_weight has shape "
     r"\(24, 8\) \(192 values\), but the file holds no '2\.layers\.2\.self_attn\.in_proj_weight'"),
]  # fmt: skip


def describe(model: nnkit.Module) -> list[tuple[str, str, str]]:
    """Each module's name, class and config (modules in it by class)."""
    return [
        (name, type(m).__name__, repr(plain(m.get_config()))) for name, m in model.named_modules()
    ]


def plain(value: Any) -> Any:
    if isinstance(value, nnkit.Module):
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name", MODELS)
def test_a_real_model_passes_the_check_and_round_trips(name: str, tmp_path: Path) -> None:
    model = MODELS[name]()
    path = tmp_path / "m.npz"
    ser.save(model, path)
    check_parameter_sizes(*read_plan(path), str(path))
    loaded = ser.load(path)
    assert describe(loaded) == describe(model)
    state, back = model.state_dict(), loaded.state_dict()
    assert list(back) == list(state)
    for key in state:
        assert back[key].dtype == state[key].dtype
        np.testing.assert_array_equal(back[key], state[key])


@pytest.mark.parametrize(
    ("model", "edit", "match"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
def test_an_architecture_larger_than_its_weights_is_refused_before_allocating(
    model: str, edit: Callable[[dict[str, Any]], None], match: str, tmp_path: Path
) -> None:
    path = tmp_path / "m.npz"
    ser.save(MODELS[model](), path)
    edit_header(path, edit)
    peak, raised = peak_of(lambda: ser.load(path))
    assert isinstance(raised, ser.CorruptFileError), raised
    assert re.search(match, str(raised)), str(raised)
    assert "refusing to build it" in str(raised)
    assert peak < 50 * 2**20  # the layers declared would take from 2.9 MB to 8 GB and more


def test_a_big_table_within_the_limit_loads(tmp_path: Path) -> None:
    """The default max_len of 5000 with d_model 512: 2,560,000 values, far below the limit."""
    path = tmp_path / "m.npz"
    ser.save(nnkit.Sequential(L.SinusoidalPositionalEncoding(512)), path)
    loaded = ser.load(path)
    assert loaded[0].get_config()["max_len"] == 5000  # type: ignore[index]
    assert limits.MAX_TABLE_VALUES >= 5000 * 6710


def test_a_config_the_entry_cannot_read_is_refused() -> None:
    """A config may hold arrays: one where RNN expects "tanh" makes ``in`` raise ValueError,
    which is a refusal, not an escape from the check."""
    config = {"input_size": 2, "hidden_size": 3, "nonlinearity": np.array(["tanh", "relu"])}
    plan = Plan("", L.RNN, "RNN", config, True)
    with pytest.raises(ser.CorruptFileError, match=r"the model as a RNN whose config cannot be"):
        check_parameter_sizes(plan, {}, {}, "m.npz")


# -- tied parameters ---------------------------------------------------------------------------


def tied_pair(features: int) -> nnkit.Module:
    first, second = L.Dense(features, features), L.Dense(features, features)
    second.weight = first.weight
    return nnkit.Sequential(first, L.Tanh(), second)


def test_tied_parameters_load(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    ser.save(tied_pair(3), path)
    loaded = ser.load(path)
    assert loaded[2].weight is loaded[0].weight  # type: ignore[index]


def test_a_tied_parameter_must_have_the_shape_of_its_target(tmp_path: Path) -> None:
    """A parameter named in ``tied`` is not in the weights: its size is its target's. Before,
    naming a huge layer's weight in ``tied`` skipped its check."""
    path = tmp_path / "m.npz"
    ser.save(tied_pair(3), path)
    edit_header(path, config_at("2", in_features=20000, out_features=20000))
    peak, raised = peak_of(lambda: ser.load(path))
    assert isinstance(raised, ser.CorruptFileError), raised
    assert (
        "module '2' as a Dense whose weight has shape (20000, 20000) (400,000,000 values), but "
        "the file ties '2.weight' to '0.weight', which has shape (3, 3)" in str(raised)
    )
    assert peak < 50 * 2**20

    def tie_to_nothing(header: dict[str, Any]) -> None:
        header["tied"] = {"2.weight": "0.missing"}

    ser.save(tied_pair(3), path)
    edit_header(path, tie_to_nothing)
    with pytest.raises(ser.CorruptFileError, match=r"ties '2\.weight' to '0\.missing', which it"):
        ser.load(path)


def test_one_weight_tied_to_many_layers_is_refused(tmp_path: Path) -> None:
    """Each tied layer allocates its own parameter before the tie is restored: 2,000 layers
    tied to one (300, 300) weight would allocate 2,000 times the file's weights."""
    path = tmp_path / "m.npz"
    ser.save(tied_pair(300), path)

    def many_ties(header: dict[str, Any]) -> None:
        children = header["architecture"]["children"]
        layer = dict(children)["2"]
        for i in range(3, 2003):
            children.append([str(i), layer])
            header["tied"][f"{i}.weight"] = "0.weight"
            header["weights"].append(f"{i}.bias")

    edit_header(path, many_ties)
    with zipfile.ZipFile(path, "a") as z:  # the biases, so that only the ties are wrong
        bias = z.read("weights/2.bias.npy")
        for i in range(3, 2003):
            z.writestr(f"weights/{i}.bias.npy", bias)
    peak, raised = peak_of(lambda: ser.load(path))
    assert isinstance(raised, ser.CorruptFileError), raised
    assert "2001 tied parameters of 180,090,000 values, more than 8 times" in str(raised)
    assert peak < 50 * 2**20


# -- classes without an entry ----------------------------------------------------------------


def test_a_built_in_class_without_an_entry_is_refused_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.npz"
    ser.save(nnkit.Sequential(L.Conv2d(2, 3, 3)), path)
    monkeypatch.delitem(PARAMETER_SHAPES, L.Conv2d)
    with pytest.raises(ser.SerializationError, match=r"'0' is a built-in Conv2d, which has no "):
        ser.load(path)


@ser.register_module(name="test_limits.Wide")
class Wide(L.Dense):
    """A registered subclass of a built-in layer: custom code, built as its config asks."""


def test_a_registered_subclass_is_left_to_its_own_code(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    ser.save(nnkit.Sequential(Wide(2, 3)), path)
    assert Wide not in PARAMETER_SHAPES
    assert type(ser.load(path)[0]) is Wide  # type: ignore[index]
