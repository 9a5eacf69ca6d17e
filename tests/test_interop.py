"""nnkit.interop without torch: key mapping, the Dense transpose, checks before any change,
lossless dtype conversion, tensor-like values and safetensors paths.

The comparisons with real torch models are in tests/test_torch_interop.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit.interop import load_torch_state_dict, to_torch_state_dict


def _model(rng: np.random.Generator | None = None) -> nnkit.Module:
    rng = rng or np.random.default_rng(0)
    return nnkit.Sequential(
        nnkit.Dense(3, 4, rng=rng),
        nnkit.BatchNorm1d(4),
        nnkit.ReLU(),
        nnkit.Residual(nnkit.Sequential(nnkit.Dense(4, 4, rng=rng, bias=False), nnkit.Tanh())),
        nnkit.Dense(4, 2, rng=rng),
    )


def test_dense_weights_are_transposed_and_everything_else_kept() -> None:
    model = _model()
    state = model.state_dict()
    torch_state = to_torch_state_dict(model)
    assert list(torch_state) == list(state)  # PyTorch's names are nnkit's
    for name, value in state.items():
        dense_weight = name in {"0.weight", "3.body.0.weight", "4.weight"}
        expected = value.T if dense_weight else value
        np.testing.assert_array_equal(torch_state[name], expected)
        assert torch_state[name].dtype == value.dtype
        assert torch_state[name].flags.c_contiguous
    assert torch_state["0.weight"].shape == (4, 3)  # Linear's (out, in)


def test_round_trip_is_exact() -> None:
    source = _model(np.random.default_rng(1))
    source[1].running_mean.data[...] = [0.5, -1.0, 2.0, 0.25]
    source[1].num_batches_tracked.data[...] = 7
    target = _model(np.random.default_rng(2))
    load_torch_state_dict(target, to_torch_state_dict(source))
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value)


class _Tensor:
    """A stand-in for a torch tensor: ``.numpy()``, and failing as one that requires grad."""

    def __init__(self, array: Any, requires_grad: bool = False) -> None:
        self.array, self.requires_grad = np.asarray(array), requires_grad

    def numpy(self) -> Any:
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad")
        return self.array


class _ArrayLike:
    def __init__(self, array: Any) -> None:
        self.array = np.asarray(array)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return self.array


def test_tensor_like_values_are_read_through_numpy_or_array() -> None:
    source = _model(np.random.default_rng(3))
    state: dict[str, Any] = {}
    for i, (name, value) in enumerate(to_torch_state_dict(source).items()):
        state[name] = _Tensor(value) if i % 2 else _ArrayLike(value)
    target = _model()
    load_torch_state_dict(target, state)
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value)


def _unchanged(model: nnkit.Module, before: dict[str, Any]) -> bool:
    return all(np.array_equal(model.state_dict()[k], v) for k, v in before.items())


def test_every_mismatch_is_named_and_nothing_changes() -> None:
    model = _model()
    before = model.state_dict()
    state: dict[str, Any] = dict(to_torch_state_dict(_model(np.random.default_rng(5))))
    del state["4.bias"]
    state["extra.weight"] = np.zeros(2, np.float32)
    state["0.weight"] = state["0.weight"].T  # nnkit's (in, out), not Linear's
    state["3.body.0.weight"] = np.zeros((5, 4), np.float32)
    state["0.bias"] = _Tensor(state["0.bias"], requires_grad=True)
    state["1.weight"] = "not an array"
    state["4.weight"] = state["4.weight"].astype(np.float64) + 1e-10  # not float32 numbers
    with pytest.raises(nnkit.StateMismatchError) as info:
        load_torch_state_dict(model, state)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    for part in (
        "nothing was changed",
        "unexpected keys: extra.weight",
        "missing keys: 4.bias",
        "0.weight: shape (3, 4) in the state, (4, 3) expected from the model (nnkit's own layout",
        "3.body.0.weight: shape (5, 4) in the state, (4, 4) expected",
        "0.bias: the _Tensor cannot be read as a NumPy array (RuntimeError: Can't call numpy()",
        "1.weight: expected an array",
        "4.weight: dtype float64 in the state, float32 in the model, and 8 of its 8 values would "
        "change",
    ):
        assert part in message, part
    assert _unchanged(model, before)


def test_lossless_dtypes_are_converted() -> None:
    source = _model(np.random.default_rng(6))
    state = {
        k: v.astype(np.float64) if v.dtype == np.float32 else v.astype(np.int32)
        for k, v in to_torch_state_dict(source).items()
    }
    target = _model()
    load_torch_state_dict(target, state)
    for name, value in source.state_dict().items():
        loaded = target.state_dict()[name]
        assert loaded.dtype == value.dtype
        np.testing.assert_array_equal(loaded, value)


def test_non_strict_loads_what_is_there() -> None:
    source, target = _model(np.random.default_rng(7)), _model()
    before = target.state_dict()
    state = {k: v for k, v in to_torch_state_dict(source).items() if k.startswith("0.")}
    state["head.weight"] = np.zeros(3, np.float32)
    load_torch_state_dict(target, state, strict=False)
    after = target.state_dict()
    np.testing.assert_array_equal(after["0.weight"], source.state_dict()["0.weight"])
    np.testing.assert_array_equal(after["4.weight"], before["4.weight"])
    with pytest.raises(nnkit.StateMismatchError, match=r"0\.bias: shape"):
        load_torch_state_dict(target, {"0.bias": np.zeros(7, np.float32)}, strict=False)


def test_not_a_mapping() -> None:
    class TorchModel:
        def state_dict(self) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match=r"pass torch_model\.state_dict\(\)"):
        load_torch_state_dict(_model(), TorchModel())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes an nnkit Module"):
        to_torch_state_dict({})  # type: ignore[arg-type]


def test_a_safetensors_path_is_read(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    source = _model(np.random.default_rng(8))
    path = tmp_path / "weights.safetensors"
    st.save_file(to_torch_state_dict(source), str(path))  # no nnkit checksum: another tool's
    target = _model()
    load_torch_state_dict(target, path)
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value)
    load_torch_state_dict(target, str(path))


def test_interop_and_onnx_are_attributes_after_a_bare_import() -> None:
    assert nnkit.interop.__name__ == "nnkit.interop"
    assert nnkit.onnx.__name__ == "nnkit.onnx"  # without importing onnx (tests/test_onnx.py)
