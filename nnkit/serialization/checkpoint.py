"""Training checkpoints: model weights, optimizer, scheduler, data-order RNG, epoch, extra."""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

import numpy as np

from nnkit._checks import as_generator
from nnkit.module import Module
from nnkit.serialization.archive import PathLike, new_header, read_file, write_archive
from nnkit.serialization.errors import CorruptFileError, StateMismatchError
from nnkit.serialization.model import (
    assign_weights,
    decode_generators,
    decode_weights,
    encode_generators,
    encode_weights,
    expected_weights,
    live_state,
)
from nnkit.serialization.tree import ArraySink, ArraySource, decode, encode

__all__ = ["Checkpoint", "Stateful", "load_checkpoint", "save_checkpoint"]


class Stateful(Protocol):
    """Anything with ``state_dict()`` / ``load_state_dict()``: an optimizer or a scheduler.

    ``state_dict()`` must return a tree of plain values (see docs/saving.md), and
    ``load_state_dict`` should check the state before changing anything.
    """

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any) -> None: ...


class Checkpoint(TypedDict):
    """What :func:`load_checkpoint` returns besides restoring the objects it was given."""

    epoch: int | None
    extra: Any


def save_checkpoint(
    path: PathLike,
    *,
    model: Module,
    optimizer: Stateful | None = None,
    scheduler: Stateful | None = None,
    epoch: int | None = None,
    extra: Any = None,
    rng: np.random.Generator | None = None,
) -> None:
    """Save everything needed to resume training exactly, to ``path``, atomically.

    Stores the model's weights (its state dict: parameters and persistent buffers, not its
    architecture), the state of every generator in the model (so dropout masks continue
    where they were), ``optimizer.state_dict()`` and
    ``scheduler.state_dict()`` with their class names, the state of ``rng`` (pass the
    generator your DataLoader shuffles with, so the resumed run sees the same data order),
    ``epoch`` and ``extra``: a tree of None, bool, int, float, str, list, tuple, dict (str or
    int keys) and numpy arrays or scalars, restored with the same types and values.

    Raises:
        SerializationError: a state or ``extra`` holds a value that cannot be stored; the
            message names where.
    """
    if not isinstance(model, Module):
        raise TypeError(f"save_checkpoint model= takes an nnkit Module, got {type(model).__name__}")
    if epoch is not None and (type(epoch) is not int):
        raise TypeError(f"epoch must be an int or None, got {epoch!r}")
    if epoch is not None and epoch < 0:
        raise ValueError(f"epoch must be >= 0 (epochs count from 0), got {epoch}")
    if rng is not None:
        as_generator(rng)  # only checks its type
    sink = ArraySink()
    weights = encode_weights(live_state(model), sink)

    def component(obj: Stateful | None, section: str) -> dict[str, Any] | None:
        if obj is None:
            return None
        where = f"{section}.state_dict() ({type(obj).__name__})"
        return {
            "class": type(obj).__name__,
            "state": encode(obj.state_dict(), sink, section, where),
        }

    header = new_header(
        "checkpoint",
        weights=weights,
        generators=encode_generators(model, sink),
        optimizer=component(optimizer, "optimizer"),
        scheduler=component(scheduler, "scheduler"),
        rng=None if rng is None else encode(rng.bit_generator.state, sink, "rng", "the rng state"),
        epoch=epoch,
        extra=encode(extra, sink, "extra", "extra"),
    )
    write_archive(path, header, sink)


