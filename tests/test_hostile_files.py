"""Files built to exhaust memory or to crash the reader: refused as CorruptFileError, before
the reader allocates more than the file holds.

The faults of ordinary damage (flipped bytes, truncation, bad headers) are in
test_serialization.py; these are the ones a file has to be crafted for.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import nnkit
from nnkit import serialization as ser
from nnkit.serialization import archive

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")


def local_header(name: str, data: bytes) -> bytes:
    raw = name.encode()
    crc = zlib.crc32(data)
    return _LOCAL.pack(b"PK\3\4", 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(raw), 0) + raw


def central_directory(members: list[tuple[str, bytes, int]], start: int) -> bytes:
    """The central directory of ``(name, data, offset of its local header)``, then the end
    record, for a directory that starts at ``start``."""
    central = b""
    for name, data, offset in members:
        raw = name.encode()
        crc, size = zlib.crc32(data), len(data)
        central += _CENTRAL.pack(
            b"PK\1\2", 20, 20, 0, 0, 0, 0x21, crc, size, size, len(raw), 0, 0, 0, 0, 0, offset
        ) + raw  # fmt: skip
    n = len(members)
    return central + _END.pack(b"PK\5\6", 0, 0, n, n, len(central), start, 0)


def write_zip(path: Path, members: list[tuple[str, bytes]], claim: int = 0) -> None:
    """A stored zip of ``(name, data)`` members written by hand, so that nothing checks it on
    the way; the last member's sizes claim ``claim`` more bytes than it holds."""
    body, index = b"", []
    for i, (name, data) in enumerate(members):
        index.append((name, data + b"\0" * claim if i == len(members) - 1 else data, len(body)))
        body += local_header(name, data) + data
    path.write_bytes(body + central_directory(index, len(body)))


def npy_header(text: str) -> bytes:
    """A .npy 1.0 prefix: magic, length and ``text`` padded to 64 bytes, as numpy writes it."""
    padded = text + " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\1\0" + struct.pack("<H", len(padded)) + padded.encode("latin1")


def uint8_header(n: int) -> bytes:
    return npy_header(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), }}")


def weights_header(names: list[str]) -> bytes:
    header = {"format": "nnkit", "version": 1, "kind": "weights", "nnkit_version": "0.1.0"}
    return json.dumps({**header, "weights": names}).encode()


def overlapping_file(path: Path, count: int, base: int) -> None:
    """A weights file of ``count`` uint8 arrays whose zip entries overlap: the data of each
    entry is every later entry (local header, .npy header, data) and then ``base`` zero
    bytes. The file is about ``base`` bytes; reading every entry reads about ``count * base``.
    """
    names = [f"w{i}" for i in range(count)]
    chain: list[tuple[str, bytes, int]] = []  # (member, data, bytes before the next entry)
    region = b"\0" * base
    for name in reversed(names):
        member = f"weights/{name}.npy"
        prefix = uint8_header(len(region))
        data = prefix + region
        local = local_header(member, data)
        chain.append((member, data, len(local) + len(prefix)))
        region = local + data  # this entry, and inside its data every later one
    header = weights_header(names)
    body = local_header("header.json", header) + header
    index = [("header.json", header, 0)]
    offset = len(body)
    for member, data, step in reversed(chain):  # in file order
        index.append((member, data, offset))
        offset += step
    body += region
    path.write_bytes(body + central_directory(index, len(body)))


LOADERS = [
    ("load", ser.load),
    ("load_weights", ser.load_weights),
    ("load_weights-into", lambda p: ser.load_weights(p, nnkit.Sequential(nnkit.Dense(2, 2)))),
    ("load_checkpoint", lambda p: ser.load_checkpoint(p, model=nnkit.Dense(2, 2))),
]


def peak_bytes(load: object, path: Path) -> tuple[int, BaseException | None]:
    """The peak of traced memory while ``load(path)`` runs, and what it raised."""
    tracemalloc.start()
    try:
        load(path)  # type: ignore[operator]
        raised = None
    except Exception as exc:
        raised = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, raised


@pytest.mark.parametrize("load", [f for _, f in LOADERS], ids=[n for n, _ in LOADERS])
def test_overlapping_entries_are_refused_before_anything_is_read(
    load: object, tmp_path: Path
) -> None:
    """200 entries each containing the next: 59 KB that read as 5.5 MB (as 1.4 MB read as
    3 GB on Python 3.11.7, whose zipfile does not check overlaps)."""
    path = tmp_path / "overlap.npz"
    overlapping_file(path, count=200, base=10_000)
    size = path.stat().st_size
    peak, raised = peak_bytes(load, path)
    assert isinstance(raised, ser.CorruptFileError), raised
    assert "overlaps the entry 'weights/w1.npy'" in str(raised)
    assert peak < 4 * size  # reading the entries as declared would take 90 times the file


