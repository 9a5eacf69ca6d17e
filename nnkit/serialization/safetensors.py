"""State dicts to and from safetensors files, to exchange weights with other tools.

safetensors (https://github.com/huggingface/safetensors) is the weight format of PyTorch,
JAX, Hugging Face and others: a JSON header naming each tensor's dtype and shape, then the
raw little-endian bytes, and no code. It stores a flat ``{name: array}`` mapping, which is
exactly a state dict, so :func:`save_safetensors` / :func:`load_safetensors` are the
counterparts of ``save_weights`` / ``load_weights`` for files other tools read and write.

This is the optional extra ``safetensors``: ``pip install ".[safetensors]"`` from the nnkit
checkout. The package is imported only when one of these functions is called.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from nnkit.module import Module
from nnkit.serialization.archive import PathLike, atomic_write
from nnkit.serialization.errors import CorruptFileError, SerializationError
from nnkit.serialization.model import _check_model, assign_weights, state_of
from nnkit.serialization.tree import Array, check_array

__all__ = ["load_safetensors", "save_safetensors"]

SAFETENSORS_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
)
"""The numpy dtypes that a safetensors file can hold (complex128 and longdouble cannot).
complex64 needs safetensors 0.7 or newer; older versions refuse it (SerializationError)."""

_RESERVED_KEY = "__metadata__"  # the safetensors header's own entry
_ZIP_MAGIC = b"PK\x03\x04"  # how a zip archive, and so every nnkit file, begins

CHECKSUM_KEY = "nnkit.sha256"
"""The ``__metadata__`` entry in which nnkit stores the checksum of the tensors it saves."""
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def save_safetensors(model_or_state: Module | Mapping[str, Array], path: PathLike) -> None:
    """Save a state dict as a safetensors file: ``model.state_dict()``, or a given mapping.

    Each array is stored with its dtype and shape, bit for bit, so other tools (PyTorch's
    ``safetensors.torch.load_file``, for one) read the same values under the same names.
    safetensors stores contiguous little-endian arrays: a non-contiguous array (a transposed
    view) is stored as a C-ordered copy and a big-endian one byte-swapped, so it loads back
    equal in value, C-contiguous and native-endian. The header's ``__metadata__`` holds one
    entry, ``"nnkit.sha256"``: the SHA-256 of the tensors (see :func:`tensors_digest`), which
    :func:`load_safetensors` verifies, since safetensors itself has no checksum. The file is
    written atomically, like every nnkit save: an existing file at ``path`` is replaced only
    once the new one is complete.

    Args:
        model_or_state: a Module, whose parameters are saved, or a mapping of str to numpy
            arrays of one of :data:`SAFETENSORS_DTYPES`.
        path: the file to write, by convention ending in ``.safetensors``.

    Raises:
        ImportError: the ``safetensors`` package is not installed.
        SerializationError: a key that is not a non-empty string (or is ``"__metadata__"``),
            a value that is not an ndarray, or a dtype that safetensors cannot store (object,
            string and structured arrays, complex128, longdouble); nothing is written.
    """
    state = state_of(model_or_state, "save_safetensors")
    tensors = {key: _storable(key, value) for key, value in state.items()}
    st = _safetensors("save_safetensors")
    try:
        data: bytes = st.numpy.save(tensors, metadata={CHECKSUM_KEY: tensors_digest(tensors)})
    except st.SafetensorError as exc:  # a dtype this version of safetensors lacks
        raise SerializationError(
            f"cannot save {os.fspath(path)}: {exc} (safetensors {st.__version__})"
        ) from exc

    def write(file: IO[bytes]) -> None:
        file.write(data)

    atomic_write(path, write)


def load_safetensors(path: PathLike, model: Module | None = None) -> dict[str, Array]:
    """Read the arrays of a safetensors file; with ``model``, also load them into the model.

    Reads any safetensors file whose dtypes numpy has (not bfloat16 or the float8 types),
    whichever tool wrote it. The returned arrays are writable copies, not views of the file.
    The keys come in the file's order, which safetensors sorts (by dtype, then name), not
    the order they were saved in. With ``model``, loading is strict and all or nothing, as
    for ``load_weights``: every key, shape and dtype must match, else the model is unchanged.
    For a partial load, call ``model.load_state_dict(load_safetensors(path), strict=False)``.

    A file nnkit wrote carries the SHA-256 of its tensors (names, dtypes, shapes and bytes)
    in its metadata, and any damage to them is caught. A file without that entry (from
    another tool, or rewritten without its metadata) is read unverified: the safetensors
    format has no checksum, so only damage to its structure is caught, and a damaged value
    or name loads as it is.

    Raises:
        ImportError: the ``safetensors`` package is not installed.
        CorruptFileError: the file is not a valid safetensors file (damaged or truncated), its
            tensors do not match the checksum nnkit stored in it, or it is an nnkit file (a
            zip archive: read it with ``nnkit.load`` or ``load_weights``).
        SerializationError: the file holds a dtype that numpy has no type for (bfloat16).
        StateMismatchError: (with ``model``) missing or unexpected keys, or a shape or dtype
            that differs; the model is left untouched.
        OSError: opening the file failed (FileNotFoundError, PermissionError, ...), unwrapped.
    """
    if model is not None:
        _check_model(model, "load_safetensors")
    st = _safetensors("load_safetensors")
    name = os.fspath(path)
    try:
        with st.safe_open(name, framework="numpy") as file:
            metadata = file.metadata()
        loaded: dict[str, Array] = st.numpy.load_file(name)
    except st.SafetensorError as exc:
        if _starts_with(name, _ZIP_MAGIC):
            raise CorruptFileError(
                f"{name} is not a safetensors file: it is a zip archive (it starts with "
                f"{_ZIP_MAGIC!r}), as nnkit.save, save_weights and save_checkpoint write; load "
                "an nnkit file with nnkit.load(path), or its weights with "
                "nnkit.load_weights(path, model)"
            ) from None
        raise CorruptFileError(
            f"{name} is not a valid safetensors file ({exc}); nothing was loaded. Use an intact "
            "copy, or save it again"
        ) from exc
    except (TypeError, AttributeError) as exc:  # bfloat16: np.dtype(...) or np.bfloat16 fails
        raise SerializationError(
            f"{name} holds an array whose dtype numpy does not support ({exc}); convert it to "
            "float32 in the tool that wrote it"
        ) from exc
    weights = {key: np.array(array, copy=True, order="C") for key, array in loaded.items()}
    _verify(name, metadata or {}, weights)
    if model is not None:
        assign_weights(model, weights, name)
    return weights


def tensors_digest(tensors: Mapping[str, Array]) -> str:
    """The SHA-256, in hex, of a state dict's names, dtypes, shapes and little-endian bytes.

    The tensors are taken in sorted name order, each as its UTF-8 name's length and the name,
    its dtype name, its shape and its bytes; so the digest does not depend on how the header
    is written (key order, spacing), only on what loading returns.
    """
    digest = hashlib.sha256()
    for key in sorted(tensors):
        array = tensors[key]
        encoded = key.encode("utf-8", "surrogatepass")
        shape = ",".join(str(n) for n in array.shape).encode()
        digest.update(
            b"%d:%s\0%s\0%s\0" % (len(encoded), encoded, array.dtype.name.encode(), shape)
        )
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1)
        digest.update(little.view(np.uint8).data)
    return digest.hexdigest()


def _verify(path: str, metadata: Mapping[str, str], tensors: Mapping[str, Array]) -> None:
    """CorruptFileError unless the tensors match nnkit's checksum in ``metadata``, when the
    file has one. A metadata key one or two characters away from :data:`CHECKSUM_KEY` is
    nnkit's checksum entry with a damaged name, not a file from another tool."""
    stored = metadata.get(CHECKSUM_KEY)
    if stored is None:
        damaged = [key for key in metadata if _near(key, CHECKSUM_KEY)]
        if damaged:
            raise CorruptFileError(
                f"{path} is damaged: its metadata has an entry {damaged[0]!r} where nnkit "
                f"writes {CHECKSUM_KEY!r}, the checksum of its tensors; nothing was loaded. Use "
                "an intact copy, or save it again"
            )
        return  # a file from another tool: safetensors has no checksum to verify
    if not _HEX_DIGEST.fullmatch(stored) or stored != tensors_digest(tensors):
        raise CorruptFileError(
            f"{path} is damaged: its tensors (names, dtypes, shapes or values) do not match the "
            f"checksum nnkit stored when saving it ({CHECKSUM_KEY}); nothing was loaded. Use an "
            "intact copy, or save it again"
        )