def load_checkpoint(
    path: PathLike,
    *,
    model: Module,
    optimizer: Stateful | None = None,
    scheduler: Stateful | None = None,
    rng: np.random.Generator | None = None,
) -> Checkpoint:
    """Restore a checkpoint saved by :func:`save_checkpoint` into the objects given.

    Build the model, optimizer, scheduler and generator as at the start of training (any
    seed), then call this: the weights go into ``model``, the saved states into ``optimizer``,
    ``scheduler`` and ``rng`` (each only if given; the file must hold a state for each one
    given, of the same class), and ``{"epoch": ..., "extra": ...}`` is returned. Continuing
    from there is bitwise identical to never having stopped, when the checkpoint was taken at
    an epoch boundary (see docs/saving.md).

    All or nothing: the whole file is read and checked, and the generator state is checked
    against ``rng``, before anything changes; the weights are then checked against ``model``
    before any is assigned, and the model's generator states (a file of format version 1 has
    none, and leaves the generators as they are); if the optimizer or scheduler then rejects
    its state, the weights and the states already restored are put back as they were.

    Raises:
        CorruptFileError, UnsafeFileError, FormatVersionError: as for :func:`nnkit.load`.
        StateMismatchError: the weights do not fit ``model``, a state is missing from the file
            or is of another class, or an object rejected its state. Nothing was changed.
    """
    if not isinstance(model, Module):
        raise TypeError(f"load_checkpoint model= takes an nnkit Module, got {type(model).__name__}")
    if rng is not None:
        as_generator(rng)  # only checks its type
    header, source = read_file(path, ("checkpoint",), expect_weights=expected_weights(model))
    weights = decode_weights(header["weights"], source)
    generators = decode_generators(header["generators"], source)
    saved_optimizer = _decode_component(header["optimizer"], "optimizer", source)
    saved_scheduler = _decode_component(header["scheduler"], "scheduler", source)
    saved_rng = decode(header["rng"], source, "the rng state")
    extra = decode(header["extra"], source, "extra")
    epoch = header["epoch"]
    if epoch is not None and (type(epoch) is not int or epoch < 0):
        raise CorruptFileError(f"{source.path}: the epoch {epoch!r} is not an int >= 0 or null")
    source.check_all_taken()

    # Check what can be checked without changing anything.
    targets = (("optimizer", optimizer, saved_optimizer), ("scheduler", scheduler, saved_scheduler))
    for section, obj, saved in targets:
        if obj is None:
            continue
        if saved is None:
            raise StateMismatchError(
                f"{source.path} holds no {section} state (it was saved without {section}=); "
                f"leave {section}= out, or use a checkpoint that has one. Nothing was changed"
            )
        if saved[0] != type(obj).__name__:
            raise StateMismatchError(
                f"{source.path} holds the state of a {saved[0]} {section}, not of a "
                f"{type(obj).__name__}; pass a {saved[0]}. Nothing was changed"
            )
    if rng is not None:
        _check_rng_state(rng, saved_rng, source.path)

    # Restore: the weights first (load_state_dict checks them all before assigning any), then
    # the optimizer and scheduler, putting back the earlier states, weights included, on failure.
    restored: list[tuple[str, Stateful, Any]] = [("model", model, model.state_dict())]
    assign_weights(model, weights, source.path, header["version"])
    if generators:  # a file saved before generator states were kept has none
        model_generators = _Generators(model)
        restored.append(("model's generators", model_generators, model_generators.state_dict()))
        try:
            model_generators.load_state_dict(generators)
        except Exception as exc:
            outcome = _roll_back(restored)
            raise StateMismatchError(
                f"the generator states in {source.path} do not fit the model ({exc}); {outcome}"
            ) from exc
    for section, obj, saved in targets:
        if obj is None or saved is None:
            continue
        restored.append((section, obj, obj.state_dict()))
        try:
            obj.load_state_dict(saved[1])
        except Exception as exc:
            outcome = _roll_back(restored)
            raise StateMismatchError(
                f"the {section} state in {source.path} does not fit this {type(obj).__name__} "
                f"({type(exc).__name__}: {exc}); {outcome}"
            ) from exc
    if rng is not None:
        rng.bit_generator.state = saved_rng
    return {"epoch": epoch, "extra": extra}


class _Generators:
    """The model's generators as a Stateful, for the all-or-nothing restore."""

    def __init__(self, model: Module) -> None:
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return self.model.generator_state()

    def load_state_dict(self, state_dict: Any) -> None:
        self.model.load_generator_state(state_dict)


def _roll_back(restored: list[tuple[str, Stateful, Any]]) -> str:
    """Load each object's earlier state back, newest first; say how that went."""
    failed = []
    for section, obj, backup in reversed(restored):
        try:
            obj.load_state_dict(backup)
        except Exception as exc:
            failed.append(f"the {section} ({type(exc).__name__}: {exc})")
    if failed:
        return f"putting back the earlier state of {', '.join(failed)} failed, so it may be changed"
    return "nothing was changed"


def _decode_component(node: Any, section: str, source: ArraySource) -> tuple[str, Any] | None:
    """(class name, state) of a saved optimizer or scheduler, or None if none was saved."""
    if node is None:
        return None
    if type(node) is not dict or set(node) != {"class", "state"} or type(node["class"]) is not str:
        raise CorruptFileError(f"{source.path}: the {section} entry is not {{class, state}}")
    return node["class"], decode(node["state"], source, f"the {section} state")


def _check_rng_state(rng: np.random.Generator, state: Any, path: str) -> None:
    """StateMismatchError unless ``state`` can be set on ``rng``'s bit generator."""
    if state is None:
        raise StateMismatchError(
            f"{path} holds no rng state (it was saved without rng=); leave rng= out. "
            "Nothing was changed"
        )
    kind = type(rng.bit_generator)
    try:
        probe = kind()
        probe.state = state
    except Exception as exc:
        raise StateMismatchError(
            f"the rng state in {path} does not fit a {kind.__name__} generator "
            f"({type(exc).__name__}: {exc}); create the generator with the bit generator it "
            "was saved from. Nothing was changed"
        ) from exc
