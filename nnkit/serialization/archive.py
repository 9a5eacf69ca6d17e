"""The container: a zip archive of a JSON header and ``.npy`` arrays, written atomically.

Layout (an ordinary ``.npz`` file, so ``np.load(path)`` opens it with pickle disabled)::

    header.json            {"format": "nnkit", "version": 2, "kind": ..., ...}
    weights/0.weight.npy   one .npy file per array (format 1.0 or 2.0), stored uncompressed
    optimizer/0.npy        ...

Reading checks the container before anything is built from it: the zip structure and every
CRC-32, a header of at most :data:`MAX_HEADER_BYTES` that is strict JSON, a known format and
version, entries inside the file that do not overlap, and for every array a strictly parsed
``.npy`` header (at most :data:`MAX_NPY_HEADER_BYTES`) with a plain numeric dtype (object
dtypes, which need pickle, are refused before any of their bytes are read) and a size that
matches its shape; all of this before any array data is read, so a file cannot make the
reader allocate more than its own size.

Writing goes through :func:`atomic_write`: a temporary file next to the target, renamed over
it once complete, whose short name lets the next save remove what a killed save left.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import stat
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, NamedTuple

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from nnkit.serialization.errors import (
    CorruptFileError,
    FormatVersionError,
    SerializationError,
    StateMismatchError,
    UnsafeFileError,
)
from nnkit.serialization.tree import ARRAY_KINDS, Array, ArraySink, ArraySource, check_unused

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_NAME",
    "MAX_HEADER_BYTES",
    "MAX_NPY_HEADER_BYTES",
    "ArraySpec",
    "PathLike",
    "WeightSpecs",
    "atomic_write",
    "check_weight_specs",
    "folder_error",
    "read_archive",
    "read_file",
    "temp_prefix",
    "weight_specs",
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
_TEMP_PREFIX = ".nnkit-"
_TEMP_SUFFIX = ".tmp"
_RENAME_WHILE_OPEN = os.name == "posix"  # Windows cannot rename a file that is open


def temp_prefix(path: PathLike) -> str:
    """The start of the name of every temporary file a save to ``path`` writes (in the same
    folder): ``.nnkit-`` and 8 hex digits of a hash of the target's name. The full name adds
    8 random hex digits and ``.tmp``: 28 bytes whatever the target's name, so a target name
    of up to 255 bytes can be saved, and a save can find the leftovers of earlier ones."""
    name = os.path.basename(os.fspath(path)).encode("utf-8", "surrogateescape")
    return f"{_TEMP_PREFIX}{hashlib.sha256(name).hexdigest()[:8]}-"


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a new temporary file next to ``path``, then rename it to ``path``.

    The temporary file is flushed and fsynced before ``os.replace`` puts it in place, so
    ``path`` holds either its old content or the complete new one, never a partial file. On
    any error the temporary file is removed and ``path`` is left as it was. A save killed
    before it could remove its temporary file (SIGKILL, a power cut) leaves it behind; the
    next save to the same path removes it. On POSIX each save holds an exclusive ``flock``
    on its temporary file until the rename, so only files that no running save holds are
    removed; elsewhere an open file cannot be removed at all.

    Errors name ``path``, never the temporary file: a missing folder is FileNotFoundError
    (NotADirectoryError for a file), a folder without write permission PermissionError.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    prefix = temp_prefix(target)
    _remove_stale(directory, prefix)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = os.path.join(directory, f"{prefix}{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        try:
            fd = os.open(temp, flags, 0o666)  # the umask applies, as for open(path, "wb")
            break
        except FileExistsError:  # pragma: no cover - a 32-bit random name collided
            continue
        except (FileNotFoundError, NotADirectoryError):
            error = folder_error(target, f"cannot save {target}")
            if error is None:  # pragma: no cover - the folder appeared since os.open failed
                raise
            raise error from None  # not the temporary file's name, which means nothing to users
        except OSError as exc:
            folder = os.path.dirname(target) or os.getcwd()
            advice = "make the folder writable, or save elsewhere"
            raise _renamed(
                exc,
                f"cannot save {target}: {exc.strerror} when creating a file in the folder "
                f"{folder!r} (a save writes a temporary file there, then renames it); "
                + (advice if isinstance(exc, PermissionError) else "save elsewhere"),
            ) from None
    try:
        with os.fdopen(fd, "wb") as file:
            _hold(fd)
            write(file)
            file.flush()
            os.fsync(file.fileno())
            if _RENAME_WHILE_OPEN:  # still holding the lock: no other save removes it first
                _replace(temp, target)
        if not _RENAME_WHILE_OPEN:  # pragma: no cover - Windows
            _replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def _replace(temp: str, target: str) -> None:
    """``os.replace(temp, target)``, an error naming the target only."""
    try:
        os.replace(temp, target)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise _renamed(exc, f"cannot save {target}: {exc.strerror}") from None


def _renamed(exc: OSError, message: str) -> OSError:
    """An OSError of the same type and errno as ``exc`` with ``message`` (which names the
    target, not the temporary file that ``exc`` names)."""
    return OSError(exc.errno, message) if exc.errno is not None else exc


def _hold(fd: int) -> None:
    """Take an exclusive flock on our temporary file, where the OS has flock; a filesystem
    that refuses locks (some network ones) only means stale files are left alone."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove_stale(directory: str, prefix: str) -> None:
    """Remove the temporary files of earlier saves to the same target that no save holds."""
    try:
        names = [
            entry.name
            for entry in os.scandir(directory)
            if entry.name.startswith(prefix) and entry.name.endswith(_TEMP_SUFFIX)
        ]
    except OSError:  # a missing or unreadable folder: the save itself reports it
        return
    for name in names:
        stale = os.path.join(directory, name)
        if fcntl is None:  # pragma: no cover - Windows: a file in use cannot be removed
            with contextlib.suppress(OSError):
                os.unlink(stale)
            continue
        try:
            fd = os.open(stale, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a save in progress: skip
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.unlink(stale)
        except OSError:
            pass
        finally:
            os.close(fd)


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
MAX_NPY_HEADER_BYTES = 4096
"""The longest ``.npy`` header accepted, in bytes. NumPy writes about 120 bytes (64 dimensions
of 19 digits would need about 1,400); the bound keeps a hostile header from reaching a parser
with a long input (numpy's own header parser runs out of memory on ``"-" * 6000``)."""

_MAX_NDIM = 64  # numpy's limit on dimensions
_CHUNK = 1 << 20  # array data is read in pieces of this size, straight into the array

# The header NumPy writes: {'descr': ..., 'fortran_order': ..., 'shape': (...), } + padding.
_NPY_HEADER = re.compile(
    r"\{'descr': (?P<descr>'[^']*'|\[.*\]), 'fortran_order': (?P<fortran>True|False), "
    r"'shape': \((?P<shape>[^()]*)\), \} *\n?\Z",
    re.DOTALL,
)
_DIMENSION = re.compile(r"[0-9]{1,19}")


class ArraySpec(NamedTuple):
    """What an ``.npy`` entry declares in its header, before any of its data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool
    offset: int  # where the data starts within the entry

    @property
    def nbytes(self) -> int:
        """The size of the data the header declares."""
        return math.prod(self.shape) * self.dtype.itemsize


Inspect = Callable[[dict[str, Any], dict[str, ArraySpec]], None]
"""A check of the header and of every array's declared shape and dtype (keyed by entry name,
without ``.npy``), run after the container is checked and before any array data is read."""


def read_archive(
    path: PathLike, inspect: Inspect | None = None
) -> tuple[dict[str, Any], ArraySource]:
    """Read and check the whole file: its header (format and version checked) and arrays.

    In this order, so that a damaged or hostile file costs no more memory than it holds: the
    header; the zip entries (each stored uncompressed, inside the file and overlapping no
    other: overlapping entries would make a small file read as a huge one); every ``.npy``
    header (a plain numeric dtype and a shape whose data size is the entry's); then
    ``inspect(header, specs)`` if given; only then the array data, CRC-checked.

    Errors opening the file itself (``FileNotFoundError``, ``PermissionError``) propagate
    unchanged, as does a ``MemoryError`` for data that fits the file but not the memory;
    everything wrong with its content raises a :class:`SerializationError`.

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
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        try:
            with zipfile.ZipFile(file) as archive:
                # The version first: a newer format may store its entries differently.
                header = _read_header(archive, name)
                members = _check_members(archive, file, name, size)
                del members[HEADER_NAME]
                specs = {
                    member[: -len(".npy")]: _read_spec(archive, info, name)
                    for member, info in members.items()
                }
                if inspect is not None:
                    inspect(header, specs)
                arrays = {
                    entry: _read_data(archive, members[entry + ".npy"], spec, name)
                    for entry, spec in specs.items()
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


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"


def _check_members(
    archive: zipfile.ZipFile, file: IO[bytes], path: str, size: int
) -> dict[str, zipfile.ZipInfo]:
    """The members by name, after checking that each is one nnkit writes and that their
    bytes lie inside the file, before the central directory, one after another.

    zipfile reads each member from the offset and sizes the central directory gives;
    Python before 3.11.8 (and 3.12.2) does not check that members do not overlap. Entries
    whose data contains the next entry's local header, over and over, make a file of a
    megabyte read as gigabytes, so overlaps are refused here, before any entry is read.
    """
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
        elif info.flag_bits & 0x8:
            problem = "is followed by a data descriptor (nnkit writes sizes in the header)"
        elif info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            problem = "is compressed (nnkit stores its entries uncompressed)"
        elif info.header_offset + info.file_size > size:
            problem = "extends past the end of the file"
        if problem:
            raise _bad_member(path, member, problem)
        members[member] = info
    directory = min(getattr(archive, "start_dir", size), size)  # where the entries must end
    spans = []
    for info in members.values():
        file.seek(info.header_offset)
        local = file.read(_LOCAL_HEADER.size)
        if len(local) != _LOCAL_HEADER.size:
            raise _bad_member(path, info.filename, "starts past the end of the file")
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(local)
        if signature != _LOCAL_SIGNATURE:
            raise _bad_member(path, info.filename, "has no local header where the index says")
        end = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        spans.append((info.header_offset, end + info.compress_size, info.filename))
    spans.sort()
    for (_, end, member), (start, _, following) in itertools.pairwise(spans):
        if end > start:
            raise _bad_member(
                path, member, f"overlaps the entry {following!r} (zip entries must not share bytes)"
            )
    if spans and spans[-1][1] > directory:
        raise _bad_member(path, spans[-1][2], "extends past the end of the entries")
    return members


def _bad_member(path: str, member: str, problem: str) -> CorruptFileError:
    return CorruptFileError(
        f"{path}: the zip entry {member!r} {problem}; this is not a file written by nnkit, "
        "or it is damaged"
    )


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


def _read_spec(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> ArraySpec:
    """The shape and dtype an .npy entry declares, checked, reading only its header.

    The header is parsed here, strictly, as the dict NumPy writes: NumPy's own parser is
    not given a hostile header (it recurses on ``"-" * 6000 + "1"``, and accepts a shape of
    ``(True, 2)``). Every failure is a CorruptFileError (an UnsafeFileError for objects).
    """
    where = f"{path}: the array entry {info.filename!r}"
    with archive.open(info) as member:
        magic = member.read(8)
        if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6:] not in (b"\1\0", b"\2\0"):
            raise CorruptFileError(
                f"{where} is damaged: it does not start as a .npy array of format 1.0 or 2.0 "
                f"(it starts with {magic!r})"
            )
        width = 2 if magic[6] == 1 else 4
        length_bytes = member.read(width)
        length = int.from_bytes(length_bytes, "little")
        if len(length_bytes) != width or length > MAX_NPY_HEADER_BYTES:
            raise CorruptFileError(
                f"{where} has a .npy header of {length} bytes, more than the limit of "
                f"{MAX_NPY_HEADER_BYTES}; the file is damaged or hostile"
            )
        raw = member.read(length)
    offset = 8 + width + length
    try:
        text = raw.decode("latin1")
    except UnicodeDecodeError:  # pragma: no cover - latin1 decodes every byte
        text = ""
    match = _NPY_HEADER.match(text) if len(raw) == length else None
    if match is None:
        raise CorruptFileError(
            f"{where} has a damaged .npy header {raw[:80]!r}: it is not the dict of descr, "
            "fortran_order and shape that numpy writes"
        )
    descr = match["descr"]
    if not descr.startswith("'"):
        raise CorruptFileError(
            f"{where} has a structured dtype {descr[:80]}; nnkit files hold bool, integer, "
            "floating and complex arrays only"
        )
    try:
        dtype = np.dtype(descr[1:-1])
    except Exception as exc:  # numpy raises TypeError, ValueError, SyntaxError...
        raise CorruptFileError(f"{where} has an unknown dtype {descr[:80]} ({exc})") from None
    if dtype.hasobject:
        raise UnsafeFileError(
            f"{where} holds Python objects (dtype {dtype}), which could only be loaded by "
            "unpickling, and unpickling can run arbitrary code. nnkit never does this and "
            "nothing in the file was executed; nnkit files hold numeric arrays only"
        )
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise CorruptFileError(
            f"{where} has dtype {dtype}; nnkit files hold bool, integer, floating and "
            "complex arrays only"
        )
    parts = [part.strip() for part in match["shape"].split(",")]
    if parts and not parts[-1]:
        parts.pop()  # the trailing comma of (3,)
    if len(parts) > _MAX_NDIM or not all(_DIMENSION.fullmatch(part) for part in parts):
        raise CorruptFileError(
            f"{where} declares the shape ({match['shape'][:80]}), not a tuple of at most "
            f"{_MAX_NDIM} non-negative integers"
        )
    spec = ArraySpec(tuple(int(part) for part in parts), dtype, match["fortran"] == "True", offset)
    if offset + spec.nbytes != info.file_size:
        raise CorruptFileError(
            f"{where} declares shape {spec.shape} and dtype {dtype} ({spec.nbytes} bytes of "
            f"data), but the entry holds {info.file_size - offset} bytes of data"
        )
    return spec


def _read_data(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, spec: ArraySpec, path: str
) -> Array:
    """The data of a checked .npy entry, as a new writable array (the CRC is checked)."""
    flat: Array = np.empty(math.prod(spec.shape), dtype=spec.dtype)
    view = flat.view(np.uint8).data  # the bytes of any dtype, as a writable memoryview
    with archive.open(info) as member:
        member.read(spec.offset)
        done = 0
        while done < spec.nbytes:  # straight into the array: no second copy of the data
            chunk = member.read(min(_CHUNK, spec.nbytes - done))
            if not chunk:
                break
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        if done != spec.nbytes or member.read(1):  # reading to the end checks the CRC
            raise CorruptFileError(
                f"{path}: the array entry {info.filename!r} is shorter or longer than its "
                "header says"
            )
    shape = spec.shape
    array: Array = flat.reshape(shape[::-1]).T if spec.fortran_order else flat.reshape(shape)
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


WeightSpecs = Mapping[str, tuple[tuple[int, ...], np.dtype[Any]]]
"""The shape and dtype of every weight a model expects, by state-dict key."""


def read_file(
    path: PathLike,
    accept: tuple[str, ...],
    expect_weights: WeightSpecs | Callable[[dict[str, Any]], WeightSpecs | None] | None = None,
) -> tuple[dict[str, Any], ArraySource]:
    """Read a file (see :func:`read_archive`) whose kind is one of ``accept``.

    The header's schema (its kind and keys, the weight names, that every array entry is
    referred to) is checked before any array data is read. With ``expect_weights``, the
    weights the file declares must be exactly those keys, each with that shape and dtype
    (what ``load_weights(path, model)`` loads strictly into a model): a file that does not
    fit is refused from its ``.npy`` headers, before a byte of its data is read. Build it
    from a model with :func:`weight_specs`, or pass a function of the header that returns
    them (or None to skip the check, as for a format-1 file that predates buffers).

    Raises:
        CorruptFileError: an unknown kind, or header keys that differ from the kind's.
        SerializationError: a valid file of another kind, naming the function that reads it.
        StateMismatchError: (with ``expect_weights``) missing or unexpected keys, or a shape
            or dtype that differs, all listed.
    """
    name = os.fspath(path)

    def inspect(header: dict[str, Any], specs: dict[str, ArraySpec]) -> None:
        _check_schema(header, specs, name, accept)
        expected = expect_weights(header) if callable(expect_weights) else expect_weights
        if expected is not None:
            check_weight_specs(header["weights"], specs, expected, name)

    header, source = read_archive(path, inspect)
    if header["version"] == 1:  # the keys format 2 added, with the values that stand for them
        kind = header["kind"]
        added = {k: v for k, v in ADDED_IN_VERSION_2.items() if k in KIND_KEYS[kind]}
        header = {**header, **added}
    return header, source


def weight_specs(named_parameters: Iterable[tuple[str, Any]]) -> WeightSpecs:
    """``{name: (shape, dtype)}`` of ``model.named_parameters()``, for ``expect_weights``."""
    return {key: (tuple(param.data.shape), param.data.dtype) for key, param in named_parameters}


def check_weight_specs(
    names: list[str], specs: Mapping[str, ArraySpec], expected: WeightSpecs, path: str
) -> None:
    """StateMismatchError listing every way the weights ``names`` of the file at ``path``,
    declared in ``specs`` (keyed by entry), differ from ``expected``; nothing is read."""
    present = set(names)
    problems = []
    unexpected = [key for key in names if key not in expected]
    missing = [key for key in expected if key not in present]
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    for key, (shape, dtype) in expected.items():
        spec = specs.get(f"weights/{key}")
        if key not in present or spec is None:  # an absent entry is reported when taken
            continue
        if spec.shape != tuple(shape):
            problems.append(f"{key}: shape {spec.shape} in the state, {shape} in the model")
        elif spec.dtype != dtype:
            problems.append(f"{key}: dtype {spec.dtype} in the state, {dtype} in the model")
    if problems:
        raise StateMismatchError(
            f"the weights in {path} do not fit: cannot load them into the model; nothing was "
            "changed (no array was read):\n  " + "\n  ".join(problems)
        )


def _check_schema(
    header: dict[str, Any], specs: Mapping[str, ArraySpec], path: str, accept: tuple[str, ...]
) -> None:
    """The header has the keys of a known kind, valid weight names, refers to every array
    entry of the archive, and is of a kind in ``accept``."""
    kind = header.get("kind")
    if type(kind) is not str or kind not in KIND_KEYS:
        raise CorruptFileError(f"{path}: the header has an unknown kind {kind!r}")
    expected = _COMMON_KEYS | KIND_KEYS[kind]
    if header.get("version") == 1:
        expected -= set(ADDED_IN_VERSION_2)
    if set(header) != expected or type(header["nnkit_version"]) is not str:
        extra, missing = sorted(set(header) - expected), sorted(expected - set(header))
        raise CorruptFileError(
            f"{path}: the header of this {kind} file has unexpected keys {extra} or "
            f"lacks {missing} (or a non-string nnkit_version); the file is damaged or was not "
            "written by nnkit"
        )
    names = header["weights"]
    if type(names) is not list or not all(type(n) is str and n for n in names):
        raise CorruptFileError(f"{path}: the header's weights are not a list of names")
    if len(set(names)) != len(names):
        raise CorruptFileError(f"{path}: the header lists a weight name twice")
    check_unused(path, set(specs) - _mentioned_entries(header))
    if kind not in accept:
        raise SerializationError(
            f"{path} is an nnkit {kind} file, which "
            f"{' or '.join(_READER[a] for a in accept)} does not read; open it with "
            f"{_READER[kind]}"
        )


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