def test_an_entry_running_into_the_central_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.npz"
    array = np.zeros(3, np.float32)
    data = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }")
    data += array.tobytes()
    write_zip(path, [("header.json", weights_header(["w"])), ("weights/w.npy", data)], claim=8)
    with pytest.raises(ser.CorruptFileError, match=r"'weights/w\.npy' extends past the end"):
        ser.load_weights(path)


def test_a_hand_written_zip_of_a_good_file_loads(tmp_path: Path) -> None:
    """The zip writer of these tests makes files nnkit reads: the faults are the only change."""
    path = tmp_path / "good.npz"
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }")
    write_zip(
        path, [("header.json", weights_header(["w"])), ("weights/w.npy", data + array.tobytes())]
    )
    np.testing.assert_array_equal(ser.load_weights(path)["w"], array)


# (id, the .npy header text, or raw bytes after the magic; what the error says)
NPY_HEADERS: list[tuple[str, str | bytes, str]] = [
    ("minus-chain-6000", "-" * 6000 + "1", "more than the limit of 4096"),  # MemoryError before
    ("minus-chain-in-shape", "{'descr': '<f4', 'fortran_order': False, 'shape': ("
     + "-" * 3000 + "1,), }", "shape"),
    ("bool-dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (True, 2), }",
     r"shape \(True, 2\)"),  # TypeError before
    ("negative-dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", "shape"),
    ("float-dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,), }", "shape"),
    ("65-dimensions", "{'descr': '<f4', 'fortran_order': False, 'shape': ("
     + "1, " * 65 + "), }", "at most 64"),
    ("fortran-not-bool", "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }", "damaged"),
    ("unknown-dtype", "{'descr': '<q9', 'fortran_order': False, 'shape': (3,), }", "dtype"),
    ("subarray-dtype", "{'descr': '(2,)<f4', 'fortran_order': False, 'shape': (3,), }", "dtype"),
    ("extra-key", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1, }", "damaged"),
    ("not-a-dict", "__import__('os').system('true')", "damaged"),
    ("length-past-entry", b"\1\0\xff\xff{'descr'", "damaged"),
    ("version-3", b"\3\0\x10\0" + b" " * 16, "damaged"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("header", "match"), [c[1:] for c in NPY_HEADERS], ids=[c[0] for c in NPY_HEADERS]
)
def test_a_hostile_npy_header_is_a_corrupt_file(
    header: str | bytes, match: str, tmp_path: Path
) -> None:
    prefix = npy_header(header) if isinstance(header, str) else b"\x93NUMPY" + header
    path = tmp_path / "bad.npz"
    write_zip(
        path, [("header.json", weights_header(["w"])), ("weights/w.npy", prefix + b"\0" * 12)]
    )
    for _, load in LOADERS:
        with pytest.raises(ser.CorruptFileError, match=match):
            load(path)


def test_weights_that_cannot_fit_the_model_are_refused_from_their_headers(tmp_path: Path) -> None:
    """read_file with expect_weights (what load_weights(path, model) is to use) compares the
    declared shapes and dtypes with the model's before reading any data."""
    big = nnkit.Sequential(nnkit.Dense(512, 1024), nnkit.Tanh(), nnkit.Dense(1024, 2))
    path = tmp_path / "big.npz"
    ser.save_weights(big, path)
    model = nnkit.Sequential(nnkit.Dense(2, 1024), nnkit.Tanh(), nnkit.Dense(1024, 2)).astype(
        np.float64
    )
    expect = archive.weight_specs(model.named_parameters())
    peak, raised = peak_bytes(lambda p: archive.read_file(p, ("weights",), expect), path)
    assert isinstance(raised, ser.StateMismatchError)
    assert "0.weight: shape (512, 1024) in the state, (2, 1024) in the model" in str(raised)
    assert "2.weight: dtype float32 in the state, float64 in the model" in str(raised)
    assert peak < path.stat().st_size // 4  # the 2 MB weight was never read
    for other, words in [
        (nnkit.Sequential(nnkit.Dense(512, 1024)), "unexpected keys: 2.weight, 2.bias"),
        (nnkit.Sequential(*big, nnkit.Dense(2, 2)), "missing keys: 3.weight, 3.bias"),
    ]:
        with pytest.raises(ser.StateMismatchError, match=words):
            archive.read_file(path, ("weights",), archive.weight_specs(other.named_parameters()))
    header, source = archive.read_file(
        path, ("weights",), archive.weight_specs(big.named_parameters())
    )
    assert header["weights"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_array_equal(source.take("weights/0.weight", "w"), big[0].weight.data)  # type: ignore[attr-defined]


def test_the_schema_is_checked_before_the_arrays_are_read(tmp_path: Path) -> None:
    """A file of the wrong kind is named as such without its arrays being read."""
    path = tmp_path / "weights.npz"
    ser.save_weights(nnkit.Sequential(nnkit.Dense(1024, 1024)), path)
    peak, raised = peak_bytes(ser.load, path)
    assert isinstance(raised, ser.SerializationError) and "nnkit.load_weights" in str(raised)
    assert peak < path.stat().st_size // 4


# -- architectures that ask for more than the file holds --------------------------------------


@ser.register_module(name="test_hostile_files.Block")
class Block(nnkit.Module):
    """A custom block that builds its own layers from its config."""

    def __init__(self, features: int = 3) -> None:
        super().__init__()
        self.features = features
        self.inner = nnkit.Dense(features, 2 * features)
        self.outer = nnkit.Dense(2 * features, features)

    def get_config(self) -> dict[str, int]:
        return {"features": self.features}


def tied_model() -> nnkit.Module:
    first, second = nnkit.Dense(3, 3), nnkit.Dense(3, 3)
    second.weight = first.weight
    return nnkit.Sequential(first, nnkit.Tanh(), nnkit.Sequential(second))


def check_sizes(path: Path) -> None:
    """What nnkit.load is to run between reading the file and building the model."""
    from nnkit.serialization.architecture import parse_architecture
    from nnkit.serialization.limits import check_parameter_sizes
    from nnkit.serialization.model import decode_weights

    header, source = archive.read_file(path, ("model",))
    plan = parse_architecture(header["architecture"], source)
    weights = decode_weights(header["weights"], source)
    check_parameter_sizes(plan, weights, header["tied"], source.path)


def edit_architecture(path: Path, edit: object) -> None:
    """Rewrite the header of the model file at ``path`` with ``edit(architecture)``."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        items = {name: z.read(name) for name in z.namelist()}
    header = json.loads(items["header.json"])
    edit(header["architecture"])  # type: ignore[operator]
    items["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items.items():
            z.writestr(name, data)


def config(index: int, **changes: object) -> object:
    return lambda arch: arch["children"][index][1]["config"].update(changes)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nnkit.Sequential(nnkit.Dense(3, 4), nnkit.Tanh(), nnkit.Dense(4, 2, bias=False)),
        tied_model,
        lambda: nnkit.Sequential(Block(3), nnkit.ReLU(), nnkit.Sequential(nnkit.Dense(3, 1))),
        lambda: nnkit.Dense(2, 2),
    ],
    ids=["plain", "tied", "nested-custom", "bare-layer"],
)
def test_a_file_whose_layers_fit_its_weights_passes_the_size_check(
    make: object, tmp_path: Path
) -> None:
    path = tmp_path / "m.npz"
    ser.save(make(), path)  # type: ignore[operator]
    check_sizes(path)
    ser.load(path)


SIZE_FAULTS = [
    ("huge-dense", config(0, in_features=20000, out_features=20000),
     r"module '0' as a Dense whose weight has shape \(20000, 20000\) \(400,000,000 values\), "
     r"but the file holds '0\.weight' of shape \(3, 4\)"),
    ("huge-output", config(2, out_features=10**9), r"'2\.weight' of shape \(4, 2\)"),
    ("bias-added", config(2, bias=True), r"holds no '2\.bias'"),
    ("layer-added", lambda arch: arch["children"].append(
        ["3", {"class": "Dense", "config": {"in_features": 2, "out_features": 10**6},
               "training": True, "children": []}]), r"holds no '3\.weight'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "match"), [f[1:] for f in SIZE_FAULTS], ids=[f[0] for f in SIZE_FAULTS]
)
def test_an_architecture_larger_than_its_weights_is_refused_before_building(
    edit: object, match: str, tmp_path: Path
) -> None:
    """Dense(20000, 20000) in a 1.9 KB file allocated 6.1 GB in nnkit.load before failing."""
    path = tmp_path / "m.npz"
    ser.save(nnkit.Sequential(nnkit.Dense(3, 4), nnkit.Tanh(), nnkit.Dense(4, 2, bias=False)), path)
    edit_architecture(path, edit)
    with pytest.raises(ser.CorruptFileError, match=match):
        check_sizes(path)
