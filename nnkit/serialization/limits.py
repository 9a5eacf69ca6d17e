"""What a model file may make ``nnkit.load`` allocate: no more than the weights it holds.

A model file's architecture is a list of constructors and their configs, and the weights are
loaded only after the constructors ran. A file of 1.9 KB that declares ``Dense(20000,
20000)`` therefore made ``load`` allocate 6.1 GB before it failed on the weights that do not
fit. :func:`check_parameter_sizes` compares, before any constructor runs, the parameters that
each built-in layer will create (known from its config) with the arrays the file holds: every
parameter must be there, with its shape (or be tied to one that is). A file that passes makes
the built-in layers allocate a small multiple of what its own weights take: each parameter
is allocated with its gradient, and its initial values are drawn in float64 before the
weights are loaded (``load`` of a float32 Dense(1000, 1000) peaks at 5 times the file's
size). The multiple is in values, not bytes: a config whose ``dtype`` is wider than the
file's arrays (longdouble over float32) raises it by their ratio (13 times the file).

Every built-in class has an entry in :data:`PARAMETER_SHAPES`, also those that create nothing
(an empty dict), and the check refuses a built-in class without one: a new layer cannot be
forgotten. What the entries bound, beyond each layer's parameters:

- **Buffers are required like parameters.** BatchNorm's ``running_mean``, ``running_var`` and
  ``num_batches_tracked`` (with ``track_running_stats``) are in the state dict of every file
  that holds a BatchNorm (the layer came after format version 2, which saves buffers; no
  format-1 file has one), so they are required with their shapes; a BatchNorm without
  ``affine`` is sized by them alone.
- **Children a constructor builds itself** (a TransformerEncoderLayer's ``self_attn``,
  ``norm1``, ...) are created from the *parent's* config, before the children saved in the
  file are compared with them, so the parent's entry lists their parameters too
  (``"self_attn.in_proj_weight"``). Children given to a constructor (a Sequential's layers,
  a Residual's body) are built from their own entries first, and their container creates
  nothing (an empty dict).
- **Copies.** TransformerEncoder(layer, num_layers) deep-copies its first layer: the copies
  ``layers.1`` ... must be in the file too, with the first layer's parameters.
- **Tables without parameters.** SinusoidalPositionalEncoding computes a float64 table of
  ``max_len * d_model`` values that the file does not hold: more than
  :data:`MAX_TABLE_VALUES` is refused.
- **Tied parameters** must be tied to a held weight of their shape, and together may hold at
  most :data:`MAX_TIED_RATIO` times the values the file's weights hold: each tied layer
  allocates its own parameter before the tie is restored, so without a limit one weight tied
  to thousands of layers would multiply it.

Layers of registered custom classes (also subclasses of built-in ones) are built by their
own code from the file's config, so their size is not known in advance and is not bounded
here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from nnkit import layers
from nnkit._checks import check_bool, check_int
from nnkit.containers import Concat, Parallel, Residual, Sequential
from nnkit.graph import Graph
from nnkit.layers import (
    GRU,
    LSTM,
    RNN,
    AdaptiveAvgPool2d,
    Add,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Concatenate,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Dropout2d,
    Embedding,
    FinalState,
    Flatten,
    GroupNorm,
    LastTimeStep,
    LayerNorm,
    MaxPool1d,
    MaxPool2d,
    MultiheadAttention,
    Multiply,
    PositionalEmbedding,
    Reshape,
    SequenceOutput,
    SinusoidalPositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    Unflatten,
    activations,
)
from nnkit.layers._windows import spatial_tuple
from nnkit.module import Module
from nnkit.serialization.architecture import ChildRef, Plan
from nnkit.serialization.errors import CorruptFileError, SerializationError

__all__ = [
    "MAX_TABLE_VALUES",
    "MAX_TIED_RATIO",
    "PARAMETER_SHAPES",
    "Shapes",
    "check_parameter_sizes",
]

Shapes = Mapping[str, tuple[int, ...]]
"""A layer's parameters (and persistent buffers): ``{attribute: shape}``, the attribute as
its state-dict key relative to the layer (``"weight"``, ``"out_proj.weight"``)."""

MAX_TABLE_VALUES = 2**25
"""The most values (33,554,432: 256 MiB of float64) of a table that a constructor computes
from its config alone, without the file holding it (SinusoidalPositionalEncoding's
``max_len * d_model``). The default ``max_len`` of 5000 allows ``d_model`` up to 6710."""

MAX_TIED_RATIO = 8
"""Tied parameters may together hold at most this many times the values of the file's weights
(a weight shared by two layers takes one time more)."""


class _Invalid(Exception):
    """The constructor refuses this config before it allocates anything."""


class _Refused(Exception):
    """The config asks for an allocation that no weight in the file bounds; the message says
    what, completing "the architecture declares <module> as a <class> whose ..."."""


class _Generated(Mapping[str, tuple[int, ...]]):
    """Shapes listed on demand, for a layer whose number of parameters its config sets (an
    RNN's ``num_layers``): a list built in advance would be as large as the file claims, and
    the check stops at the first parameter the file lacks."""

    def __init__(self, items: Callable[[], Iterator[tuple[str, tuple[int, ...]]]]) -> None:
        self._items = items

    def pairs(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """The (name, shape) pairs, each name once (the first shape listed for it)."""
        seen: set[str] = set()  # only as large as the iteration went
        for name, shape in self._items():
            if name not in seen:
                seen.add(name)
                yield name, shape

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.pairs())

    def __bool__(self) -> bool:  # without counting them all: ``shapes or {}`` stays cheap
        return next(self._items(), None) is not None

    def __len__(self) -> int:  # counts them: as long as the config says
        return sum(1 for _ in self.pairs())

    def __getitem__(self, key: str) -> tuple[int, ...]:
        for name, shape in self.pairs():
            if name == key:
                return shape
        raise KeyError(key)


def _pairs(shapes: Shapes) -> Iterator[tuple[str, tuple[int, ...]]]:
    return shapes.pairs() if isinstance(shapes, _Generated) else iter(shapes.items())


# -- reading a config as the constructor does -------------------------------------------------
_REQUIRED: Any = object()


def _get(config: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    if key in config:
        return config[key]
    if default is _REQUIRED:
        raise _Invalid  # a missing argument: the call fails before the constructor runs
    return default


def _int(config: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> int:
    """The argument ``key`` as the constructors' ``check_int(..., 1)`` reads it."""
    try:
        return check_int(key, _get(config, key, default), 1)
    except (TypeError, ValueError):
        raise _Invalid from None


def _strict_flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    """A flag that the constructor requires to be a bool (``type(value) is not bool``)."""
    value = _get(config, key, default)
    if type(value) is not bool:
        raise _Invalid
    return value


def _truthy(config: Mapping[str, Any], key: str, default: bool) -> bool:
    """A flag that the constructor reads by truthiness (``if bias:``, ``bool(affine)``)."""
    try:
        return bool(_get(config, key, default))
    except Exception:  # bool() of an array raises in the constructor too
        raise _Invalid from None


def _spatial(
    config: Mapping[str, Any], key: str, rank: int, default: Any = _REQUIRED
) -> tuple[int, ...]:
    """A kernel size, stride or dilation as ``spatial_tuple`` reads it (ints >= 1)."""
    try:
        return spatial_tuple("layer", key, _get(config, key, default), rank, 1)
    except (TypeError, ValueError):
        raise _Invalid from None


def _entry(
    shapes_of: Callable[[Mapping[str, Any]], Shapes],
) -> Callable[[Mapping[str, Any]], Shapes | None]:
    """``shapes_of`` returning None where it raises _Invalid."""

    def entry(config: Mapping[str, Any]) -> Shapes | None:
        try:
            return shapes_of(config)
        except _Invalid:
            return None

    entry.__name__ = entry.__qualname__ = shapes_of.__name__
    entry.__doc__ = shapes_of.__doc__
    return entry


def _prefixed(prefix: str, shapes: Shapes) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": shape for name, shape in _pairs(shapes)}


# -- the layers ------------------------------------------------------------------------------
def _positive_int(value: object) -> int | None:
    """``value`` as an int if it is an integer >= 1 (not a bool), else None."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    return None


def _none(config: Mapping[str, Any]) -> Shapes:
    """No parameters, whatever the config."""
    return {}


def _dense_shapes(n_in: int, n_out: int, bias: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"weight": (n_in, n_out)}
    if bias:
        shapes["bias"] = (n_out,)
    return shapes


@_entry
def _dense(config: Mapping[str, Any]) -> Shapes:
    """Dense: weight (in_features, out_features), bias (out_features,)."""
    n_in = _positive_int(_get(config, "in_features"))
    n_out = _positive_int(_get(config, "out_features"))
    if n_in is None or n_out is None:
        raise _Invalid
    try:
        bias = check_bool("bias", _get(config, "bias", True))
    except TypeError:
        raise _Invalid from None
    return _dense_shapes(n_in, n_out, bias)


def _conv(rank: int, transposed: bool) -> Callable[[Mapping[str, Any]], Shapes | None]:
    @_entry
    def conv(config: Mapping[str, Any]) -> Shapes:
        """Conv1d, Conv2d: weight (out, in // groups, *kernel); ConvTranspose2d: weight
        (in, out // groups, *kernel); bias (out,)."""
        n_in, n_out = _int(config, "in_channels"), _int(config, "out_channels")
        groups = _int(config, "groups", 1)
        if n_in % groups or n_out % groups:
            raise _Invalid
        kernel = _spatial(config, "kernel_size", rank)
        _spatial(config, "stride", rank, 1)
        _spatial(config, "dilation", rank, 1)
        weight = (n_in, n_out // groups) if transposed else (n_out, n_in // groups)
        shapes: dict[str, tuple[int, ...]] = {"weight": (*weight, *kernel)}
        if _truthy(config, "bias", True):
            shapes["bias"] = (n_out,)
        return shapes

    return conv


@_entry
def _batchnorm(config: Mapping[str, Any]) -> Shapes:
    """BatchNorm1d/2d: weight and bias (num_features,) with ``affine``; the buffers
    running_mean, running_var (num_features,) and num_batches_tracked () with
    ``track_running_stats``."""
    c = _int(config, "num_features")
    shapes: dict[str, tuple[int, ...]] = {}
    if _truthy(config, "affine", True):
        shapes |= {"weight": (c,), "bias": (c,)}
    if _truthy(config, "track_running_stats", True):
        shapes |= {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}
    return shapes


def _layernorm_shapes(dims: tuple[int, ...], affine: bool, bias: bool) -> Shapes:
    shapes: dict[str, tuple[int, ...]] = {}
    if affine:
        shapes["weight"] = dims
        if bias:
            shapes["bias"] = dims
    return shapes


@_entry
def _layernorm(config: Mapping[str, Any]) -> Shapes:
    """LayerNorm: weight and bias of shape normalized_shape (bias only with ``bias``), with
    ``elementwise_affine``."""
    given = _get(config, "normalized_shape")
    shape = (given,) if isinstance(given, int) else given
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    if (
        not dims
        or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in dims)
        or any(d < 1 for d in dims)
    ):
        raise _Invalid
    return _layernorm_shapes(
        tuple(int(d) for d in dims),
        _truthy(config, "elementwise_affine", True),
        _truthy(config, "bias", True),
    )


@_entry
def _groupnorm(config: Mapping[str, Any]) -> Shapes:
    """GroupNorm: weight and bias (num_channels,) with ``affine``."""
    groups, channels = _int(config, "num_groups"), _int(config, "num_channels")
    if channels % groups:
        raise _Invalid
    return {"weight": (channels,), "bias": (channels,)} if _truthy(config, "affine", True) else {}


@_entry
def _embedding(config: Mapping[str, Any]) -> Shapes:
    """Embedding: weight (num_embeddings, embedding_dim)."""
    return {"weight": (_int(config, "num_embeddings"), _int(config, "embedding_dim"))}


@_entry
def _positional_embedding(config: Mapping[str, Any]) -> Shapes:
    """PositionalEmbedding: weight (max_len, d_model)."""
    return {"weight": (_int(config, "max_len"), _int(config, "d_model"))}


@_entry
def _sinusoidal(config: Mapping[str, Any]) -> Shapes:
    """SinusoidalPositionalEncoding: no parameters, but a float64 table (max_len, d_model)
    computed in the constructor: refused above MAX_TABLE_VALUES values."""
    d_model, max_len = _int(config, "d_model"), _int(config, "max_len", 5000)
    _strict_flag(config, "batch_first", False)
    values = max_len * d_model
    if values > MAX_TABLE_VALUES:
        raise _Refused(
            f"whose table of max_len x d_model = {max_len} x {d_model} = {values:,} values "
            f"(computed when it is built; the file holds no such array) is more than the "
            f"{MAX_TABLE_VALUES:,} values nnkit.load builds from a config alone. If the model "
            "is yours, build it in code and load its weights with nnkit.load_weights"
        )
    return {}


def _recurrent(gates: int) -> Callable[[Mapping[str, Any]], Shapes | None]:
    @_entry
    def recurrent(config: Mapping[str, Any]) -> Shapes:
        """RNN (1 gate), GRU (3), LSTM (4): for each layer l and direction (suffix "" or
        "_reverse"): weight_ih_l{l} (gates * hidden, input), weight_hh_l{l}
        (gates * hidden, hidden), and with ``bias`` bias_ih_l{l}, bias_hh_l{l}
        (gates * hidden,); the input of layer l > 0 is hidden * directions."""
        if gates == 1 and _get(config, "nonlinearity", "tanh") not in ("tanh", "relu"):
            raise _Invalid
        n_in, hidden = _int(config, "input_size"), _int(config, "hidden_size")
        count = _int(config, "num_layers", 1)
        bias = _strict_flag(config, "bias", True)
        _strict_flag(config, "batch_first", False)
        directions = 2 if _strict_flag(config, "bidirectional", False) else 1
        rows = gates * hidden

        def items() -> Iterator[tuple[str, tuple[int, ...]]]:
            for layer in range(count):
                layer_input = n_in if layer == 0 else hidden * directions
                for direction in range(directions):
                    suffix = f"_l{layer}" + ("_reverse" if direction else "")
                    yield f"weight_ih{suffix}", (rows, layer_input)
                    yield f"weight_hh{suffix}", (rows, hidden)
                    if bias:
                        yield f"bias_ih{suffix}", (rows,)
                        yield f"bias_hh{suffix}", (rows,)

        return _Generated(items)

    return recurrent


def _attention_shapes(e: int, kdim: int, vdim: int, bias: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = (
        {"in_proj_weight": (3 * e, e)}
        if kdim == e and vdim == e
        else {"q_proj_weight": (e, e), "k_proj_weight": (e, kdim), "v_proj_weight": (e, vdim)}
    )
    if bias:
        shapes["in_proj_bias"] = (3 * e,)
    shapes["out_proj.weight"] = (e, e)
    if bias:
        shapes["out_proj.bias"] = (e,)
    return shapes


@_entry
def _attention(config: Mapping[str, Any]) -> Shapes:
    """MultiheadAttention: in_proj_weight (3E, E) when kdim == vdim == E, else
    q_proj_weight (E, E), k_proj_weight (E, kdim), v_proj_weight (E, vdim); out_proj.weight
    (E, E); with ``bias``, in_proj_bias (3E,) and out_proj.bias (E,)."""
    e, heads = _int(config, "embed_dim"), _int(config, "num_heads")
    if e % heads:
        raise _Invalid
    kdim = e if _get(config, "kdim", None) is None else _int(config, "kdim")
    vdim = e if _get(config, "vdim", None) is None else _int(config, "vdim")
    return _attention_shapes(e, kdim, vdim, _strict_flag(config, "bias", True))


@_entry
def _encoder_layer(config: Mapping[str, Any]) -> Shapes:
    """TransformerEncoderLayer: its constructor builds self_attn (MultiheadAttention of
    d_model), linear1 (weight (dim_feedforward, d_model)) and linear2 (weight (d_model,
    dim_feedforward)) in PyTorch's layout, norm1 and norm2 (LayerNorm(d_model)), biases with
    ``bias``; all from this config, so all are listed here."""
    d, heads = _int(config, "d_model"), _int(config, "nhead")
    feedforward = _int(config, "dim_feedforward", 2048)
    if d % heads:
        raise _Invalid
    bias = _strict_flag(config, "bias", True)
    linear1: dict[str, tuple[int, ...]] = {"weight": (feedforward, d)}
    linear2: dict[str, tuple[int, ...]] = {"weight": (d, feedforward)}
    if bias:
        linear1["bias"], linear2["bias"] = (feedforward,), (d,)
    norm = _layernorm_shapes((d,), True, bias)
    return {
        **_prefixed("self_attn", _attention_shapes(d, d, d, bias)),
        **_prefixed("linear1", linear1),
        **_prefixed("linear2", linear2),
        **_prefixed("norm1", norm),
        **_prefixed("norm2", norm),
    }


@_entry
def _encoder(config: Mapping[str, Any]) -> Shapes:
    """TransformerEncoder: ``num_layers`` deep copies of its encoder_layer (the child
    ``layers.0``, built from its own entry first), named ``layers.{i}``: the parameters of
    the encoder layer's subtree, under each copy's name."""
    layer = _get(config, "encoder_layer")
    if not isinstance(layer, Plan) or not issubclass(layer.cls, TransformerEncoderLayer):
        raise _Invalid  # the constructor refuses anything but a TransformerEncoderLayer
    count = _int(config, "num_layers")
    _strict_flag(config, "causal", False)
    if next(_subtree(layer), None) is None:
        return {}  # a custom layer class of unknown size: not bounded (see the module doc)

    def items() -> Iterator[tuple[str, tuple[int, ...]]]:
        for i in range(count):
            for name, shape in _subtree(layer):
                yield f"layers.{i}.{name}", shape

    return _Generated(items)


def _subtree(plan: Plan, prefix: str = "") -> Iterator[tuple[str, tuple[int, ...]]]:
    """The parameters of ``plan`` and its saved descendants, by name relative to ``plan``
    (modules reached again through a reference are left out: their parameters are saved
    under their first name)."""
    shapes_of = PARAMETER_SHAPES.get(plan.cls)
    shapes = shapes_of(plan.config) if shapes_of is not None else None
    for name, shape in _pairs({} if shapes is None else shapes):
        yield prefix + name, shape
    for child_name, child in plan.children:
        if isinstance(child, Plan):
            yield from _subtree(child, f"{prefix}{child_name}.")


PARAMETER_SHAPES: dict[type[Module], Callable[[Mapping[str, Any]], Shapes | None]] = {
    **{getattr(activations, name): _none for name in activations.__all__},
    Dense: _dense,
    Conv1d: _conv(1, transposed=False),
    Conv2d: _conv(2, transposed=False),
    ConvTranspose2d: _conv(2, transposed=True),
    BatchNorm1d: _batchnorm,
    BatchNorm2d: _batchnorm,
    LayerNorm: _layernorm,
    GroupNorm: _groupnorm,
    Embedding: _embedding,
    PositionalEmbedding: _positional_embedding,
    SinusoidalPositionalEncoding: _sinusoidal,
    RNN: _recurrent(1),
    GRU: _recurrent(3),
    LSTM: _recurrent(4),
    MultiheadAttention: _attention,
    TransformerEncoderLayer: _encoder_layer,
    TransformerEncoder: _encoder,
    **{
        cls: _none
        for cls in (
            # pooling, reshaping, dropout, merging, sequence adapters: no parameters
            AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d,
            Flatten, Reshape, Unflatten, Dropout, Dropout2d, Add, Concatenate, Multiply,
            FinalState, LastTimeStep, SequenceOutput,
            # containers: their modules are children, built from their own entries
            Sequential, Residual, Concat, Parallel, Graph,
        )
    },
}  # fmt: skip
"""For each built-in class, its parameters' (and persistent buffers') shapes by attribute
name, computed from a config without building it (modules in the config given as their
:class:`~nnkit.serialization.architecture.Plan`); None when the config is invalid (the
constructor refuses it before allocating). A new built-in layer adds its entry here, also if
it has no parameters (``_none``): the check refuses a built-in class without an entry."""

_BUILT_IN: frozenset[type[Module]] = frozenset(
    {getattr(layers, name) for name in layers.__all__}
    | {Sequential, Residual, Concat, Parallel, Graph}
)


# -- the check -------------------------------------------------------------------------------
def check_parameter_sizes(
    plan: Plan, weights: Mapping[str, Any], tied: Mapping[str, str], path: str
) -> None:
    """Refuse a file whose architecture declares built-in layers larger than its weights.

    Call it after the file is read and its architecture parsed, before
    :func:`~nnkit.serialization.architecture.build` runs a constructor. ``weights`` maps the
    state-dict keys the file holds to arrays (or anything with a ``shape``), ``tied`` is the
    header's ``{alias: first name}``. Modules are checked children first, so a message names
    the innermost module at fault.

    Raises:
        CorruptFileError: a built-in layer's parameter is neither among the weights with its
            shape nor tied to one that is; a table larger than MAX_TABLE_VALUES; tied
            parameters holding more than MAX_TIED_RATIO times the weights' values. The
            message names the module, its class and the shapes.
        SerializationError: a built-in class has no entry in PARAMETER_SHAPES (a bug in
            nnkit: nothing is built rather than something unbounded).
    """
    held_values = sum(_values(tuple(array.shape)) for array in weights.values())
    aliases: dict[str, int] = {}  # the tied parameters required, and their values

    def refuse(node: Plan, problem: str) -> CorruptFileError:
        where = f"module {node.path!r}" if node.path else "the model"
        return CorruptFileError(
            f"{path}: the architecture declares {where} as a {node.name} {problem}; refusing "
            "to build it (it would allocate memory for weights the file does not have). The "
            "file is damaged or was not written by nnkit"
        )

    def visit(node: Plan) -> None:
        for _, child in node.children:
            if isinstance(child, Plan):
                visit(child)
        shapes_of = PARAMETER_SHAPES.get(node.cls)
        if shapes_of is None:
            if node.cls in _BUILT_IN:
                raise SerializationError(
                    f"{path}: {node.path or 'the model'!r} is a built-in {node.name}, which has "
                    "no entry in nnkit.serialization.limits.PARAMETER_SHAPES, so the size of "
                    "what it would allocate cannot be checked; refusing to build it (this is a "
                    "bug in nnkit: please report it)"
                )
            return  # a registered custom class: its own code decides (not bounded)
        for attribute, shape in _guarded(node, shapes_of, refuse):
            name = f"{node.path}.{attribute}" if node.path else attribute
            target = name if name in weights or name not in tied else tied[name]
            held = weights.get(target)
            held_shape = None if held is None else tuple(held.shape)
            if held_shape != shape:
                if target != name:
                    holds = f"ties {name!r} to {target!r}, " + (
                        "which it does not hold"
                        if held is None
                        else f"which has shape {held_shape}"
                    )
                elif held is None:
                    holds = f"holds no {name!r}"
                else:
                    holds = f"holds {name!r} of shape {held_shape}"
                raise refuse(
                    node,
                    f"whose {attribute} has shape {shape} ({_values(shape):,} values), but the "
                    f"file {holds}",
                )
            if target != name:
                aliases[name] = _values(shape)

    visit(_resolved(plan))
    tied_values = sum(aliases.values())
    if tied_values > MAX_TIED_RATIO * held_values:
        raise CorruptFileError(
            f"{path}: the architecture has {len(aliases)} tied parameters of {tied_values:,} "
            f"values, more than {MAX_TIED_RATIO} times the {held_values:,} values of the "
            "file's weights; refusing to build it (every tied layer allocates its own "
            "parameter before the tie is restored). The file is damaged or was not written "
            "by nnkit"
        )


def _guarded(
    node: Plan,
    shapes_of: Callable[[Mapping[str, Any]], Shapes | None],
    refuse: Callable[[Plan, str], CorruptFileError],
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The (attribute, shape) pairs of ``node``'s entry; a config that the entry cannot read
    (an array where a string belongs makes ``in`` raise) is refused, not let through."""
    try:
        shapes = shapes_of(node.config)
        pairs = _pairs({} if shapes is None else shapes)
        while (pair := next(pairs, None)) is not None:
            yield pair
    except _Refused as exc:
        raise refuse(node, str(exc)) from None
    except Exception as exc:
        raise refuse(
            node, f"whose config cannot be read as its constructor's ({type(exc).__name__}: {exc})"
        ) from None


def _values(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _resolved(plan: Plan) -> Plan:
    """A copy of ``plan`` whose configs hold, in place of each module reference, the Plan of
    that module (a TransformerEncoder's entry reads its encoder layer's). ``plan`` itself,
    which build() uses, is left as it is."""
    done: dict[str, Plan] = {}

    def copy(node: Plan) -> Plan:
        children: list[tuple[str, Plan | str]] = [
            (name, copy(child) if isinstance(child, Plan) else child)
            for name, child in node.children
        ]
        by_name = {
            name: child if isinstance(child, Plan) else done.get(child)
            for name, child in children
        }

        def substitute(value: Any) -> Any:
            if isinstance(value, ChildRef):
                return by_name.get(value.name) or value
            if type(value) is list:
                return [substitute(v) for v in value]
            if type(value) is tuple:
                return tuple(substitute(v) for v in value)
            if type(value) is dict:
                return {k: substitute(v) for k, v in value.items()}
            return value

        resolved = dataclasses.replace(node, config=substitute(node.config), children=children)
        done[node.path] = resolved
        return resolved

    return copy(plan)
