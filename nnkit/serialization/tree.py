"""Trees of plain values, stored as JSON plus separate ``.npy`` arrays.

Optimizer and scheduler state dicts, the ``extra`` of a checkpoint, a random generator's state
and module configs are *trees*: nested ``dict`` / ``list`` / ``tuple`` holding ``None``,
``bool``, ``int``, ``float``, ``str``, numpy arrays and numpy scalars. :func:`encode` turns a
tree into JSON and moves every array into the archive; :func:`decode` reverses it exactly:
the same types (a tuple stays a tuple, an int dict key stays an int, a float32 scalar stays a
float32 scalar), the same values bit for bit.

The JSON form is plain JSON wherever plain JSON is exact, and a one-key object whose key is a
tag otherwise::

    {"__array__": "optimizer/0"}       an ndarray, stored as the entry optimizer/0.npy
    {"__scalar__": "extra/1"}          a numpy scalar, stored as a 0-d array
    {"__tuple__": [...]}               a tuple
    {"__dict__": [[key, value], ...]}  a dict with an int key, or a str key starting with "__"
    {"__float__": "nan"}               nan, inf or -inf (JSON has no literal for them)
    {"__module__": "body"}             a child module, in a module's config (see architecture.py)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnkit.serialization.errors import CorruptFileError, SerializationError

__all__ = [
    "ARRAY_KINDS",
    "MAX_DEPTH",
    "ArraySink",
    "ArraySource",
    "check_array",
    "check_unused",
    "decode",
    "encode",
]

Array = NDArray[Any]

MAX_DEPTH = 100
"""The deepest nesting of lists, tuples, dicts (and modules) that is saved or loaded."""

ARRAY_KINDS = "biufc"
"""The numpy dtype kinds that may be stored: bool, signed and unsigned int, float, complex."""

_TAGS = frozenset(
    {"__array__", "__scalar__", "__tuple__", "__dict__", "__float__", "__module__"}
)

ChildName = Callable[[Any], "str | None"]
"""For encode: the child name of a module value in a config (None: not a module)."""

ChildValue = Callable[[str, str], Any]
"""For decode: the value that stands for the child ``name`` (arguments: name, where)."""
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

_STORABLE = (
    "None, bool, int, float, str, list, tuple, dict with str or int keys, and numpy arrays "
    "or scalars of a bool, integer, floating or complex dtype"
)


def check_array(array: Array, where: str) -> None:
    """Raise SerializationError unless ``array`` has a dtype that can be stored safely."""
    dtype = array.dtype
    if dtype.hasobject or dtype.kind not in ARRAY_KINDS or dtype.fields is not None:
        raise SerializationError(
            f"cannot save {where}: dtype {dtype} is not storable; only arrays of bool, integer, "
            "floating or complex numbers are saved (never Python objects, which would need "
            "pickle)"
        )


class ArraySink:
    """The arrays to write, each under a unique entry name (the zip member is ``name.npy``)."""

    def __init__(self) -> None:
        self.entries: dict[str, Array] = {}
        self._counts: dict[str, int] = {}

    def add(self, section: str, array: Array, where: str, name: str | None = None) -> str:
        """Queue ``array`` as ``section/name`` (``section/<n>`` by default); return the name."""
        check_array(array, where)
        if name is None:
            count = self._counts.get(section, 0)
            self._counts[section] = count + 1
            name = str(count)
        entry = f"{section}/{name}"
        if entry in self.entries:  # pragma: no cover - names are unique by construction
            raise SerializationError(f"cannot save {where}: duplicate entry {entry!r}")
        self.entries[entry] = array
        return entry


class ArraySource:
    """The arrays read from a file; each may be taken once, and all must be taken."""

    def __init__(self, arrays: dict[str, Array], path: str) -> None:
        self._arrays = arrays
        self._taken: set[str] = set()
        self.path = path

    def take(self, entry: str, where: str) -> Array:
        """The array stored as ``entry``; CorruptFileError if absent or already used."""
        if entry in self._taken:
            raise CorruptFileError(
                f"{self.path}: {where} refers to array entry {entry!r}, which is already used "
                "elsewhere in the file; the file is damaged or was not written by nnkit"
            )
        if entry not in self._arrays:
            raise CorruptFileError(
                f"{self.path}: {where} refers to array entry {entry!r}, which is not in the "
                "archive; the file is damaged or incomplete"
            )
        self._taken.add(entry)
        return self._arrays[entry]

    def check_mentioned(self, mentioned: set[str]) -> None:
        """CorruptFileError if the archive holds an array that is not in ``mentioned``."""
        check_unused(self.path, set(self._arrays) - mentioned)

    def check_all_taken(self) -> None:
        """CorruptFileError if the archive holds an array that the header does not mention."""
        check_unused(self.path, set(self._arrays) - self._taken)


def check_unused(path: str, entries: set[str]) -> None:
    """CorruptFileError naming ``entries``, array entries of ``path`` that nothing refers to."""
    unused = sorted(entries)
    if unused:
        raise CorruptFileError(
            f"{path}: the archive holds array entries the header does not mention: "
            f"{', '.join(unused[:10])}{' ...' if len(unused) > 10 else ''}; the file is "
            "damaged or was modified after saving"
        )


def encode(
    value: Any,
    sink: ArraySink,
    section: str,
    where: str,
    depth: int = 0,
    child: ChildName | None = None,
) -> Any:
    """The JSON form of the tree ``value``; its arrays go into ``sink`` under ``section``.

    Types are checked exactly (a subclass of dict or float is refused rather than silently
    becoming a plain one), so that loading gives back values of the same types. With
    ``child``, a value it names (a module in a config) is stored as ``{"__module__": name}``.

    Raises:
        SerializationError: naming the place (``where``) of a value that cannot be stored.
    """
    if depth > MAX_DEPTH:
        raise SerializationError(
            f"cannot save {where}: nested more than {MAX_DEPTH} levels deep "
            "(does it contain itself?)"
        )
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if child is not None:
        name = child(value)
        if name is not None:
            return {"__module__": name}
    if kind is np.ndarray:
        return {"__array__": sink.add(section, value, where)}
    if isinstance(value, np.generic):
        return {"__scalar__": sink.add(section, np.asarray(value), where)}
    if kind is list:
        return [
            encode(v, sink, section, f"{where}[{i}]", depth + 1, child) for i, v in enumerate(value)
        ]
    if kind is tuple:
        return {"__tuple__": encode(list(value), sink, section, where, depth, child)}
    if kind is dict:
        for key in value:
            if type(key) not in (str, int):
                raise SerializationError(
                    f"cannot save {where}: dict key {key!r} is a {type(key).__name__}; only "
                    "str and int keys are stored"
                )
        items_ = [
            (k, encode(v, sink, section, f"{where}[{k!r}]", depth + 1, child))
            for k, v in value.items()
        ]
        if all(type(k) is str and not k.startswith("__") for k, _ in items_):
            return dict(items_)
        return {"__dict__": [[k, v] for k, v in items_]}
    raise SerializationError(
        f"cannot save {where}: a value of type {kind.__name__} is not storable without pickle. "
        f"Storable are {_STORABLE}; convert it to one of these first"
    )


def decode(
    node: Any, source: ArraySource, where: str, depth: int = 0, child: ChildValue | None = None
) -> Any:
    """The tree that :func:`encode` turned into ``node``, with arrays taken from ``source``.

    A ``{"__module__": name}`` node becomes ``child(name, where)``; without ``child`` it is
    refused.

    Raises:
        CorruptFileError: if ``node`` is not something :func:`encode` writes.
    """
    if depth > MAX_DEPTH:
        raise _corrupt(source, where, f"is nested more than {MAX_DEPTH} levels deep")
    kind = type(node)
    if node is None or kind in (bool, int, str, float):
        return node
    if kind is list:
        return [decode(v, source, f"{where}[{i}]", depth + 1, child) for i, v in enumerate(node)]
    if kind is not dict:  # pragma: no cover - json.loads makes no other types
        raise _corrupt(source, where, f"holds a {kind.__name__}")
    if len(node) == 1:
        ((tag, inner),) = node.items()
        if tag in _TAGS:
            return _decode_tagged(tag, inner, source, where, depth, child)
    for key in node:
        if key.startswith("__"):
            raise _corrupt(source, where, f"has the unknown tag {key!r}")
    return {k: decode(v, source, f"{where}[{k!r}]", depth + 1, child) for k, v in node.items()}


def _decode_tagged(
    tag: str, inner: Any, source: ArraySource, where: str, depth: int, child: ChildValue | None
) -> Any:
    if tag in ("__array__", "__scalar__"):
        if type(inner) is not str:
            raise _corrupt(source, where, f"has a {tag} entry name that is not a string")
        array = source.take(inner, where)
        if tag == "__array__":
            return array
        if array.ndim != 0:
            raise _corrupt(source, where, f"is a scalar stored as an array of shape {array.shape}")
        return array[()]
    if tag == "__module__":
        if child is None or type(inner) is not str:
            raise _corrupt(source, where, "has a module reference outside a module's config")
        return child(inner, where)
    if tag == "__float__":
        if type(inner) is not str or inner not in _NONFINITE:
            raise _corrupt(source, where, f"has __float__ {inner!r}, not 'nan', 'inf' or '-inf'")
        return _NONFINITE[inner]
    if type(inner) is not list:
        raise _corrupt(source, where, f"has a {tag} that is not a list")
    if tag == "__tuple__":
        return tuple(decode(inner, source, where, depth, child))
    result: dict[Any, Any] = {}
    for pair in inner:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) not in (str, int):
            raise _corrupt(source, where, "has a __dict__ item that is not a [key, value] pair")
        key = pair[0]
        if key in result:
            raise _corrupt(source, where, f"has the dict key {key!r} twice")
        result[key] = decode(pair[1], source, f"{where}[{key!r}]", depth + 1, child)
    return result


def _corrupt(source: ArraySource, where: str, problem: str) -> CorruptFileError:
    return CorruptFileError(
        f"{source.path}: {where} {problem}; the file is damaged or was not written by nnkit"
    )