def _near(key: str, reference: str) -> bool:
    """True if ``key`` differs from ``reference`` in one or two characters (same length)."""
    return (
        len(key) == len(reference)
        and 0 < sum(a != b for a, b in zip(key, reference, strict=True)) <= 2
    )


def _starts_with(path: str, magic: bytes) -> bool:
    """True if the file at ``path`` begins with the bytes ``magic`` (False if unreadable)."""
    try:
        with open(path, "rb") as file:
            return file.read(len(magic)) == magic
    except OSError:  # pragma: no cover - it was readable a moment ago
        return False


def _storable(key: object, value: object) -> Array:
    """``value`` as safetensors needs it (C-contiguous, little-endian), after checking it."""
    if type(key) is not str or not key or key == _RESERVED_KEY:
        raise SerializationError(
            f"cannot save the weight key {key!r} to safetensors: keys must be non-empty strings "
            f"other than {_RESERVED_KEY!r}"
        )
    if type(value) is not np.ndarray:
        raise SerializationError(
            f"cannot save the weight {key!r}: it is a {type(value).__name__}, not a numpy ndarray"
        )
    check_array(value, f"the weight {key!r}")  # object, string and structured arrays
    if value.dtype.name not in SAFETENSORS_DTYPES:
        raise SerializationError(
            f"cannot save the weight {key!r}: safetensors does not store dtype {value.dtype}; "
            f"it stores {', '.join(SAFETENSORS_DTYPES)}. Convert it first (e.g. "
            "complex128 to complex64, if the precision may be lost)"
        )
    little: Array = value.astype(value.dtype.newbyteorder("<"), order="C", copy=False)
    return little


def _safetensors(caller: str) -> Any:
    """The ``safetensors`` package with its numpy API loaded, or an ImportError saying how."""
    try:
        package = importlib.import_module("safetensors")
        importlib.import_module("safetensors.numpy")
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs the safetensors package, which is not installed; install the "
            "safetensors extra from the nnkit checkout (the directory with pyproject.toml): "
            'pip install ".[safetensors]"'
        ) from exc
    return package
