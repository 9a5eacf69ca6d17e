"""Tests for nnkit.serialization: save/load, weights, the registry, safety and faults.

Checkpoints and resuming training are tested in test_checkpoint.py.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cases import LAYERS

import nnkit
from nnkit import serialization as ser
from nnkit.serialization import archive

# -- helpers ---------------------------------------------------------------------------------


def state_equal(a: nnkit.Module, b: nnkit.Module) -> bool:
    """Same parameter names, shapes, dtypes and bits."""
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(
        sa[k].dtype == sb[k].dtype
        and sa[k].shape == sb[k].shape
        and sa[k].tobytes() == sb[k].tobytes()
        for k in sa
    )


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def write_entries(
    path: Path, items: dict[str, bytes], compression: int = zipfile.ZIP_STORED
) -> None:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in items.items():
            z.writestr(name, data)


def edit_header(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    items = entries(path)
    header = json.loads(items["header.json"])
    edit(header)
    items["header.json"] = json.dumps(header).encode()
    write_entries(path, items)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def small_model(seed: int = 0, dtype: Any = np.float32) -> nnkit.Sequential:
    rng = np.random.default_rng(seed)
    return nnkit.Sequential(
        nnkit.Dense(3, 4, rng=rng, dtype=dtype),
        nnkit.Tanh(),
        nnkit.Dense(4, 2, rng=rng, dtype=dtype),
    )


# -- custom modules (registered under test-specific names) ----------------------------------


@ser.register_module(name="test_serialization.Scale")
class Scale(nnkit.Module):
    """y = x * weight, a per-feature scale with a config and a parameter (no dtype config)."""

    def __init__(self, features: int, init: float = 1.0) -> None:
        super().__init__()
        self.features, self.init = features, init
        self.weight = nnkit.Parameter(np.full(features, init, dtype=np.float32))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return x * self.weight.data

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self.weight.grad += (grad_out * self._x).sum(axis=0)
        return grad_out * self.weight.data

    def get_config(self) -> dict[str, Any]:
        return {"features": self.features, "init": self.init}


@ser.register_module(name="test_serialization.Block")
class Block(nnkit.Module):
    """A composite that builds its own children from its config: Dense -> act -> Dense + skip."""

    def __init__(self, features: int, hidden: int, slope: float = 0.01) -> None:
        super().__init__()
        self.features, self.hidden, self.slope = features, hidden, slope
        self.inner = nnkit.Dense(features, hidden)
        self.act = nnkit.LeakyReLU(slope)
        self.outer = nnkit.Dense(hidden, features)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x + self.outer(self.act(self.inner(x)))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        inner: np.ndarray = self.inner.backward(self.act.backward(self.outer.backward(grad_out)))
        return grad_out + inner

    def get_config(self) -> dict[str, Any]:
        return {"features": self.features, "hidden": self.hidden, "slope": self.slope}


@ser.register_module(name="test_serialization.Tied")
class Tied(nnkit.Module):
    """A composite that reaches one Dense through two attributes (used once per forward)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.first = nnkit.Dense(features, features)
        self.second = self.first  # an alias, e.g. kept for an older attribute name

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.first(x)

    def get_config(self) -> dict[str, Any]:
        return {"features": self.features}


