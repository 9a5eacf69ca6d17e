"""Tests for nnkit.serialization.safetensors: state dicts to and from safetensors files."""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit import serialization as ser
from nnkit.serialization import safetensors as safetensors_io

safetensors_numpy: Any = pytest.importorskip("safetensors.numpy")
safetensors: Any = pytest.importorskip("safetensors")


def make_model(dtype: str = "float32", seed: int = 0) -> nnkit.Module:
    rng = np.random.default_rng(seed)
    return nnkit.Sequential(
        nnkit.Dense(3, 5, rng=rng, dtype=dtype),
        nnkit.Tanh(),
        nnkit.Dense(5, 2, rng=rng, dtype=dtype),
    )


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Same keys (in any order), shapes, dtypes and bytes."""
    return set(a) == set(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def raw_file(path: Path, header: dict[str, Any], data: bytes) -> None:
    """A safetensors file written byte by byte: 8-byte header length, JSON header, data."""
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


# -- round trips -----------------------------------------------------------------------------


def test_exported() -> None:
    assert "save_safetensors" in ser.__all__ and "load_safetensors" in ser.__all__
    assert callable(ser.save_safetensors) and callable(ser.load_safetensors)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_round_trip_is_bitwise(tmp_path: Path, dtype: str) -> None:
    model = make_model(dtype)
    first = model.parameters().__next__()
    first.data.flat[0] = np.nan  # an unusual bit pattern survives too
    first.data.flat[1] = -0.0
    path = tmp_path / "w.safetensors"
    ser.save_safetensors(model, path)
    loaded = ser.load_safetensors(path)
    expected = model.state_dict()
    assert same_bits(loaded, expected)
    assert all(array.dtype == np.dtype(dtype) for array in loaded.values())
    for array in loaded.values():  # writable copies, not views of the file
        assert array.flags.writeable and array.flags.owndata
        array += 1
    assert same_bits(model.state_dict(), expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_load_into_a_fresh_model(tmp_path: Path, dtype: str) -> None:
    model, fresh = make_model(dtype, seed=0), make_model(dtype, seed=1)
    assert not same_bits(model.state_dict(), fresh.state_dict())
    path = tmp_path / "w.safetensors"
    ser.save_safetensors(model, path)
    returned = ser.load_safetensors(path, fresh)
    assert same_bits(fresh.state_dict(), model.state_dict())
    assert same_bits(returned, model.state_dict())
    x = np.random.default_rng(2).normal(size=(4, 3)).astype(dtype)
    assert fresh(x).tobytes() == model(x).tobytes()


def test_state_dict_mapping_with_all_stored_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    state: dict[str, np.ndarray] = {
        "f16": rng.normal(size=(2, 3)).astype(np.float16),
        "f32": rng.normal(size=(4,)).astype(np.float32),
        "f64": np.array(2.5),  # 0-d
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "b": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
        "layer.with/odd name": np.ones(1, np.float32),
    }
    path = tmp_path / "state.safetensors"
    ser.save_safetensors(state, path)
    assert same_bits(ser.load_safetensors(path), state)


def test_complex64_needs_safetensors_0_7(tmp_path: Path) -> None:
    state = {"c": (np.arange(3) + 1j).astype(np.complex64)}
    path = tmp_path / "c.safetensors"
    version = tuple(int(part) for part in safetensors.__version__.split(".")[:2])
    if version >= (0, 7):
        ser.save_safetensors(state, path)
        assert same_bits(ser.load_safetensors(path), state)
    else:  # older versions refuse it, and nnkit says so without writing anything
        with pytest.raises(ser.SerializationError, match="complex64"):
            ser.save_safetensors(state, path)
        assert list(tmp_path.iterdir()) == []


def test_non_contiguous_and_big_endian_arrays_are_stored_by_value(tmp_path: Path) -> None:
    # safetensors.numpy itself writes a transposed view's memory in its storage order
    transposed = np.arange(6, dtype=np.float32).reshape(2, 3).T
    strided = np.arange(10, dtype=np.float64)[::3]
    big = np.arange(4, dtype=">f8")
    path = tmp_path / "w.safetensors"
    ser.save_safetensors({"t": transposed, "s": strided, "big": big}, path)
    loaded = ser.load_safetensors(path)
    np.testing.assert_array_equal(loaded["t"], transposed)
    np.testing.assert_array_equal(loaded["s"], strided)
    np.testing.assert_array_equal(loaded["big"], big)
    assert loaded["big"].dtype == np.dtype("<f8")  # safetensors is little-endian
    assert loaded["t"].flags.c_contiguous


# -- interoperability ------------------------------------------------------------------------


def test_file_written_by_safetensors_loads(tmp_path: Path) -> None:
    model = make_model("float64")
    path = tmp_path / "other.safetensors"
    safetensors_numpy.save_file(model.state_dict(), str(path))
    fresh = make_model("float64", seed=5)
    ser.load_safetensors(path, fresh)
    assert same_bits(fresh.state_dict(), model.state_dict())


def test_file_written_by_nnkit_loads_in_safetensors(tmp_path: Path) -> None:
    model = make_model()
    path = tmp_path / "w.safetensors"
    ser.save_safetensors(model, path)
    assert same_bits(safetensors_numpy.load_file(str(path)), model.state_dict())
    with open(path, "rb") as file:  # the metadata is the checksum alone
        (length,) = struct.unpack("<Q", file.read(8))
        metadata = json.loads(file.read(length))["__metadata__"]
    assert metadata == {"nnkit.sha256": safetensors_io.tensors_digest(model.state_dict())}


def test_save_is_deterministic(tmp_path: Path) -> None:
    model = make_model()
    ser.save_safetensors(model, tmp_path / "a.safetensors")
    ser.save_safetensors(model.state_dict(), tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


# -- mismatches and faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.pop("2.bias"), "missing"),
        (lambda s: s.__setitem__("extra", np.ones(2, np.float32)), "unexpected"),
        (lambda s: s.__setitem__("0.weight", np.ones((5, 3), np.float32)), "shape"),
        (lambda s: s.__setitem__("0.bias", s["0.bias"].astype(np.float64)), "dtype"),
    ],
)
def test_mismatch_leaves_the_model_untouched(tmp_path: Path, change: Any, match: str) -> None:
    state = make_model(seed=0).state_dict()
    change(state)
    path = tmp_path / "w.safetensors"
    ser.save_safetensors(state, path)
    model = make_model(seed=1)
    before = model.state_dict()
    with pytest.raises(ser.StateMismatchError, match=match) as info:
        ser.load_safetensors(path, model)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert same_bits(model.state_dict(), before)


def test_partial_load_with_strict_false(tmp_path: Path) -> None:
    source = make_model(seed=0)
    state = source.state_dict()
    del state["2.bias"]
    path = tmp_path / "w.safetensors"
    ser.save_safetensors(state, path)
    model = make_model(seed=1)
    model.load_state_dict(ser.load_safetensors(path), strict=False)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], state["0.weight"])


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([object(), 1], dtype=object), "Python objects|not storable"),
        (np.array(["a", "b"]), "not storable"),
        (np.zeros(2, dtype=[("x", "f4")]), "not storable"),
        (np.ones(2, np.complex128), "safetensors does not store dtype complex128"),
        ([1.0, 2.0], "not a numpy ndarray"),
    ],
)
def test_unstorable_values_are_refused(tmp_path: Path, value: Any, match: str) -> None:
    path = tmp_path / "w.safetensors"
    with pytest.raises(ser.SerializationError, match=match):
        ser.save_safetensors({"ok": np.ones(2, np.float32), "bad": value}, path)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("key", ["", "__metadata__", 3])
def test_bad_keys_are_refused(tmp_path: Path, key: Any) -> None:
    with pytest.raises(ser.SerializationError, match="key"):
        ser.save_safetensors({key: np.ones(2)}, tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_wrong_argument_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Module or a dict"):
        ser.save_safetensors([np.ones(2)], tmp_path / "w.safetensors")  # type: ignore[arg-type]
    ser.save_safetensors(make_model(), tmp_path / "w.safetensors")
    with pytest.raises(TypeError, match="load_safetensors"):
        ser.load_safetensors(tmp_path / "w.safetensors", {})  # type: ignore[arg-type]


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    old = make_model(seed=0)
    ser.save_safetensors(old, path)
    previous = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        ser.save_safetensors(make_model(seed=1), path)
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_damaged_files_raise_corrupt_file_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    ser.save_safetensors(make_model(), path)
    data = path.read_bytes()
    damaged = {
        "truncated": data[:-3],
        "garbage": b"not a safetensors file at all",
        "empty": b"",
        "nnkit": b"PK\x03\x04" + b"\0" * 40,
    }
    model = make_model(seed=1)
    before = model.state_dict()
    for name, content in damaged.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(ser.CorruptFileError, match=name):
            ser.load_safetensors(bad, model)
    assert same_bits(model.state_dict(), before)


def load_or_error(path: Path) -> dict[str, np.ndarray] | None:
    """What load_safetensors returns, or None if it raised a SerializationError."""
    try:
        return ser.load_safetensors(path)
    except ser.SerializationError:
        return None


def test_every_flipped_byte_is_caught_or_harmless(tmp_path: Path) -> None:
    """One bit flipped in each byte, then 60 random one- or two-byte changes: loading raises
    CorruptFileError (the checksum, or safetensors' own checks) or gives back the same
    tensors, never changed values or names (before the checksum, 7 of 60 random flips
    loaded changed values or a changed key)."""
    state = make_model().state_dict()
    path, damaged = tmp_path / "w.safetensors", tmp_path / "damaged.safetensors"
    ser.save_safetensors(state, path)
    original = path.read_bytes()
    rng = np.random.default_rng(0)
    changes = [[(offset, 1 << (offset % 8))] for offset in range(len(original))]
    for _ in range(60):
        count = int(rng.integers(1, 3))
        offsets = rng.choice(len(original), size=count, replace=False)
        changes.append([(int(o), int(rng.integers(1, 256))) for o in offsets])
    caught = 0
    for change in changes:
        data = bytearray(original)
        for offset, mask in change:
            data[offset] ^= mask
        damaged.write_bytes(bytes(data))
        loaded = load_or_error(damaged)
        if loaded is None:
            caught += 1
        else:  # the change did not reach the tensors (header padding, spacing)
            assert same_bits(loaded, state), change
    assert caught > 0.9 * len(changes)


def test_a_damaged_checksum_entry_is_caught(tmp_path: Path) -> None:
    state = make_model().state_dict()
    digest = safetensors_io.tensors_digest(state)
    cases = {
        "renamed": {"nnkit.sha2X6": digest},
        "two-renamed": {"nnkiT.sha2X6": digest},
        "not-hex": {"nnkit.sha256": "z" * 64},
        "other-tensors": {"nnkit.sha256": safetensors_io.tensors_digest({"x": np.ones(1)})},
    }
    for name, metadata in cases.items():
        path = tmp_path / f"{name}.safetensors"
        safetensors_numpy.save_file(state, str(path), metadata=metadata)
        with pytest.raises(ser.CorruptFileError, match="damaged"):
            ser.load_safetensors(path)


def test_a_file_rewritten_with_its_metadata_keeps_a_valid_checksum(tmp_path: Path) -> None:
    """The checksum covers what loading returns, not how the header is written."""
    path, rewritten = tmp_path / "w.safetensors", tmp_path / "rewritten.safetensors"
    state = make_model().state_dict()
    ser.save_safetensors(state, path)
    with safetensors.safe_open(str(path), framework="numpy") as file:
        metadata = {**file.metadata(), "format": "np"}
    safetensors_numpy.save_file(safetensors_numpy.load_file(str(path)), str(rewritten), metadata)
    assert same_bits(ser.load_safetensors(rewritten), state)


def test_a_file_without_the_checksum_is_read_unverified(tmp_path: Path) -> None:
    """The documented limit: safetensors has no checksum, so a file from another tool with a
    changed value loads that value."""
    path = tmp_path / "foreign.safetensors"
    state = {"w": np.arange(4, dtype=np.float32)}
    safetensors_numpy.save_file(state, str(path), metadata={"format": "pt"})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))
    loaded = ser.load_safetensors(path)
    assert loaded["w"][-1] != state["w"][-1]


def test_an_nnkit_file_is_named_as_such(tmp_path: Path) -> None:
    model = make_model()
    saves: dict[str, Callable[[Path], None]] = {
        "model": lambda path: nnkit.save(model, path),
        "weights": lambda path: nnkit.save_weights(model, path),
        "checkpoint": lambda path: nnkit.save_checkpoint(path, model=model),
    }
    target = make_model(seed=1)
    before = target.state_dict()
    for kind, save in saves.items():
        path = tmp_path / f"{kind}.npz"
        save(path)
        for into in (None, target):
            with pytest.raises(ser.CorruptFileError) as info:
                ser.load_safetensors(path, into)
            message = str(info.value)
            assert message.startswith(f"{path} is not a safetensors file: it is a zip archive")
            assert "nnkit.load(path)" in message and "nnkit.load_weights(path, model)" in message
            assert "intact copy" not in message and "header too large" not in message
            assert info.value.__cause__ is None
    assert same_bits(target.state_dict(), before)


def test_nnkit_loaders_name_a_safetensors_file(tmp_path: Path) -> None:
    plain = tmp_path / "w.safetensors"
    ser.save_safetensors(make_model(), plain)
    # a header of 128 bytes: the file starts with b"\x80", as a pickle does
    padded = tmp_path / "padded.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    padded.write_bytes(struct.pack("<Q", 128) + header.ljust(128) + bytes(8))
    assert padded.read_bytes()[:1] == b"\x80" and list(safetensors_numpy.load_file(padded)) == ["w"]
    loaders: list[Callable[[Path], object]] = [
        nnkit.load,
        nnkit.load_weights,
        lambda path: nnkit.load_weights(path, make_model()),
        lambda path: nnkit.load_checkpoint(path, model=make_model()),
    ]
    for path in (plain, padded):
        for load in loaders:
            with pytest.raises(ser.CorruptFileError) as info:
                load(path)
            assert type(info.value) is ser.CorruptFileError  # not UnsafeFileError ("a pickle")
            assert str(info.value).startswith(f"{path} is not an nnkit file: it is a safetensors")
            assert "nnkit.load_safetensors(path, model)" in str(info.value)


def test_dtype_numpy_lacks_is_a_serialization_error(tmp_path: Path) -> None:
    path = tmp_path / "bf16.safetensors"
    raw_file(path, {"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(ser.SerializationError, match="dtype"):
        ser.load_safetensors(path)


def test_missing_file_is_not_wrapped(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ser.load_safetensors(tmp_path / "nope.safetensors")


# -- without the package ---------------------------------------------------------------------


def test_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    ser.save_safetensors(make_model(), path)
    for name in [m for m in sys.modules if m == "safetensors" or m.startswith("safetensors.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors` fail
    calls: dict[str, Callable[[], object]] = {
        "save_safetensors": lambda: ser.save_safetensors(make_model(), tmp_path / "new.st"),
        "load_safetensors": lambda: ser.load_safetensors(path),
    }
    for caller, call in calls.items():
        with pytest.raises(ImportError) as info:
            call()
        message = str(info.value)
        assert caller in message
        assert 'pip install ".[safetensors]"' in message
        assert "nnkit checkout" in message
        assert "pip install nnkit" not in message
    assert not (tmp_path / "new.st").exists()
