"""ONNX export: every built-in layer of the shared tables and a model of each kind, exported and
run in onnxruntime, agree with nnkit's eval forward; the export's errors name the module.

Skipped when onnx or onnxruntime is not installed (the extras ``onnx`` and ``test``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import LAYERS, SEQUENCES, LayerCase, ids
from sequence_adapters import Harnessed
from stateful_layers import Center

import nnkit
import nnkit.onnx
from nnkit.onnx import ExportContext, ExportError, Value, ValueTree

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ATOL = 1e-5
"""The issue's bound on |onnxruntime - nnkit| for float32 outputs of order one."""

BATCH = 5
"""The batch the exported files run on: neither of the traced batch sizes."""



def _newest_runnable_opset() -> int:
    """The newest opset that both the installed onnx and onnxruntime know (onnxruntime often
    lags onnx by a release): the first, from onnx's newest down, that onnxruntime loads."""
    helper = onnx.helper
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    for opset in range(int(onnx.defs.onnx_opset_version()), nnkit.onnx.MIN_OPSET, -1):
        ids_ = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=ids_)
        model.ir_version = helper.find_min_ir_version_for(ids_)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:
            continue
        return opset
    return nnkit.onnx.MIN_OPSET


OPSETS = tuple(sorted({nnkit.onnx.MIN_OPSET, _newest_runnable_opset()}))
"""The oldest opset nnkit writes and the newest that onnx and onnxruntime know: the
converters that change form between opsets (reductions from 18, GELU from 20) are exercised
in both."""

CUSTOM = {"Center", "Noise", "Sequential-stateful"}
"""Cases of the shared table made of the tests' own layers, which have no converter; they are
the unexportable modules of the error tests below."""


@dataclass(frozen=True)
class ModelCase:
    """A whole model: how to build it, one sample's shape per input, integer inputs."""

    name: str
    make: Callable[[np.random.Generator], nnkit.Module]
    sample_shapes: tuple[tuple[int, ...], ...]
    integer_inputs: tuple[int, ...] = ()  # positions of inputs that are token ids < 7
    batch_axis: int = 0


