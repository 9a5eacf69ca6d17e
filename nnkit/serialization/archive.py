"""The container: a zip archive of a JSON header and ``.npy`` arrays, written atomically.

Layout (an ordinary ``.npz`` file, so ``np.load(path)`` opens it with pickle disabled)::

    header.json            {"format": "nnkit", "version": 2, "kind": ..., ...}
    weights/0.weight.npy   one .npy file per array (format 1.0 or 2.0), stored uncompressed
    optimizer/0.npy        ...

Reading checks the container before anything is built from it: the zip structure and every
CRC-32, a header of at most :data:`MAX_HEADER_BYTES` that is strict JSON, a known format and
version, and for every array a plain numeric dtype (object dtypes, which need pickle, are
refused before any of their bytes are read) and a size that matches its shape.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import struct
import zipfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from nnkit.serialization.errors import (
    CorruptFileError,
    FormatVersionError,
    SerializationError,
    UnsafeFileError,
)
from nnkit.serialization.tree import ARRAY_KINDS, Array, ArraySink, ArraySource

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_NAME",
    "MAX_HEADER_BYTES",
    "PathLike",
    "atomic_write",
    "folder_error",
    "read_archive",
    "write_archive",
]

PathLike = str | os.PathLike[str]

FORMAT_NAME = "nnkit"
FORMAT_VERSION = 2
HEADER_NAME = "header.json"
MAX_HEADER_BYTES = 16 * 1024 * 1024
"""The largest header accepted, in bytes: a bound on what a hostile file makes us parse."""

_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp: the same content gives the same bytes

# What the zip and npy readers raise on damaged input (zipfile has no single error type).
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    KeyError,
    OverflowError,
)


# -- writing ---------------------------------------------------------------------------------
def atomic_write(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a new temporary file next to ``path``, then rename it to ``path``.

    The temporary file is flushed and fsynced before ``os.replace`` puts it in place, so
    ``path`` holds either its old content or the complete new one, never a partial file. On
    any error the temporary file is removed and ``path`` is left as it was.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    base = os.path.basename(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, flags, 0o666)  # the umask applies, as for open(path, "wb")
            break
        except FileExistsError:  # pragma: no cover - a 48-bit random name collided
            continue
        except (FileNotFoundError, NotADirectoryError):
            error = folder_error(target, f"cannot save {target}")
            if error is None:  # pragma: no cover - the folder appeared since os.open failed
                raise
            raise error from None  # not the temporary file's name, which means nothing to users
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def folder_error(path: PathLike, doing: str) -> OSError | None:
    """The error to raise if the folder that is to hold ``path`` does not exist or is not a
    folder, its message starting with ``doing`` (e.g. ``"cannot save x.npz"``); else None."""
    target = os.fspath(path)
    folder = os.path.dirname(target)
    shown = folder or os.getcwd()
    if os.path.isdir(folder or os.curdir):
        return None
    if os.path.exists(folder):
        return NotADirectoryError(
            errno.ENOTDIR, f"{doing}: {shown!r} is not a folder, so it cannot hold {target!r}"
        )
    return FileNotFoundError(
        errno.ENOENT,
        f"{doing}: the folder {shown!r} does not exist; create it first, e.g. "
        f"os.makedirs({shown!r}, exist_ok=True)",
    )


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the OS allows (POSIX); a no-op elsewhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(fd)


def write_archive(path: PathLike, header: dict[str, Any], sink: ArraySink) -> None:
    """Write ``header`` and the arrays in ``sink`` to ``path`` atomically.

    Raises:
        SerializationError: if the header exceeds :data:`MAX_HEADER_BYTES` (nothing is written).
    """
    data = json.dumps(header, allow_nan=False).encode("utf-8")
    if len(data) > MAX_HEADER_BYTES:
        raise SerializationError(
            f"cannot save {os.fspath(path)}: the JSON header would be {len(data)} bytes, more "
            f"than the limit of {MAX_HEADER_BYTES}; store large data (e.g. long lists of "
            "numbers in extra) as numpy arrays, which go into the archive uncounted"
        )

    def write(file: IO[bytes]) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            archive.writestr(_zip_info(HEADER_NAME), data)
            for entry, array in sink.entries.items():
                with archive.open(_zip_info(entry + ".npy"), "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    atomic_write(path, write)


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


# -- reading ---------------------------------------------------------------------------------
def read_archive(path: PathLike) -> tuple[dict[str, Any], ArraySource]:
    """Read and check the whole file: its header (format and version checked) and arrays.

    Errors opening the file itself (``FileNotFoundError``, ``PermissionError``) propagate
    unchanged; everything wrong with its content raises a :class:`SerializationError`.

    Raises:
        UnsafeFileError: a pickle file, or an array of Python objects.
        FormatVersionError: a newer format version.
        CorruptFileError: anything else that is not a valid nnkit file.
    """
    name = os.fspath(path)
    with open(name, "rb") as file:
        start = file.read(8)
        if _is_safetensors(file, start):
            raise CorruptFileError(
                f"{name} is not an nnkit file: it is a safetensors file, which holds weights "
                "only, no architecture; load them into a model you build, with "
                "nnkit.load_safetensors(path, model)"
            )
        if start[:1] == b"\x80":
            raise UnsafeFileError(
                f"{name} looks like a pickle file, not an nnkit file. nnkit never unpickles "
                "(unpickling can run arbitrary code), and nothing in the file was executed; "
                "load it only if you trust it, with the library that wrote it"
            )
        if start[:6] == b"\x93NUMPY":
            raise CorruptFileError(
                f"{name} is a single .npy array, not an nnkit file (a zip archive written by "
                "nnkit.save, save_weights or save_checkpoint)"
            )
        if start[:2] != b"PK":
            raise CorruptFileError(
                f"{name} is not an nnkit file: it is not a zip archive (it starts with "
                f"{start!r}); give the path of a file written by nnkit.save, save_weights or "
                "save_checkpoint"
            )
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(0)
        try:
            with zipfile.ZipFile(file) as archive:
                # The version first: a newer format may store its entries differently.
                header = _read_header(archive, name)
                members = _check_members(archive, name, size)
                del members[HEADER_NAME]
                arrays = {
                    member[: -len(".npy")]: _read_array(archive, info, name)
                    for member, info in members.items()
                }
        except SerializationError:
            raise
        except _READ_ERRORS as exc:
            raise CorruptFileError(
                f"{name} is damaged or truncated ({type(exc).__name__}: {exc}); nothing was "
                "loaded. Use an intact copy, or save again"
            ) from exc
    return header, ArraySource(arrays, name)


def _is_safetensors(file: IO[bytes], start: bytes) -> bool:
    """True if the file opened as ``file``, whose first 8 bytes are ``start``, looks like a
    safetensors file: a little-endian 64-bit header size that fits the file, then ``{``."""
    if len(start) != 8:
        return False
    size = int.from_bytes(start, "little")
    at = file.tell()
    first = file.read(1)
    end = file.seek(0, os.SEEK_END)
    file.seek(at)
    return first == b"{" and 2 <= size <= end - 8


def _check_members(archive: zipfile.ZipFile, path: str, size: int) -> dict[str, zipfile.ZipInfo]:
    """The members by name, after checking that each is one nnkit writes."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        member = info.filename
        problem = None
        if member in members:
            problem = "appears twice"
        elif member != HEADER_NAME and not member.endswith(".npy"):
            problem = "is neither header.json nor a .npy array"
        elif info.flag_bits & 0x1:
            problem = "is encrypted"
        elif info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            problem = "is compressed (nnkit stores its entries uncompressed)"
        elif info.header_offset + info.file_size > size:
            problem = "extends past the end of the file"
        if problem:
            raise CorruptFileError(
                f"{path}: the zip entry {member!r} {problem}; this is not a file written by "
                "nnkit, or it is damaged"
            )
        members[member] = info
    return members


def _read_header(archive: zipfile.ZipFile, path: str) -> dict[str, Any]:
    """Parse header.json strictly and check its format name and version."""
    infos = [info for info in archive.infolist() if info.filename == HEADER_NAME]
    if len(infos) != 1:
        raise CorruptFileError(
            f"{path} is a zip archive but not an nnkit file: it has "
            f"{'no' if not infos else 'more than one'} {HEADER_NAME} entry"
            f"{' (a plain np.savez file? load its arrays with np.load)' if not infos else ''}"
        )
    info = infos[0]
    if info.file_size > MAX_HEADER_BYTES:
        raise CorruptFileError(
            f"{path}: the header is {info.file_size} bytes, more than the limit of "
            f"{MAX_HEADER_BYTES}; refusing to parse it (the file is damaged or hostile)"
        )
    with archive.open(info) as member:
        data = member.read(MAX_HEADER_BYTES + 1)
    try:
        header = json.loads(
            data.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(
            f"{path}: the header is not valid JSON ({type(exc).__name__}: {exc}); the file is "
            "damaged or was not written by nnkit"
        ) from exc
    if type(header) is not dict or header.get("format") != FORMAT_NAME:
        raise CorruptFileError(
            f"{path} is not an nnkit file: its header does not say format {FORMAT_NAME!r}"
        )
    version = header.get("version")
    if type(version) is not int or version < 1:
        raise CorruptFileError(f"{path}: the header has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        writer = header.get("nnkit_version")
        by = f" (written by nnkit {writer})" if type(writer) is str else ""
        from nnkit._version import __version__

        raise FormatVersionError(
            f"{path} uses nnkit file format version {version}{by}, but this nnkit "
            f"({__version__}) reads format version {FORMAT_VERSION} and older; upgrade nnkit "
            "to load it"
        )
    return header


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in the header (non-finite floats are tagged)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} overflows a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> Array:
    """One .npy entry, after checking its dtype and that its size matches its shape."""
    where = f"{path}: the array entry {info.filename!r}"
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise CorruptFileError(f"{where} uses .npy format version {version}, not 1.0 or 2.0")
        if dtype.hasobject:
            raise UnsafeFileError(
                f"{where} holds Python objects (dtype {dtype}), which could only be loaded by "
                "unpickling, and unpickling can run arbitrary code. nnkit never does this and "
                "nothing in the file was executed; nnkit files hold numeric arrays only"
            )
        if dtype.kind not in ARRAY_KINDS or dtype.fields is not None:
            raise CorruptFileError(
                f"{where} has dtype {dtype}; nnkit files hold bool, integer, floating and "
                "complex arrays only"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if member.tell() + nbytes != info.file_size:
            raise CorruptFileError(
                f"{where} declares shape {shape} and dtype {dtype} ({nbytes} bytes of data), "
                f"but the entry holds {info.file_size - member.tell()} bytes of data"
            )
        data = member.read(nbytes)
        if len(data) != nbytes or member.read(1):
            raise CorruptFileError(f"{where} is shorter or longer than its header says")
    array: Array = np.frombuffer(data, dtype=dtype).copy()  # a writable copy
    array = array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)
    return array


# -- the header schema -----------------------------------------------------------------------
_COMMON_KEYS = frozenset({"format", "version", "kind", "nnkit_version"})
KIND_KEYS = {
    "model": frozenset({"architecture", "weights", "tied", "generators"}),
    "weights": frozenset({"weights"}),
    "checkpoint": frozenset(
        {"weights", "generators", "optimizer", "scheduler", "rng", "epoch", "extra"}
    ),
}
"""The header keys of each kind of file, besides format, version, kind and nnkit_version."""

ADDED_IN_VERSION_2: dict[str, Any] = {"generators": {}}
"""Header keys that format version 1 files lack, with the value that stands for them."""

_READER = {
    "model": "nnkit.load",
    "weights": "nnkit.load_weights",
    "checkpoint": "nnkit.load_checkpoint",
}


def new_header(kind: str, **fields: Any) -> dict[str, Any]:
    """A header of the current version and ``kind``, with ``fields`` (:data:`KIND_KEYS` [kind])."""
    from nnkit._version import __version__

    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": kind}
    return {**header, "nnkit_version": __version__, **fields}


def read_file(path: PathLike, accept: tuple[str, ...]) -> tuple[dict[str, Any], ArraySource]:
    """Read a file (see :func:`read_archive`) whose kind is one of ``accept``.

    Raises:
        CorruptFileError: an unknown kind, or header keys that differ from the kind's.
        SerializationError: a valid file of another kind, naming the function that reads it.
    """
    header, source = read_archive(path)
    kind = header.get("kind")
    if type(kind) is not str or kind not in KIND_KEYS:
        raise CorruptFileError(f"{source.path}: the header has an unknown kind {kind!r}")
    expected = _COMMON_KEYS | KIND_KEYS[kind]
    if header.get("version") == 1:
        expected -= set(ADDED_IN_VERSION_2)
    if set(header) != expected or type(header["nnkit_version"]) is not str:
        extra, missing = sorted(set(header) - expected), sorted(expected - set(header))
        raise CorruptFileError(
            f"{source.path}: the header of this {kind} file has unexpected keys {extra} or "
            f"lacks {missing} (or a non-string nnkit_version); the file is damaged or was not "
            "written by nnkit"
        )
    names = header["weights"]
    if type(names) is not list or not all(type(n) is str and n for n in names):
        raise CorruptFileError(f"{source.path}: the header's weights are not a list of names")
    if len(set(names)) != len(names):
        raise CorruptFileError(f"{source.path}: the header lists a weight name twice")
    source.check_mentioned(_mentioned_entries(header))
    if header["version"] == 1:
        added = {k: v for k, v in ADDED_IN_VERSION_2.items() if k in KIND_KEYS[kind]}
        header = {**header, **added}
    if kind not in accept:
        raise SerializationError(
            f"{source.path} is an nnkit {kind} file, which "
            f"{' or '.join(_READER[a] for a in accept)} does not read; open it with "
            f"{_READER[kind]}"
        )
    return header, source


def _mentioned_entries(header: dict[str, Any]) -> set[str]:
    """Every array entry the header refers to: the weights and each tagged array or scalar."""
    found = {f"weights/{name}" for name in header["weights"]}
    stack: list[Any] = [header]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(node)
        elif type(node) is dict:
            if len(node) == 1:
                ((tag, entry),) = node.items()
                if tag in ("__array__", "__scalar__") and type(entry) is str:
                    found.add(entry)
            stack.extend(node.values())
    return found
