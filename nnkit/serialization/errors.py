"""The errors raised by nnkit's saving and loading.

Every failure to save or load raises :class:`SerializationError` or a subclass, so one
``except nnkit.SerializationError`` catches them all; the subclasses say what kind of problem
it is and therefore what to do about it.
"""

from __future__ import annotations

__all__ = [
    "CorruptFileError",
    "FormatVersionError",
    "SerializationError",
    "StateMismatchError",
    "UnregisteredModuleError",
    "UnsafeFileError",
]


class SerializationError(Exception):
    """Base class: a model, weights or checkpoint could not be saved or loaded.

    Raised directly for problems with what is being saved (a value that cannot be stored, an
    oversized header) and for a file of the wrong kind (a checkpoint given to ``load``).
    """


class CorruptFileError(SerializationError):
    """The file is not a valid nnkit file: not a zip archive, truncated, damaged (a checksum
    fails), or its header or entries do not follow the format. Restore it from a backup or
    save it again; nothing was loaded."""


class UnsafeFileError(CorruptFileError):
    """The file holds Python objects (an object-dtype array or a pickle), which nnkit refuses
    to load because unpickling can run arbitrary code. nnkit never writes such files; nothing
    in the file was executed."""


class FormatVersionError(SerializationError):
    """The file was written in a newer nnkit file-format version than this nnkit can read;
    upgrade nnkit to load it."""


class UnregisteredModuleError(SerializationError):
    """A module class is not in the registry: saving a model that uses it, or loading a file
    that names it. Decorate the class with ``@nnkit.register_module`` (and import it before
    loading)."""


class StateMismatchError(SerializationError, ValueError):
    """The file's contents do not fit the objects being loaded into: missing or unexpected
    keys, a shape or dtype that differs, an optimizer or random generator of another type, or
    an architecture that the registered classes do not rebuild. Nothing was changed.

    Also a ``ValueError``, like ``Module.load_state_dict``'s own mismatch error."""