def _mlp(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Sequential(
        nnkit.Dense(6, 16, rng=rng), nnkit.ReLU(), nnkit.Dropout(0.5),
        nnkit.Dense(16, 16, rng=rng), nnkit.GELU(), nnkit.LayerNorm(16),
        nnkit.Dense(16, 4, rng=rng), nnkit.LogSoftmax(),
    )


def _cnn(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Sequential(
        nnkit.Conv2d(3, 8, 3, padding=1, rng=rng), nnkit.BatchNorm2d(8), nnkit.ReLU(),
        nnkit.MaxPool2d(2),
        nnkit.Conv2d(8, 8, 3, padding="same", groups=2, rng=rng), nnkit.GroupNorm(4, 8),
        nnkit.SiLU(), nnkit.Dropout2d(0.3),
        nnkit.AvgPool2d(2), nnkit.AdaptiveAvgPool2d((3, 1)),  # equal bins: an AveragePool
        nnkit.Flatten(), nnkit.Dense(24, 10, rng=rng), nnkit.Softmax(),
    )


def _residual(rng: np.random.Generator) -> nnkit.Module:
    def block(width: int) -> nnkit.Module:
        return nnkit.Sequential(
            nnkit.Dense(width, width, rng=rng), nnkit.BatchNorm1d(width), nnkit.ReLU(),
            nnkit.Dense(width, width, rng=rng),
        )

    return nnkit.Sequential(
        nnkit.Dense(5, 12, rng=rng), nnkit.Tanh(),
        nnkit.Residual(block(12)),
        nnkit.Residual(nnkit.Sequential(nnkit.Dense(12, 8, rng=rng), nnkit.ELU()),
                       nnkit.Dense(12, 8, rng=rng)),
        nnkit.Concat(nnkit.Dense(8, 3, rng=rng), nnkit.Sigmoid()),
        nnkit.Dense(11, 2, rng=rng),
    )


def _two_output_graph(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Graph(
        inputs=["image", "extra"],
        nodes={
            "conv": (nnkit.Conv1d(2, 4, 3, padding=1, rng=rng), "image"),
            "act": (nnkit.LeakyReLU(0.2), "conv"),
            "flat": (nnkit.Flatten(), "act"),
            "features": (nnkit.Dense(3, 24, rng=rng), "extra"),
            "joined": (nnkit.Add(), ["flat", "features"]),
            "split": (nnkit.Parallel(nnkit.Softplus(), nnkit.Identity()), ["joined", "joined"]),
            "logits": (nnkit.Dense(24, 3, rng=rng), "split:0"),
            "aux": (nnkit.Unflatten(1, (4, 6)), "split:1"),
        },
        outputs=["logits", "aux"],
    )


def _tokens(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Sequential(
        nnkit.Embedding(7, 8, padding_idx=0, rng=rng), nnkit.LayerNorm(8),
        nnkit.Dense(8, 8, rng=rng), nnkit.Reshape(-1), nnkit.Dense(32, 2, rng=rng),
    )


def _gru(rng: np.random.Generator) -> nnkit.Module:
    """Time-major, two layers, both directions: the final states of both into a Dense."""
    return nnkit.Sequential(
        nnkit.GRU(4, 8, 2, bidirectional=True, dropout=0.2, rng=rng),
        nnkit.FinalState(),
        nnkit.Dense(16, 3, rng=rng),
    )


def _lstm(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Graph(
        inputs="x",
        nodes={
            "lstm": (nnkit.LSTM(3, 6, 2, batch_first=True, rng=rng), "x"),
            "last": (nnkit.LastTimeStep(batch_first=True), ["lstm:0", "lstm:1"]),
            "head": (nnkit.Dense(6, 2, rng=rng), "last"),
        },
        outputs=["head", "lstm:1"],  # the logits and the final (h_n, c_n)
    )


def _transformer(rng: np.random.Generator) -> nnkit.Module:
    """A decoder-only language model: tokens, positions, a causal encoder, logits."""
    layer = nnkit.TransformerEncoderLayer(
        8, 2, 16, dropout=0.1, activation="gelu", batch_first=True, rng=rng
    )
    return nnkit.Sequential(
        nnkit.Embedding(7, 8, rng=rng),
        nnkit.PositionalEmbedding(12, 8, batch_first=True, rng=rng),
        nnkit.TransformerEncoder(layer, 2, norm=nnkit.LayerNorm(8), causal=True),
        nnkit.Dense(8, 7, rng=rng),
    )


MODELS = [
    ModelCase("MLP", _mlp, ((6,),)),
    ModelCase("CNN", _cnn, ((3, 12, 12),)),
    ModelCase("residual", _residual, ((5,),)),
    ModelCase("two-output-graph", _two_output_graph, ((2, 6), (3,))),
    ModelCase("tokens", _tokens, ((4,),), integer_inputs=(0,)),
    ModelCase("GRU", _gru, ((6, 4),), batch_axis=1),
    ModelCase("LSTM-graph", _lstm, ((5, 3),)),
    ModelCase("transformer", _transformer, ((9,),), integer_inputs=(0,)),
]


def _randomize(model: nnkit.Module, rng: np.random.Generator) -> None:
    """Move every parameter and running statistic off its initial value (ones, zeros), so a
    converter that dropped one, or took the wrong one, is caught."""
    for _, param in model.named_parameters():
        param.data += rng.normal(0, 0.2, param.shape).astype(param.dtype)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.data[...] = rng.normal(0, 0.5, buffer.shape)
        elif name.endswith("running_var"):
            buffer.data[...] = rng.uniform(0.5, 2.0, buffer.shape)


def _run(path: Path, inputs: list[Any]) -> list[Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: x for i, x in zip(session.get_inputs(), inputs, strict=True)}
    outputs: list[Any] = session.run(None, feed)
    return outputs


def _leaves(value: Any) -> list[Any]:
    """The arrays of a nested result, in order, without None (as export lists its outputs)."""
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [] if value is None else [value]


def _check_against_nnkit(model: nnkit.Module, inputs: list[Any], path: Path) -> None:
    expected = _leaves(model.eval()(*inputs))
    got = _run(path, inputs)
    assert len(got) == len(expected)
    for y, ref in zip(got, expected, strict=True):
        assert y.shape == ref.shape and y.dtype == ref.dtype
        np.testing.assert_allclose(y, ref, rtol=0, atol=ATOL)


def _batch_axes(case: LayerCase, count: int) -> list[int | None]:
    axes = case.options.get("batch_axis", 0)
    return list(axes) if isinstance(axes, list) else [axes] * count


def _resized(x: Any, axis: int | None) -> Any:
    """``x`` with BATCH samples along ``axis`` (the case's own, repeated), floats as float32."""
    x = np.asarray(x)
    if axis is not None:
        x = np.take(x, np.arange(BATCH) % x.shape[axis], axis=axis)
    return x.astype(np.float32) if x.dtype.kind == "f" else x


def _exportable(case: LayerCase) -> bool:
    """Cases whose inputs are all arrays (not option flags) and whose layers are nnkit's."""
    inputs = case.inputs(np.random.default_rng(0))
    return case.name not in CUSTOM and all(isinstance(x, np.ndarray) for x in inputs)


def _harnessed(ctx: ExportContext, module: Harnessed, inputs: tuple[ValueTree, ...]) -> Any:
    """The test adapter of tests/sequence_adapters.py, converted as it computes: the inner
    layer's nested result flattened, None dropped, axes moved by Transpose."""
    args: tuple[ValueTree, ...] = inputs
    if module.self_attention:
        args = (inputs[0], inputs[0], inputs[0], *inputs[1:])
    elif module.lstm_state and len(inputs) == 3:
        args = (inputs[0], (inputs[1], inputs[2]))
    out = []
    for i, leaf in enumerate(_leaves(ctx.convert(module.inner, args))):
        move = module.moves[i] if i < len(module.moves) else None
        if move is None:
            out.append(leaf.name)
            continue
        perm = list(range(leaf.rank))
        perm.insert(move[1], perm.pop(move[0]))
        out.append(ctx.op("Transpose", leaf, perm=perm))
    return tuple(out)


nnkit.onnx.register_converter(Harnessed, _harnessed, replace=True)

EXPORTABLE = [case for case in [*LAYERS, *SEQUENCES] if _exportable(case)]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", EXPORTABLE, ids=ids(EXPORTABLE))
def test_every_layer_runs_in_onnxruntime_as_in_nnkit(
    case: LayerCase, opset: int, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    model = case.make(rng)
    _randomize(model, rng)
    given = case.inputs(rng)
    axes = _batch_axes(case, len(given))
    inputs = [_resized(x, axis) for x, axis in zip(given, axes, strict=True)]
    samples = [
        x.shape if axis is None else x.shape[:axis] + x.shape[axis + 1 :]
        for x, axis in zip(inputs, axes, strict=True)
    ]
    path = tmp_path / "layer.onnx"
    nnkit.onnx.export(
        model, path, samples, opset=opset, batch_axis=axes,
        input_dtype=[None if x.dtype.kind == "f" else x.dtype for x in inputs],
    )
    _check_against_nnkit(model, inputs, path)


def test_the_sequence_cases_are_covered() -> None:
    """Only the cases with option flags among their inputs are left out of the table."""
    left_out = {case.name for case in SEQUENCES} - {case.name for case in EXPORTABLE}
    assert left_out == {
        "MultiheadAttention-masks-per_head", "MultiheadAttention-self-causal-fully_masked_row"
    }


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", MODELS, ids=ids(MODELS))
def test_every_kind_of_model_runs_in_onnxruntime_as_in_nnkit(
    case: ModelCase, opset: int, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    model = case.make(rng)
    _randomize(model, rng)
    shapes = [
        (*shape[: case.batch_axis], BATCH, *shape[case.batch_axis :])
        for shape in case.sample_shapes
    ]
    inputs = [
        rng.integers(0, 7, size=shape) if i in case.integer_inputs
        else rng.normal(size=shape).astype(np.float32)
        for i, shape in enumerate(shapes)
    ]
    path = tmp_path / "model.onnx"
    proto = nnkit.onnx.export(
        model, path, list(case.sample_shapes), opset=opset, batch_axis=case.batch_axis,
        input_dtype=["int64" if i in case.integer_inputs else None
                     for i in range(len(case.sample_shapes))],
    )
    assert onnx.load(str(path)) == proto
    onnx.checker.check_model(str(path), full_check=True)
    _check_against_nnkit(model, inputs, path)


def _sinusoidal(rng: np.random.Generator) -> nnkit.Module:
    """Time-major attention with a padding mask and fixed positions, over any length."""
    return nnkit.Graph(
        inputs=["x", "padding"],
        nodes={
            "pos": (nnkit.SinusoidalPositionalEncoding(4, max_len=16), "x"),
            "attn": (nnkit.MultiheadAttention(4, 2, rng=rng), ["pos", "pos", "pos", "padding"]),
            "out": (nnkit.SequenceOutput(), ["attn:0"]),
        },
        outputs=["out", "attn:1"],
    )


VARIABLE_LENGTH = [
    (case.name, case.make, case.sample_shapes, case.integer_inputs, (), case.batch_axis)
    for case in MODELS if case.name in {"GRU", "LSTM-graph", "transformer"}
] + [("attention-padding", _sinusoidal, ((9, 4), (9,)), (), (1,), [1, 0])]


@pytest.mark.parametrize(
    "make, shapes, integer_inputs, masks, batch_axis",
    [case[1:] for case in VARIABLE_LENGTH],
    ids=[case[0] for case in VARIABLE_LENGTH],
)
def test_a_variable_length_runs_at_every_length(
    make: Callable[[np.random.Generator], nnkit.Module],
    shapes: tuple[tuple[int, ...], ...],
    integer_inputs: tuple[int, ...],
    masks: tuple[int, ...],
    batch_axis: int | list[int],
    tmp_path: Path,
) -> None:
    """``None`` as the length: one file for every length, the dimension ``"length"``."""
    rng = np.random.default_rng(5)
    model = make(rng)
    _randomize(model, rng)
    axes = batch_axis if isinstance(batch_axis, list) else [batch_axis] * len(shapes)
    variable = [(None, *shape[1:]) for shape in shapes]  # the first axis is the length
    path = tmp_path / "variable.onnx"
    proto = nnkit.onnx.export(
        model, path, variable, batch_axis=axes,
        input_dtype=[
            "int64" if i in integer_inputs else "bool" if i in masks else None
            for i in range(len(shapes))
        ],
    )
    assert all("length" in _dims(i) and "batch" in _dims(i) for i in proto.graph.input)
    for length in (7, 3):
        inputs = []
        for i, (shape, axis) in enumerate(zip(shapes, axes, strict=True)):
            full = (length, *shape[1:])
            full = (*full[:axis], BATCH, *full[axis:])
            if i in integer_inputs:
                inputs.append(rng.integers(0, 7, size=full))
            elif i in masks:  # a key padding mask (N, S): the last two keys of sample 1
                mask = np.zeros(full, dtype=bool)
                mask[1, -2:] = True
                inputs.append(mask)
            else:
                inputs.append(rng.normal(size=full).astype(np.float32))
        _check_against_nnkit(model, inputs, path)


def _dims(value_info: Any) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_the_batch_axis_is_dynamic_and_names_follow_the_model(tmp_path: Path) -> None:
    model = _two_output_graph(np.random.default_rng(0))
    proto = nnkit.onnx.export(model, tmp_path / "g.onnx", [(2, 6), (3,)])
    assert [i.name for i in proto.graph.input] == ["image", "extra"]
    assert [o.name for o in proto.graph.output] == ["logits", "aux"]
    assert [_dims(i) for i in proto.graph.input] == [["batch", 2, 6], ["batch", 3]]
    assert [_dims(o) for o in proto.graph.output] == [["batch", 3], ["batch", 4, 6]]
    # weights keep their state-dict names where they are stored as they are
    initializers = {i.name for i in proto.graph.initializer}
    assert set(model.state_dict()) <= initializers
    # a tuple-valued output (an LSTM's (h_n, c_n)) is one graph output per element
    proto = nnkit.onnx.export(_lstm(np.random.default_rng(0)), tmp_path / "l.onnx", (5, 3))
    assert [o.name for o in proto.graph.output] == ["head", "lstm:1.0", "lstm:1.1"]
    state = [2, "batch", 6]
    assert [_dims(o) for o in proto.graph.output] == [["batch", 2], state, state]
    proto = nnkit.onnx.export(nnkit.LSTM(3, 4), tmp_path / "lstm.onnx", (None, 3), batch_axis=1)
    assert [_dims(i) for i in proto.graph.input] == [["length", "batch", 3]]
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1", "output_2"]
    assert [_dims(o) for o in proto.graph.output] == [
        ["length", "batch", 4], [1, "batch", 4], [1, "batch", 4]
    ]


def test_fixed_batch_export_declares_batch_one_and_runs_on_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = _mlp(rng)
    path = tmp_path / "fixed.onnx"
    proto = nnkit.onnx.export(model, path, (6,), dynamic_batch=False)
    assert _dims(proto.graph.input[0]) == [1, 6] and _dims(proto.graph.output[0]) == [1, 4]
    x = rng.normal(size=(1, 6)).astype(np.float32)
    _check_against_nnkit(model, [x], path)
    with pytest.raises(Exception, match="Got invalid dimensions for input"):
        _run(path, [rng.normal(size=(3, 6)).astype(np.float32)])


def test_state_dict_names_and_float64(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    model = nnkit.Sequential(
        nnkit.Dense(3, 5, rng=rng, dtype=np.float64), nnkit.BatchNorm1d(5, dtype=np.float64),
        nnkit.GELU(), nnkit.LayerNorm(5, dtype=np.float64), nnkit.Dense(5, 2, rng=rng,
                                                                       dtype=np.float64),
    )
    _randomize(model, rng)
    path = tmp_path / "f64.onnx"
    proto = nnkit.onnx.export(model, path, 3)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    names = {i.name for i in proto.graph.initializer}
    assert set(model.state_dict()) - {"1.num_batches_tracked"} <= names
    x = rng.normal(size=(BATCH, 3))
    expected = model.eval()(x)
    np.testing.assert_allclose(_run(path, [x])[0], expected, rtol=1e-12, atol=1e-12)


def test_an_identity_model_gets_an_identity_node(tmp_path: Path) -> None:
    path = tmp_path / "id.onnx"
    proto = nnkit.onnx.export(nnkit.Sequential(nnkit.Dropout(0.5)), path, (2, 3))
    assert [n.op_type for n in proto.graph.node] == ["Identity"]
    x = np.arange(BATCH * 6, dtype=np.float32).reshape(BATCH, 2, 3)
    np.testing.assert_array_equal(_run(path, [x])[0], x)


def test_export_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    model = _cnn(rng)
    x = rng.normal(size=(4, 3, 12, 12)).astype(np.float32)
    y = model(x)  # training mode: batch statistics, dropout; backward refers to this forward
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = model.backward(dy)
    state, generators = model.state_dict(), model.generator_state()
    nnkit.onnx.export(model, tmp_path / "cnn.onnx", (3, 12, 12))
    assert all(m.training for m in model.modules())
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in state.items())
    assert model.generator_state() == generators
    np.testing.assert_array_equal(model.backward(dy), dx)  # the caches of that forward


def test_importing_nnkit_does_not_import_onnx(nnkit_env: dict[str, str]) -> None:
    code = (
        "import sys, nnkit, nnkit.onnx, nnkit.interop\n"
        "print([m for m in ('onnx', 'onnxruntime', 'torch', 'safetensors') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=nnkit_env, check=True
    )
    assert result.stdout.strip() == "[]"


def test_without_onnx_export_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "\.\[onnx\]"'):
        nnkit.onnx.export(nnkit.ReLU(), tmp_path / "x.onnx", 3)
    assert not (tmp_path / "x.onnx").exists()


# -- errors --------------------------------------------------------------------------------------
@pytest.fixture
def registry() -> Iterator[None]:
    """Restore the converter registry after a test that registers converters."""
    saved = dict(nnkit.onnx._context._REGISTRY)
    yield
    nnkit.onnx._context._REGISTRY.clear()
    nnkit.onnx._context._REGISTRY.update(saved)


@pytest.mark.parametrize(
    "model, where",
    [
        (lambda: nnkit.Sequential(nnkit.Dense(4, 4), Center(4)), '"1" (Center)'),
        (
            lambda: nnkit.Sequential(
                nnkit.Residual(nnkit.Sequential(nnkit.Dense(4, 4), nnkit.ReLU(), Center(4)))
            ),
            '"0.body.2" (Center)',
        ),
        (
            lambda: nnkit.Graph("x", {"a": (nnkit.Tanh(), "x"), "c": (Center(4), "a")}, "c"),
            '"c" (Center)',
        ),
        (lambda: Center(4), "the model (Center)"),
    ],
    ids=["sequential", "nested", "graph", "root"],
)
def test_a_module_without_converter_is_named(
    model: Callable[[], nnkit.Module], where: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.onnx"
    with pytest.raises(ExportError) as info:
        nnkit.onnx.export(model(), path, 4)
    message = str(info.value)
    assert f"cannot export {where}" in message
    assert "no ONNX converter is registered for Center" in message
    assert "nnkit.onnx.register_converter(Center, fn)" in message
    assert not path.exists()


class _Scaled(nnkit.Dense):
    """A Dense that doubles its output: its forward differs, so Dense's converter is wrong."""

    def forward(self, x: Any) -> Any:
        return 2 * super().forward(x)


class _Block(nnkit.Sequential):
    """A Sequential that builds its own layers: the same forward as Sequential."""

    def __init__(self, width: int, rng: np.random.Generator | None = None) -> None:
        super().__init__(nnkit.Dense(width, width, rng=rng), nnkit.Tanh())


def test_subclasses_use_their_base_converter_unless_they_override_forward(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    block = nnkit.Sequential(_Block(3, rng), _Block(3, rng))
    path = tmp_path / "block.onnx"
    nnkit.onnx.export(block, path, 3)
    _check_against_nnkit(block, [rng.normal(size=(BATCH, 3)).astype(np.float32)], path)
    with pytest.raises(ExportError, match=r'"1" \(_Scaled\): _Scaled subclasses Dense but '
                                          "overrides forward"):
        nnkit.onnx.export(nnkit.Sequential(nnkit.ReLU(), _Scaled(3, 2)), path, 3)


def _center(ctx: ExportContext, module: Center, inputs: tuple[Value, ...]) -> str:
    (x,) = inputs
    return ctx.op("Sub", x, ctx.constant(module.running_mean.data, "running_mean"))


def test_a_registered_converter_exports_a_custom_layer(registry: None, tmp_path: Path) -> None:
    assert nnkit.onnx.register_converter(Center, _center) is _center
    rng = np.random.default_rng(4)
    model = nnkit.Sequential(nnkit.Dense(4, 4, rng=rng), Center(4), nnkit.ReLU())
    model[1].running_mean.data[...] = rng.normal(size=4)
    path = tmp_path / "center.onnx"
    proto = nnkit.onnx.export(model, path, 4)
    assert "1.running_mean" in {i.name for i in proto.graph.initializer}
    _check_against_nnkit(model, [rng.normal(size=(BATCH, 4)).astype(np.float32)], path)


def test_register_converter_as_decorator_and_its_checks(registry: None) -> None:
    @nnkit.onnx.register_converter(Center)
    def convert(ctx: ExportContext, module: Center, inputs: tuple[Value, ...]) -> str:
        return inputs[0].name

    assert nnkit.onnx._context.find_converter(Center)[0] is convert
    with pytest.raises(ValueError, match="Center already has an ONNX converter"):
        nnkit.onnx.register_converter(Center, _center)
    nnkit.onnx.register_converter(Center, _center, replace=True)
    assert nnkit.onnx._context.find_converter(Center)[0] is _center
    with pytest.raises(TypeError, match="Module subclass"):
        nnkit.onnx.register_converter(int, _center)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="must be callable"):
        nnkit.onnx.register_converter(Center, "convert", replace=True)  # type: ignore[call-overload]


def test_a_converter_with_the_wrong_outputs_is_named(registry: None, tmp_path: Path) -> None:
    def two(ctx: ExportContext, module: Center, inputs: tuple[Value, ...]) -> list[str]:
        return [inputs[0].name, inputs[0].name]

    nnkit.onnx.register_converter(Center, two)
    with pytest.raises(ExportError, match=r'"1" \(Center\): its converter returned 2 output'):
        nnkit.onnx.export(nnkit.Sequential(nnkit.Tanh(), Center(3)), tmp_path / "x.onnx", 3)


def test_an_invalid_graph_fails_the_checker_with_a_clear_error(
    registry: None, tmp_path: Path
) -> None:
    def broken(ctx: ExportContext, module: Center, inputs: tuple[Value, ...]) -> str:
        return ctx.op("Relu", inputs[0], inputs[0])  # Relu takes one input

    nnkit.onnx.register_converter(Center, broken)
    path = tmp_path / "broken.onnx"
    with pytest.raises(ExportError, match=r"fails onnx\.checker"):
        nnkit.onnx.export(Center(3), path, 3)
    assert not path.exists()


def test_an_error_inside_a_converter_gets_a_note(registry: None, tmp_path: Path) -> None:
    def failing(ctx: ExportContext, module: Center, inputs: tuple[Value, ...]) -> str:
        raise KeyError("oops")

    nnkit.onnx.register_converter(Center, failing)
    with pytest.raises(KeyError) as info:
        nnkit.onnx.export(nnkit.Sequential(nnkit.Sequential(Center(3))), tmp_path / "x.onnx", 3)
    assert info.value.__notes__ == ['raised while exporting "0.0" (Center) to ONNX']


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"opset": 16}, ValueError, "opset must be between 17"),
        ({"opset": 10_000}, ValueError, "opset must be between 17"),
        ({"opset": True}, TypeError, "opset must be an int"),
        ({"dynamic_batch": "yes"}, TypeError, "dynamic_batch must be True or False"),
        ({"input_shape": (4, 0)}, ValueError, "sizes >= 1"),
        ({"input_shape": "4"}, TypeError, "input_shape must be one sample's shape"),
        ({"input_dtype": "float64"}, ValueError, "differs from the model's float32"),
        ({"input_dtype": ["int64", None]}, ValueError, "2 dtypes for 1 input"),
        ({"input_dtype": "complex64"}, TypeError, "floating, integer or bool dtype"),
        ({"batch_axis": 2}, ValueError, "batch_axis 2 does not fit"),
        ({"batch_axis": [0, 1]}, ValueError, "2 axes for 1 input"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, match: str, tmp_path: Path) -> None:
    arguments: dict[str, Any] = {"input_shape": 4, **kwargs}
    with pytest.raises(error, match=match):
        nnkit.onnx.export(nnkit.Dense(4, 2), tmp_path / "x.onnx", **arguments)


def test_a_model_that_cannot_run_on_the_shape_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4\)") as info:
        nnkit.onnx.export(nnkit.Sequential(nnkit.Dense(4, 2)), tmp_path / "x.onnx", 5)
    assert any("tracing it for ONNX export" in note for note in info.value.__notes__)
    with pytest.raises(TypeError, match="integer indices") as info_ids:
        nnkit.onnx.export(nnkit.Embedding(5, 2), tmp_path / "x.onnx", 3)
    assert any("input_dtype='int64'" in note for note in info_ids.value.__notes__)


def test_not_a_module(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="takes an nnkit Module"):
        nnkit.onnx.export(lambda x: x, tmp_path / "x.onnx", 3)  # type: ignore[arg-type]


class _SelfAttention(nnkit.Module):
    """A user's container calling attention with options: by keyword, and positionally."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.attn = nnkit.MultiheadAttention(4, 2, batch_first=True, rng=rng)
        self.quiet = nnkit.MultiheadAttention(4, 2, batch_first=True, rng=rng)

    def forward(self, x: Any) -> Any:
        y, weights = self.attn(x, x, x, need_weights=True, average_attn_weights=False)
        z, _ = self.quiet(y, y, y, None, False)  # key_padding_mask=None, need_weights=False
        return z, weights


def _self_attention(
    ctx: ExportContext, module: _SelfAttention, inputs: tuple[ValueTree, ...]
) -> Any:
    (x,) = inputs
    y, weights = ctx.convert(module.attn, [x, x, x])  # the options come from the trace
    z, _ = ctx.convert(module.quiet, [y, y, y])
    return z, weights


def test_options_a_container_passes_are_taken_from_the_trace(
    registry: None, tmp_path: Path
) -> None:
    nnkit.onnx.register_converter(_SelfAttention, _self_attention)
    rng = np.random.default_rng(6)
    model = _SelfAttention(rng)
    path = tmp_path / "attention.onnx"
    proto = nnkit.onnx.export(model, path, (None, 4))
    assert [_dims(o) for o in proto.graph.output] == [
        ["batch", "length", 4], ["batch", 2, "length", "length"]  # per-head weights
    ]
    _check_against_nnkit(model, [rng.normal(size=(BATCH, 6, 4)).astype(np.float32)], path)
