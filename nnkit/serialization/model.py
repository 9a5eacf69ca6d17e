"""Whole models (``save``, ``load``) and weights alone (``save_weights``, ``load_weights``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nnkit.module import Module
from nnkit.parameter import Buffer, Parameter
from nnkit.serialization.architecture import (
    build,
    encode_architecture,
    parse_architecture,
    upgrade_v1,
)
from nnkit.serialization.archive import (
    FORMAT_VERSION,
    PathLike,
    WeightSpecs,
    new_header,
    read_file,
    weight_specs,
    write_archive,
)
from nnkit.serialization.errors import CorruptFileError, SerializationError, StateMismatchError
from nnkit.serialization.limits import check_parameter_sizes
from nnkit.serialization.tree import Array, ArraySink, ArraySource, decode, encode

__all__ = ["live_state", "load", "load_weights", "save", "save_weights"]


def save(model: Module, path: PathLike) -> None:
    """Save ``model``, architecture and weights, to the file ``path``, atomically.

    The architecture is every module's registered class name, ``get_config()`` (modules in it,
    such as a Residual's body, as references to the saved children) and training flag, and
    which parameters, buffers and generators are shared by several modules; the weights are
    its state dict (parameters and persistent buffers), bit for bit, dtypes included; and the
    state of every generator in the model (``generator_state()``), so a loaded stochastic
    model draws the same numbers next as the saved one would have. Every module class in the
    tree must be registered (built-in ones are; see :func:`nnkit.register_module`).
    Gradients, the layers' caches and optimizer state are not saved (see
    :func:`save_checkpoint`). An existing file at ``path`` is replaced only once the new one
    is completely written.

    Raises:
        UnregisteredModuleError: a module's class is not registered.
        SerializationError: a config holds a value that cannot be stored (see docs/saving.md).
    """
    _check_model(model, "save")
    sink = ArraySink()
    architecture = encode_architecture(model, sink)
    weights = encode_weights(live_state(model), sink)
    header = new_header(
        "model",
        architecture=architecture,
        weights=weights,
        tied=_tied(model),
        generators=encode_generators(model, sink),
    )
    write_archive(path, header, sink)


def load(path: PathLike) -> Module:
    """Rebuild the model saved by :func:`save` at ``path``: a new, independent model.

    Each module is rebuilt from its registered class and config, gets the saved weights
    (parameters and floating buffers take the saved dtype) and generator states, and has the
    training flag it had when saved (so a model saved after ``eval()`` comes back in eval
    mode). Gradients start at zero. Files of format version 1 (before buffers and generators)
    load too. The file is
    checked completely before any constructor runs, and only constructors of registered
    classes run.

    Raises:
        CorruptFileError: the file is damaged, truncated or not an nnkit model file.
        UnsafeFileError: the file holds pickled Python objects (refused, never executed).
        FormatVersionError: the file needs a newer nnkit.
        UnregisteredModuleError: the file names a module class that is not registered.
        StateMismatchError: the registered classes do not rebuild what the file describes.
        SerializationError: the file is a weights or checkpoint file (use the function named).
    """
    header, source = read_file(path, ("model",))
    architecture = header["architecture"]
    if header["version"] == 1:
        architecture = upgrade_v1(architecture)
    plan = parse_architecture(architecture, source)
    weights = decode_weights(header["weights"], source)
    generators = decode_generators(header["generators"], source)
    tied = header["tied"]
    if type(tied) is not dict or not all(
        type(k) is str and type(v) is str for k, v in tied.items()
    ):
        raise CorruptFileError(f"{source.path}: the header's 'tied' entry is not a dict of names")
    source.check_all_taken()
    check_parameter_sizes(plan, weights, tied, source.path)  # before any constructor runs
    model = build(plan)
    _tie(model, tied, source.path)
    members = model._state_members()
    for name, array in weights.items():
        member = members.get(name)
        if (
            member is not None
            and member.dtype != array.dtype
            and member.dtype.kind == "f"
            and array.dtype.kind == "f"
        ):
            member.astype(array.dtype)
    assign_weights(model, weights, source.path, header["version"])
    assign_generators(model, generators, source.path)
    return model


def save_weights(model: Module | Mapping[str, Array], path: PathLike) -> None:
    """Save a state dict alone: ``model.state_dict()`` for a Module, or a given mapping.

    The file holds no architecture, so any module (registered or not) can be saved; load the
    weights back into a model built by your code with :func:`load_weights`.

    Raises:
        SerializationError: a key that is not a non-empty string, or a value that is not a
            numeric ndarray.
    """
    state = state_of(model, "save_weights")
    sink = ArraySink()
    weights = encode_weights(state, sink)
    write_archive(path, new_header("weights", weights=weights), sink)


def load_weights(path: PathLike, model: Module | None = None) -> dict[str, Array]:
    """Read the state dict saved at ``path``; with ``model``, also load it into the model.

    Reads the weights of any nnkit file: from :func:`save_weights`, :func:`save` or
    :func:`save_checkpoint`. Without ``model`` the dict is only returned, for example for
    ``model.load_state_dict(state, strict=False)``. With ``model``, keys, shapes and dtypes
    must match exactly, and the model is changed only if they all do.

    Raises:
        CorruptFileError, UnsafeFileError, FormatVersionError: as for :func:`load`.
        StateMismatchError: (with ``model``) missing or unexpected keys, or a shape or dtype
            that differs; the model is left untouched.
    """
    if model is not None:
        _check_model(model, "load_weights")
    expect = None if model is None else expected_weights(model)
    header, source = read_file(path, ("weights", "model", "checkpoint"), expect_weights=expect)
    weights = decode_weights(header["weights"], source)
    if model is not None:
        assign_weights(model, weights, source.path, header["version"])
    return weights


def expected_weights(model: Module) -> Callable[[dict[str, Any]], WeightSpecs | None]:
    """For ``read_file``: the shapes and dtypes ``model`` expects, checked against the file's
    ``.npy`` headers before any data is read (not for a format-1 file, which predates buffers
    and is checked by ``assign_weights``)."""
    specs = weight_specs(model._state_members().items())
    return lambda header: None if header.get("version") == 1 else specs


# -- shared with checkpoints -----------------------------------------------------------------
def encode_weights(state: Mapping[str, Any], sink: ArraySink) -> list[str]:
    """Queue each array of ``state`` as ``weights/<key>``; return the keys in order."""
    names: list[str] = []
    for key, value in state.items():
        if type(key) is not str or not key or "\0" in key or "\\" in key:
            raise SerializationError(
                f"cannot save the weight key {key!r}: keys must be non-empty strings without "
                "NUL or backslash characters"
            )
        if type(value) is not np.ndarray:
            raise SerializationError(
                f"cannot save the weight {key!r}: it is a {type(value).__name__}, not a numpy "
                "ndarray"
            )
        sink.add("weights", value, f"the weight {key!r}", name=key)
        names.append(key)
    return names


def decode_weights(names: list[str], source: ArraySource) -> dict[str, Array]:
    """The state dict whose keys the header lists as ``names`` (checked by ``read_file``)."""
    return {name: source.take(f"weights/{name}", f"the weight {name!r}") for name in names}


def encode_generators(model: Module, sink: ArraySink) -> dict[str, Any]:
    """The JSON form of ``model.generator_state()``."""
    return {
        name: encode(state, sink, "generators", f"the state of generator {name!r}")
        for name, state in model.generator_state().items()
    }


def decode_generators(node: Any, source: ArraySource) -> dict[str, Any]:
    """The generator states that :func:`encode_generators` wrote."""
    if type(node) is not dict:
        raise CorruptFileError(f"{source.path}: the header's generators are not a dict")
    return {
        name: decode(value, source, f"the state of generator {name!r}")
        for name, value in node.items()
    }


def assign_generators(model: Module, states: Mapping[str, Any], path: str) -> None:
    """``model.load_generator_state(states)``, a mismatch as StateMismatchError.

    A model with generators loaded from a file that has none for them (format version 1,
    saved before generator states were) keeps its freshly seeded generators."""
    try:
        model.load_generator_state(states, strict=bool(states))
    except ValueError as exc:
        raise StateMismatchError(f"the generator states in {path} do not fit: {exc}") from exc


def assign_weights(
    model: Module, weights: Mapping[str, Array], path: str, version: int = FORMAT_VERSION
) -> None:
    """``model.load_state_dict(weights)``: all or nothing, a mismatch as StateMismatchError.

    A file of format version 1 predates buffers: the model's buffers that it lacks keep their
    values (every parameter must still be there)."""
    try:
        if version == 1:
            buffers = {name for name, _ in model.named_buffers()}
            missing = [name for name in model.state_dict() if name not in weights]
            if missing and all(name in buffers for name in missing):
                unexpected = [name for name in weights if name not in model.state_dict()]
                if unexpected:
                    raise ValueError(f"unexpected keys: {', '.join(unexpected)}")
                model.load_state_dict(weights, strict=False)
                return
        model.load_state_dict(weights)
    except ValueError as exc:
        raise StateMismatchError(f"the weights in {path} do not fit: {exc}") from exc


def _tied(model: Module) -> dict[str, str]:
    """``{name: first name}`` for each place a Parameter, Buffer or generator is reached again
    through another module (tied weights), walking the tree as ``named_parameters`` does."""
    first: dict[int, str] = {}
    tied: dict[str, str] = {}
    seen: set[int] = set()

    def walk(module: Module, prefix: str) -> None:
        seen.add(id(module))
        for name, member in module._named_members():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(member, _SHAREABLE):
                if id(member) in first:
                    tied[full] = first[id(member)]
                else:
                    first[id(member)] = full
            elif id(member) not in seen:
                walk(member, full)

    walk(model, "")
    return tied


def _tie(model: Module, tied: Mapping[str, str], path: str) -> None:
    """Make each attribute named in ``tied`` the same Parameter as its first occurrence."""
    modules = dict(model.named_modules())
    members: dict[str, Any] = dict(model._named_state(_SHAREABLE))
    for alias, canonical in tied.items():
        owner_path, _, attribute = alias.rpartition(".")
        owner = modules.get(owner_path)
        target = members.get(canonical)
        current = getattr(owner, attribute, None)
        if (
            owner is None
            or target is None
            or type(current) is not type(target)
            or getattr(current, "shape", None) != getattr(target, "shape", None)
        ):
            raise StateMismatchError(
                f"{path}: the file ties {alias!r} to {canonical!r}, but the rebuilt model has no "
                "matching pair of parameters; the model's code differs from the saved one"
            )
        setattr(owner, attribute, target)


_SHAREABLE = (Parameter, Buffer, np.random.Generator)
"""The state objects that several modules may share, and that load shares again."""


def state_of(model: Module | Mapping[str, Array], caller: str) -> Mapping[str, Array]:
    """The arrays to save: a Module's live state dict (no copies), or a given mapping."""
    if isinstance(model, Module):
        return live_state(model)
    if isinstance(model, Mapping):
        return model
    raise TypeError(f"{caller} takes a Module or a dict of arrays, got {type(model).__name__}")


def live_state(model: Module) -> dict[str, Array]:
    """The state dict without copies (the arrays are only read while saving)."""
    return {name: member.data for name, member in model._state_members().items()}


def _check_model(model: object, caller: str) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{caller} takes an nnkit Module, got {type(model).__name__}")
