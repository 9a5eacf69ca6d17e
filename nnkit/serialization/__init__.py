"""Saving and loading models, weights and training checkpoints, without pickle.

Every file is one zip archive (a valid ``.npz``) holding ``header.json`` (format name,
format version, architecture and plain values) and one ``.npy`` entry per array. Loading
never unpickles: arrays of Python objects are refused, and a file is checked completely before
anything is built from it or loaded into anything. Writes are atomic. See docs/saving.md.

- :func:`save` / :func:`load`: a whole model, rebuilt from registered classes
  (:func:`register_module`).
- :func:`save_weights` / :func:`load_weights`: a state dict alone.
- :func:`save_checkpoint` / :func:`load_checkpoint`: weights, optimizer, scheduler, data-order
  generator, epoch and extra values, to resume training exactly.
- :func:`save_safetensors` / :func:`load_safetensors`: a state dict as a safetensors file, to
  exchange weights with other tools (needs the optional extra ``safetensors``).
"""

from nnkit.serialization.architecture import register_module
from nnkit.serialization.archive import FORMAT_VERSION, MAX_HEADER_BYTES
from nnkit.serialization.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nnkit.serialization.errors import (
    CorruptFileError,
    FormatVersionError,
    SerializationError,
    StateMismatchError,
    UnregisteredModuleError,
    UnsafeFileError,
)
from nnkit.serialization.model import load, load_weights, save, save_weights
from nnkit.serialization.safetensors import load_safetensors, save_safetensors

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "Checkpoint",
    "CorruptFileError",
    "FormatVersionError",
    "SerializationError",
    "StateMismatchError",
    "UnregisteredModuleError",
    "UnsafeFileError",
    "load",
    "load_checkpoint",
    "load_safetensors",
    "load_weights",
    "register_module",
    "save",
    "save_checkpoint",
    "save_safetensors",
    "save_weights",
]