@ser.register_module(name="test_serialization.FromConfig")
class FromConfig(nnkit.Module):
    """Rebuilt through a from_config classmethod (its config is not its constructor's kwargs)."""

    def __init__(self, shape: tuple[int, int]) -> None:
        super().__init__()
        self.shape = shape
        self.weight = nnkit.Parameter(np.zeros(shape))

    def get_config(self) -> dict[str, Any]:
        return {"rows": self.shape[0], "cols": self.shape[1], "tag": (1, 2.5, None)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FromConfig:
        assert config["tag"] == (1, 2.5, None)  # tuples come back as tuples
        return cls((config["rows"], config["cols"]))


class Unregistered(nnkit.Module):
    pass


def custom_model() -> nnkit.Sequential:
    rng = np.random.default_rng(1)
    model = nnkit.Sequential(
        nnkit.Dense(3, 3, rng=rng),
        Block(3, 5, slope=0.2),
        Scale(3, init=0.5),
        Tied(3),
        FromConfig((2, 2)),
    )
    for param in model.parameters():  # values no constructor would produce
        param.data[...] = rng.standard_normal(param.shape)
    return model


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", LAYERS, ids=lambda c: c.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_builtin_layer_round_trips(case: Any, dtype: Any, tmp_path: Path) -> None:
    model = case.make(np.random.default_rng(0)).astype(dtype)
    if dtype is np.float64:
        model.eval()  # the mode comes back too
    ser.save(model, tmp_path / "m.npz")
    loaded = ser.load(tmp_path / "m.npz")
    assert loaded is not model and repr(loaded) == repr(model)
    assert [type(m) for m in loaded.modules()] == [type(m) for m in model.modules()]
    assert [m.training for m in loaded.modules()] == [m.training for m in model.modules()]
    assert state_equal(loaded, model)
    assert loaded.generator_state() == model.generator_state()
    xs = [
        x.astype(dtype) if x.dtype.kind == "f" else x for x in case.inputs(np.random.default_rng(1))
    ]
    y, y_loaded = model(*xs), loaded(*xs)
    outputs = (y, y_loaded) if isinstance(y, tuple) else ((y,), (y_loaded,))
    for a, b in zip(*outputs, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_every_builtin_class_is_registered(tmp_path: Path) -> None:
    from nnkit.serialization.architecture import _BY_CLASS

    for name in nnkit.layers.__all__:
        assert _BY_CLASS[getattr(nnkit.layers, name)] == name
    assert _BY_CLASS[nnkit.Sequential] == "Sequential"


def test_nested_mixed_dtype_round_trip(tmp_path: Path) -> None:
    """(A module shared within the tree is covered by ``Tied`` in custom_model: Sequential
    refuses the same module twice.)"""
    rng = np.random.default_rng(2)
    model = nnkit.Sequential(
        nnkit.Sequential(nnkit.Dense(3, 4, rng=rng, dtype=np.float64), nnkit.ReLU()),
        nnkit.Dense(4, 4, rng=rng, dtype=np.float64),
        nnkit.Tanh(),
        nnkit.Sequential(nnkit.Dense(4, 2, rng=rng, bias=False)),
    )
    model[3].eval()
    ser.save(model, tmp_path / "m.npz")
    loaded = ser.load(tmp_path / "m.npz")
    assert loaded[0][0] is not loaded[1]
    assert state_equal(loaded, model) and repr(loaded) == repr(model)
    assert [m.training for m in loaded.modules()] == [m.training for m in model.modules()]


@ser.register_module(name="test_serialization.WithHead")
class WithHead(nnkit.Sequential):
    """A Sequential subclass that builds a module of its own besides its layers."""

    def __init__(self, *layers: nnkit.Module) -> None:
        super().__init__(*layers)
        self.head = nnkit.Dense(2, 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.head(super().forward(x))


def test_sequential_subclass_with_its_own_module_round_trips(tmp_path: Path) -> None:
    model = WithHead(nnkit.Dense(3, 2), nnkit.Tanh())
    ser.save(model, tmp_path / "m.npz")
    loaded = ser.load(tmp_path / "m.npz")
    assert isinstance(loaded, WithHead) and len(loaded) == 2
    assert state_equal(loaded, model)


def test_block_converted_to_float64_round_trips(tmp_path: Path) -> None:
    model = nnkit.Sequential(Block(3, 4, 0.1)).astype(np.float64)
    ser.save(model, tmp_path / "m.npz")
    loaded = ser.load(tmp_path / "m.npz")
    assert all(p.dtype == np.float64 for p in loaded.parameters())
    assert state_equal(loaded, model)


@ser.register_module(name="test_serialization.NoConfig")
class NoConfig(nnkit.Module):
    """Needs an argument but does not say so in get_config()."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k


def test_save_refuses_a_module_load_could_not_construct(tmp_path: Path) -> None:
    with pytest.raises(ser.SerializationError, match=r"NoConfig\(\*\*config\) with config \{\}"):
        ser.save(nnkit.Sequential(NoConfig(3)), tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_tied_weights_stay_tied(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    first, second = nnkit.Dense(3, 3, rng=rng), nnkit.Dense(3, 3, rng=rng)
    second.weight = first.weight
    model = nnkit.Sequential(first, nnkit.Tanh(), nnkit.Sequential(second))
    ser.save(model, tmp_path / "m.npz")
    loaded = ser.load(tmp_path / "m.npz")
    assert loaded[2][0].weight is loaded[0].weight
    assert loaded[2][0].bias is not loaded[0].bias
    assert state_equal(loaded, model)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    assert loaded(x).tobytes() == model(x).tobytes()


def test_custom_registered_modules_round_trip(tmp_path: Path) -> None:
    model = custom_model()
    ser.save(model, tmp_path / "m.npz")
    loaded = ser.load(tmp_path / "m.npz")
    assert [type(m) for m in loaded.modules()] == [type(m) for m in model.modules()]
    assert loaded[1].get_config() == {"features": 3, "hidden": 5, "slope": 0.2}
    assert loaded[3].first is loaded[3].second
    assert state_equal(loaded, model)
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    assert loaded[:4](x).tobytes() == model[:4](x).tobytes()


def test_load_keeps_the_saved_dtype_when_the_config_has_none(tmp_path: Path) -> None:
    model = nnkit.Sequential(Scale(3, init=0.25)).astype(np.float64)
    ser.save(model, tmp_path / "m.npz")
    loaded = ser.load(tmp_path / "m.npz")
    assert loaded[0].weight.dtype == np.float64 and loaded[0].weight.grad.dtype == np.float64
    assert state_equal(loaded, model)


def test_the_file_is_a_deterministic_npz(tmp_path: Path) -> None:
    model = small_model()
    ser.save(model, tmp_path / "a.npz")
    ser.save(model, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        assert npz["weights/0.weight"].tobytes() == model[0].weight.data.tobytes()
        assert json.loads(npz["header.json"])["version"] == ser.FORMAT_VERSION


# -- weights ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_round_trip(dtype: Any, tmp_path: Path) -> None:
    model = small_model(0, dtype)
    ser.save_weights(model, tmp_path / "w.npz")
    state = ser.load_weights(tmp_path / "w.npz")
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    other = small_model(1, dtype)
    assert not state_equal(other, model)
    assert ser.load_weights(tmp_path / "w.npz", other).keys() == state.keys()
    assert state_equal(other, model)
    state["0.weight"][0, 0] = 123  # the returned arrays are writable copies
    assert model[0].weight.data[0, 0] != 123


def test_weights_from_a_dict_of_any_numeric_arrays(tmp_path: Path) -> None:
    state = {
        "a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "b/c": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "d": np.array(1 + 2j, dtype=np.complex64),
        "e": np.zeros((0, 3), dtype=np.float16),
        "f": np.array([True, False]),
        "g": np.arange(4.0, dtype=">f8"),
    }
    ser.save_weights(state, tmp_path / "w.npz")
    loaded = ser.load_weights(tmp_path / "w.npz")
    for key, array in state.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape
        assert np.array_equal(loaded[key], array)


def test_load_weights_reads_model_and_checkpoint_files(tmp_path: Path) -> None:
    model = small_model()
    ser.save(model, tmp_path / "m.npz")
    ser.save_checkpoint(tmp_path / "c.npz", model=model, extra={"a": np.ones(2)})
    for name in ("m.npz", "c.npz"):
        target = small_model(5)
        ser.load_weights(tmp_path / name, target)
        assert state_equal(target, model)


def test_a_file_of_another_kind_names_the_right_function(tmp_path: Path) -> None:
    ser.save_weights(small_model(), tmp_path / "w.npz")
    with pytest.raises(ser.SerializationError, match=r"weights file.*nnkit\.load_weights"):
        ser.load(tmp_path / "w.npz")
    with pytest.raises(ser.SerializationError, match=r"load_checkpoint does not read"):
        ser.load_checkpoint(tmp_path / "w.npz", model=small_model())


# -- the registry ----------------------------------------------------------------------------


def test_saving_an_unregistered_class_fails_before_writing(tmp_path: Path) -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 2), Unregistered())
    with pytest.raises(ser.UnregisteredModuleError, match=r"Unregistered.*register_module"):
        ser.save(model, tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []
    ser.save_weights(model, tmp_path / "w.npz")  # weights alone need no registration


def test_loading_an_unknown_class_names_it_and_how_to_register(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    ser.save(small_model(), path)
    edit_header(path, lambda h: h["architecture"]["children"][1][1].update({"class": "MyLayer"}))
    with pytest.raises(ser.UnregisteredModuleError) as info:
        ser.load(path)
    message = str(info.value)
    assert "'MyLayer'" in message and "@nnkit.register_module" in message and "'1'" in message


def test_register_module_forms_and_errors() -> None:
    class Local(nnkit.Module):
        pass

    assert ser.register_module(Local, name="test_serialization.Local") is Local
    assert ser.register_module(Local, name="test_serialization.Local") is Local  # idempotent
    with pytest.raises(ValueError, match=r"already registered as 'test_serialization\.Local'"):
        ser.register_module(Local, name="test_serialization.Other")
    with pytest.raises(ValueError, match=r"belongs to nnkit\.layers\.dense\.Dense"):

        @ser.register_module
        class Dense(nnkit.Module):
            pass

    with pytest.raises(TypeError, match="Module subclass"):
        ser.register_module(int)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="non-empty"):
        ser.register_module(Local, name="")

    # A class redefined under the same module and qualified name (a re-run notebook cell)
    # replaces the old one.
    def define() -> type[nnkit.Module]:
        @ser.register_module(name="test_serialization.Redefined")
        class Redefined(nnkit.Module):
            pass

        return Redefined

    first, second = define(), define()
    from nnkit.serialization.architecture import _BY_NAME

    assert first is not second and _BY_NAME["test_serialization.Redefined"] is second


@ser.register_module(name="test_serialization.Changed")
class Changed(nnkit.Module):
    def __init__(self, slope: float = 0.5) -> None:
        super().__init__()
        self.slope = slope
        self.act = nnkit.LeakyReLU(slope)

    def get_config(self) -> dict[str, Any]:
        return {"slope": self.slope}


@ser.register_module(name="test_serialization.BadConfig")
class BadConfig(nnkit.Module):
    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self.size = size

    def get_config(self) -> dict[str, Any]:
        return {"width": self.size}  # not the constructor's argument name


@ser.register_module(name="test_serialization.Wrapper")
class Wrapper(nnkit.Module):
    """Receives its child as an argument: not rebuildable from config (documented limit)."""

    def __init__(self, inner: nnkit.Module) -> None:
        super().__init__()
        self.inner = inner


@ser.register_module(name="test_serialization.Unstorable")
class Unstorable(nnkit.Module):
    def get_config(self) -> dict[str, Any]:
        return {"fn": print}


def _changed_child(model: nnkit.Module) -> None:
    model.act.negative_slope = 0.9  # type: ignore[attr-defined]


def test_a_class_that_does_not_rebuild_the_file_fails_loudly(tmp_path: Path) -> None:
    module = Changed()
    _changed_child(module)
    ser.save(nnkit.Sequential(module), tmp_path / "m.npz")
    match = r"built with config \{'negative_slope': 0\.5\}, but the file has .*0\.9"
    with pytest.raises(ser.StateMismatchError, match=match):
        ser.load(tmp_path / "m.npz")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (BadConfig, r"BadConfig\(\*\*config\) with config \{'width': 2\}"),
        (lambda: Wrapper(nnkit.ReLU()), r"Wrapper\(\*\*config\) with config"),
    ],
    ids=["config-not-constructor-args", "module-as-argument"],
)
def test_save_refuses_a_config_the_constructor_cannot_take(
    make: Callable[[], nnkit.Module], match: str, tmp_path: Path
) -> None:
    with pytest.raises(ser.SerializationError, match=match):
        ser.save(nnkit.Sequential(make()), tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_an_unstorable_config_fails_before_writing(tmp_path: Path) -> None:
    (tmp_path / "m.npz").write_bytes(b"old")
    with pytest.raises(ser.SerializationError, match=r"config of module '0'.*builtin_function"):
        ser.save(nnkit.Sequential(Unstorable()), tmp_path / "m.npz")
    assert (tmp_path / "m.npz").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


# -- faults ----------------------------------------------------------------------------------


class Payload:
    """Unpickling this creates ``marker``: the trace of executed code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def pickle_file(path: Path) -> None:
    path.write_bytes(pickle.dumps(Payload(path.parent / "MARKER")))


def object_array_entry(path: Path) -> None:
    items = entries(path)
    payload = np.array([Payload(path.parent / "MARKER")], dtype=object)
    items["weights/0.weight.npy"] = npy_bytes(payload, allow_pickle=True)
    write_entries(path, items)


def flip(offset_of: Callable[[bytes], int]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[offset_of(bytes(data))] ^= 0x20
        path.write_bytes(bytes(data))

    return mutate


def truncate(keep: Callable[[int], int]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: keep(len(data))])

    return mutate


def replace_entry(name: str, data: bytes) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        items = entries(path)
        items[name] = data
        write_entries(path, items)

    return mutate


def header_text(text: bytes) -> Callable[[Path], None]:
    return replace_entry("header.json", text)


def header_edit(edit: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    return lambda path: edit_header(path, edit)


def drop_entry(name: str) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        items = entries(path)
        del items[name]
        write_entries(path, items)

    return mutate


def compressed(path: Path) -> None:
    write_entries(path, entries(path), zipfile.ZIP_DEFLATED)


def lying_npy(path: Path) -> None:
    data = bytearray(npy_bytes(np.zeros((3, 4), np.float32)))
    header_end = data.index(b"\n") + 1
    data[:header_end] = data[:header_end].replace(b"(3, 4)", b"(9, 4)")
    replace_entry("weights/0.weight.npy", bytes(data))(path)


def big_header(path: Path) -> None:
    header = b'{"format": "nnkit", "pad": "' + b"x" * archive.MAX_HEADER_BYTES + b'"}'
    replace_entry("header.json", header)(path)


def weight_offset(data: bytes) -> int:
    """An offset inside the data of the first weight array."""
    return data.index(b"\x93NUMPY") + 128 + 2


FAULTS: list[tuple[str, Callable[[Path], None], type[Exception], str]] = [
    ("pickle-file", pickle_file, ser.UnsafeFileError, "pickle"),
    ("object-array", object_array_entry, ser.UnsafeFileError, "Python objects"),
    ("not-a-zip", lambda p: p.write_text("hello"), ser.CorruptFileError, "not a zip"),
    ("empty-file", lambda p: p.write_bytes(b""), ser.CorruptFileError, "not a zip"),
    ("single-npy", lambda p: p.write_bytes(npy_bytes(np.ones(3))), ser.CorruptFileError, ".npy"),
    ("truncated-half", truncate(lambda n: n // 2), ser.CorruptFileError, "truncated"),
    ("truncated-tail", truncate(lambda n: n - 1), ser.CorruptFileError, "truncated"),
    ("truncated-early", truncate(lambda n: 40), ser.CorruptFileError, "truncated"),
    ("flipped-weight-byte", flip(weight_offset), ser.CorruptFileError, "CRC"),
    ("flipped-header-byte", flip(lambda d: d.index(b'"format"') + 2), ser.CorruptFileError, "CRC"),
    ("oversized-header", big_header, ser.CorruptFileError, "more than the limit"),
    ("header-not-json", header_text(b"{not json"), ser.CorruptFileError, "not valid JSON"),
    ("header-not-utf8", header_text(b'{"a": "\xff"}'), ser.CorruptFileError, "not valid JSON"),
    ("header-is-a-list", header_text(b"[1, 2]"), ser.CorruptFileError, "not an nnkit file"),
    ("header-nan", header_text(b'{"format": "nnkit", "x": NaN}'), ser.CorruptFileError, "NaN"),
    (
        "header-overflow",
        header_text(b'{"format": "nnkit", "x": 1e999}'),
        ser.CorruptFileError,
        "overflows",
    ),
    (
        "header-duplicate-key",
        header_text(b'{"format": "nnkit", "format": "nnkit"}'),
        ser.CorruptFileError,
        "twice",
    ),
    ("header-deep", header_text(b"[" * 100_000 + b"]" * 100_000), ser.CorruptFileError, "JSON"),
    (
        "wrong-format-name",
        header_edit(lambda h: h.update(format="keras")),
        ser.CorruptFileError,
        "not an nnkit file",
    ),
    ("version-zero", header_edit(lambda h: h.update(version=0)), ser.CorruptFileError, "version"),
    (
        "version-string",
        header_edit(lambda h: h.update(version="1")),
        ser.CorruptFileError,
        "version",
    ),
    (
        "newer-version",
        header_edit(lambda h: h.update(version=7, nnkit_version="9.0")),
        ser.FormatVersionError,
        r"version 7 \(written by nnkit 9\.0\).*reads format version 2",
    ),
    (
        "newer-version-compressed",  # the version is read before the entries are judged
        lambda p: (header_edit(lambda h: h.update(version=3))(p), compressed(p)),
        ser.FormatVersionError,
        "format version 3",
    ),
    (
        "unknown-kind",
        header_edit(lambda h: h.update(kind="dataset")),
        ser.CorruptFileError,
        "unknown kind",
    ),
    (
        "unknown-header-key",
        header_edit(lambda h: h.update(surprise=1)),
        ser.CorruptFileError,
        "unexpected keys",
    ),
    ("missing-header-key", header_edit(lambda h: h.pop("weights")), ser.CorruptFileError, "lacks"),
    (
        "weights-not-names",
        header_edit(lambda h: h.update(weights=[1])),
        ser.CorruptFileError,
        "list of names",
    ),
    ("no-header", drop_entry("header.json"), ser.CorruptFileError, "no header.json"),
    ("missing-array", drop_entry("weights/0.bias.npy"), ser.CorruptFileError, "not in the archive"),
    (
        "unmentioned-array",
        replace_entry("weights/extra.npy", npy_bytes(np.ones(2))),
        ser.CorruptFileError,
        "does not mention",
    ),
    ("non-npy-entry", replace_entry("run.sh", b"rm -rf /"), ser.CorruptFileError, "neither"),
    ("compressed-entry", compressed, ser.CorruptFileError, "compressed"),
    ("npy-shape-lies", lying_npy, ser.CorruptFileError, "declares shape"),
    (
        "string-array",
        replace_entry("weights/0.bias.npy", npy_bytes(np.array(["a", "b"]))),
        ser.CorruptFileError,
        "dtype <U1",
    ),
    (
        "structured-array",
        replace_entry("weights/0.bias.npy", npy_bytes(np.zeros(2, dtype=[("a", "f4")]))),
        ser.CorruptFileError,
        "dtype",
    ),
    (
        "npy-bad-magic",
        replace_entry("weights/0.bias.npy", b"\x93NUMPX" + b"\0" * 100),
        ser.CorruptFileError,
        "damaged",
    ),
]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "model.npz"
    ser.save(small_model(), path)
    return path


@pytest.mark.parametrize(
    ("mutate", "error", "match"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
def test_a_bad_file_raises_a_typed_error_and_changes_nothing(
    mutate: Callable[[Path], None], error: type[Exception], match: str, saved: Path
) -> None:
    mutate(saved)
    target = small_model(seed=9)
    before = target.state_dict()
    for load in (ser.load, ser.load_weights, lambda p: ser.load_weights(p, target)):
        with pytest.raises(error, match=match) as info:
            load(saved)
        assert isinstance(info.value, ser.SerializationError)
    assert all(before[k].tobytes() == v.tobytes() for k, v in target.state_dict().items())
    assert not (saved.parent / "MARKER").exists()


def test_the_pickle_payload_would_leave_a_trace(tmp_path: Path) -> None:
    """The fault cases above are meaningful: unpickling these payloads does run code."""
    pickle_file(tmp_path / "p.pkl")
    pickle.loads((tmp_path / "p.pkl").read_bytes())
    assert (tmp_path / "MARKER").exists()
    (tmp_path / "MARKER").unlink()
    ser.save(small_model(), tmp_path / "m.npz")
    object_array_entry(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=True) as npz:
        npz["weights/0.weight"]
    assert (tmp_path / "MARKER").exists()


MISMATCHES: list[tuple[str, Callable[[], nnkit.Module], str]] = [
    (
        "missing-key",
        lambda: nnkit.Sequential(*small_model(), nnkit.Dense(2, 2)),
        r"missing keys: 3\.weight, 3\.bias",
    ),
    (
        "unexpected-key",
        lambda: nnkit.Sequential(*list(small_model())[:2]),
        r"unexpected keys: 2\.weight, 2\.bias",
    ),
    (
        "wrong-shape",
        lambda: nnkit.Sequential(nnkit.Dense(3, 5), nnkit.Tanh(), nnkit.Dense(5, 2)),
        r"0\.weight: shape \(3, 4\) in the state, \(3, 5\) in the model",
    ),
    (
        "wrong-dtype",
        lambda: small_model(3, np.float64),
        "0.weight: dtype float32 in the state, float64 in the model",
    ),
]


@pytest.mark.parametrize(
    ("make", "match"), [m[1:] for m in MISMATCHES], ids=[m[0] for m in MISMATCHES]
)
def test_weights_that_do_not_fit_leave_the_model_untouched(
    make: Callable[[], nnkit.Module], match: str, saved: Path
) -> None:
    target = make()
    before = target.state_dict()
    with pytest.raises(ser.StateMismatchError, match=match):
        ser.load_weights(saved, target)
    with pytest.raises(ValueError, match="nothing was changed"):  # also a ValueError
        ser.load_weights(saved, target)
    assert all(before[k].tobytes() == v.tobytes() for k, v in target.state_dict().items())


def test_byte_flips_anywhere_are_caught_or_harmless(tmp_path: Path) -> None:
    """Flip one bit in every third byte of a small file: loading raises a SerializationError
    or, where the byte is zip metadata that is not read (timestamps, the local copies of
    sizes and checksums), gives back the same model."""
    model = nnkit.Sequential(nnkit.Dense(2, 1, rng=np.random.default_rng(0)))
    ser.save(model, tmp_path / "m.npz")
    original = (tmp_path / "m.npz").read_bytes()
    path = tmp_path / "flipped.npz"
    harmless = 0
    offsets = range(0, len(original), 3)
    for offset in offsets:
        data = bytearray(original)
        data[offset] ^= 1 << (offset % 8)
        path.write_bytes(bytes(data))
        try:
            loaded = ser.load(path)
        except ser.SerializationError:
            continue
        harmless += 1
        assert repr(loaded) == repr(model) and state_equal(loaded, model), offset
    assert harmless < len(offsets) // 4


def test_file_errors_are_not_disguised(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ser.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError):
        ser.load(tmp_path)


# -- atomic writes ---------------------------------------------------------------------------


def _fail_after_first_array(monkeypatch: pytest.MonkeyPatch) -> None:
    real = np.lib.format.write_array
    calls = []

    def write_array(fp: Any, array: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            fp.write(b"partial")
            raise OSError("disk full")
        real(fp, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_array)


def _fail(name: str) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*args: Any, **kwargs: Any) -> None:
            raise OSError(f"{name} failed")

        monkeypatch.setattr(os, name, fail)

    return patch


SAVES: list[Callable[[nnkit.Module, Path], None]] = [
    ser.save,
    ser.save_weights,
    lambda model, path: ser.save_checkpoint(path, model=model, extra={"x": np.ones(3)}),
]


@pytest.mark.parametrize(
    "break_write",
    [_fail_after_first_array, _fail("fsync"), _fail("replace")],
    ids=["mid-archive", "fsync", "rename"],
)
@pytest.mark.parametrize("existing", [True, False], ids=["overwrite", "new"])
def test_a_failed_save_leaves_the_target_as_it_was(
    break_write: Callable[[pytest.MonkeyPatch], None],
    existing: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "model.npz"
    if existing:
        ser.save(small_model(0), path)
    before = path.read_bytes() if existing else None
    with monkeypatch.context() as patch:
        break_write(patch)
        for save in SAVES:
            with pytest.raises(OSError, match=r"failed|disk full"):
                save(small_model(1), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["model.npz"] if existing else [])
    if existing:
        assert path.read_bytes() == before
        assert state_equal(ser.load(path), small_model(0))


def test_a_saved_file_has_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    ser.save(small_model(), tmp_path / "m.npz")
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    ("folder", "error", "match"),
    [
        ("nodir", FileNotFoundError, r"the folder '.*nodir' does not exist; create it first"),
        ("nodir/sub", FileNotFoundError, r"the folder '.*nodir/sub' does not exist"),
        ("file.txt", NotADirectoryError, r"'.*file\.txt' is not a folder"),
    ],
    ids=["missing", "missing-parent", "a-file"],
)
def test_saving_into_a_missing_folder_names_the_target(
    folder: str, error: type[OSError], match: str, tmp_path: Path
) -> None:
    (tmp_path / "file.txt").write_text("")
    path = tmp_path / folder / "m.npz"
    for save in SAVES:
        with pytest.raises(error, match=match) as info:
            save(small_model(0), path)
        assert str(info.value).startswith(f"[Errno {info.value.errno}] cannot save {path}: ")
        assert ".tmp" not in str(info.value) and info.value.__suppress_context__
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]
