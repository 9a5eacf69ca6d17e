"""The tables of built-in layers and losses that the parametrized tests run over.

A new layer or loss is added here once, and every table-driven test covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sequence_adapters import Harnessed
from stateful_layers import Center, Noise

import nnkit


@dataclass(frozen=True)
class LayerCase:
    """A module to test: how to build it, the shape of its input (and of further inputs), and
    the traits check_module needs beyond what it infers (``options``)."""

    name: str
    make: Callable[[np.random.Generator], nnkit.Module]
    in_shape: tuple[int, ...] = (5, 4)
    batch_independent: bool | str = True
    options: dict[str, Any] = field(default_factory=dict)
    more_inputs: tuple[tuple[int, ...], ...] = ()
    data: Callable[[np.random.Generator], tuple[Any, ...]] | None = None
    """Builds the inputs instead of normal draws of the shapes (integer indices, say)."""

    def inputs(self, rng: np.random.Generator) -> tuple[Any, ...]:
        """Random inputs of the case's shapes (or from ``data``)."""
        if self.data is not None:
            return self.data(rng)
        shapes = (self.in_shape, *self.more_inputs)
        return tuple(rng.normal(size=shape) for shape in shapes)


def _seq(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Sequential(
        nnkit.Dense(4, 6, rng=rng), nnkit.Tanh(), nnkit.Dense(6, 3, rng=rng), nnkit.LogSoftmax()
    )


LAYERS = [
    LayerCase("Dense", lambda rng: nnkit.Dense(4, 3, rng=rng)),
    LayerCase("Dense-nobias", lambda rng: nnkit.Dense(4, 3, bias=False, rng=rng)),
    LayerCase("Dense-xavier", lambda rng: nnkit.Dense(4, 3, rng=rng, weight_init="xavier_normal")),
    LayerCase("Dense-3d", lambda rng: nnkit.Dense(4, 3, rng=rng), in_shape=(5, 2, 4)),
    LayerCase(
        "Dense-4d-nobias", lambda rng: nnkit.Dense(4, 2, bias=False, rng=rng), in_shape=(3, 2, 2, 4)
    ),
    LayerCase("Identity", lambda rng: nnkit.Identity()),
    LayerCase("Sigmoid", lambda rng: nnkit.Sigmoid()),
    LayerCase("Tanh", lambda rng: nnkit.Tanh()),
    LayerCase("ReLU", lambda rng: nnkit.ReLU()),
    LayerCase("LeakyReLU", lambda rng: nnkit.LeakyReLU(0.1)),
    LayerCase("ELU", lambda rng: nnkit.ELU(0.7)),
    LayerCase("GELU", lambda rng: nnkit.GELU()),
    LayerCase("Softplus", lambda rng: nnkit.Softplus()),
    LayerCase("SiLU", lambda rng: nnkit.SiLU()),
    LayerCase("Softmax", lambda rng: nnkit.Softmax()),
    LayerCase("Softmax-axis0", lambda rng: nnkit.Softmax(axis=0), batch_independent=False),
    LayerCase("LogSoftmax", lambda rng: nnkit.LogSoftmax()),
    LayerCase("Softmax-3d", lambda rng: nnkit.Softmax(axis=1), in_shape=(3, 4, 2)),
    LayerCase("Sequential", _seq),
    LayerCase("Sequential-nested", lambda rng: nnkit.Sequential(_seq(rng), nnkit.Dense(3, 2))),
    LayerCase(
        "Sequential-tuples",
        lambda rng: nnkit.Sequential(
            nnkit.Parallel(nnkit.Dense(4, 3, rng=rng), nnkit.Tanh()), nnkit.Multiply()
        ),
        in_shape=(5, 4),
        more_inputs=((5, 3),),
    ),
    LayerCase(
        "Residual",
        lambda rng: nnkit.Residual(nnkit.Sequential(nnkit.Dense(4, 4, rng=rng), nnkit.Tanh())),
    ),
    LayerCase(
        "Residual-shortcut",
        lambda rng: nnkit.Residual(
            nnkit.Sequential(nnkit.Dense(4, 3, rng=rng), nnkit.Tanh()), nnkit.Dense(4, 3, rng=rng)
        ),
    ),
    LayerCase(
        "Concat",
        lambda rng: nnkit.Concat(
            nnkit.Dense(4, 2, rng=rng), nnkit.Tanh(), nnkit.Sequential(nnkit.Dense(4, 3, rng=rng))
        ),
    ),
    LayerCase(
        "Concat-axis0",
        lambda rng: nnkit.Concat(nnkit.Tanh(), nnkit.Sigmoid(), axis=0),
        batch_independent=False,
        options={"empty_batch": False},
    ),
    LayerCase(
        "Parallel",
        lambda rng: nnkit.Parallel(nnkit.Dense(4, 2, rng=rng), nnkit.ReLU()),
        more_inputs=((5, 3),),
    ),
    LayerCase("Add", lambda rng: nnkit.Add(), more_inputs=((5, 4), (5, 4))),
    LayerCase("Multiply", lambda rng: nnkit.Multiply(), more_inputs=((5, 4),)),
    LayerCase("Concatenate", lambda rng: nnkit.Concatenate(), more_inputs=((5, 2),)),
    LayerCase(
        "Concatenate-last",
        lambda rng: nnkit.Concatenate(axis=-1),
        in_shape=(5, 2, 3),
        more_inputs=((5, 2, 1),),
    ),
    LayerCase("Graph", lambda rng: _graph(rng)),
    LayerCase("Graph-two-in-two-out", lambda rng: _graph2(rng), more_inputs=((5, 3),)),
    LayerCase(
        "Center", lambda rng: Center(4), batch_independent="eval", options={"empty_batch": "eval"}
    ),
    LayerCase("Noise", lambda rng: Noise(0.3, rng=np.random.default_rng(5))),
    LayerCase(
        "Sequential-stateful",
        lambda rng: nnkit.Sequential(
            nnkit.Dense(4, 4, rng=rng),
            Center(4),
            Noise(0.5, rng=np.random.default_rng(1)),
            nnkit.Dense(4, 2, rng=rng),
        ),
        batch_independent="eval",
        options={"empty_batch": "eval"},
    ),
]


def _indices(rng: np.random.Generator) -> tuple[Any, ...]:
    """Token ids (5, 3) into a table of 7 rows, with repeats, never the last row (6).

    The padding cases pad with row 6, which does not appear: a padding row gets no gradient by
    design (PyTorch's semantics), which finite differences would flag. tests/test_torch_layers.py
    checks padding ids in the input.
    """
    ids = rng.integers(0, 6, size=(5, 3))
    ids[0, :] = [2, 2, 5]
    return (ids,)


BATCH_NORM: dict[str, Any] = {"batch_independent": "eval"}  # mixes samples in training

NORMALIZATION_AND_DROPOUT = [
    LayerCase("BatchNorm1d", lambda rng: nnkit.BatchNorm1d(4), **BATCH_NORM),
    LayerCase(
        "BatchNorm1d-NCL", lambda rng: nnkit.BatchNorm1d(3), in_shape=(5, 3, 4), **BATCH_NORM
    ),
    LayerCase(
        "BatchNorm1d-cumulative",
        lambda rng: nnkit.BatchNorm1d(4, momentum=None, eps=1e-3),
        **BATCH_NORM,
    ),
    LayerCase(
        "BatchNorm1d-no-affine", lambda rng: nnkit.BatchNorm1d(4, affine=False), **BATCH_NORM
    ),
    LayerCase(
        "BatchNorm1d-batch-stats-only",
        lambda rng: nnkit.BatchNorm1d(4, track_running_stats=False),
        batch_independent=False,
    ),
    LayerCase(
        "BatchNorm1d-bare",
        lambda rng: nnkit.BatchNorm1d(4, affine=False, track_running_stats=False),
        batch_independent=False,
    ),
    LayerCase("BatchNorm2d", lambda rng: nnkit.BatchNorm2d(3), in_shape=(4, 3, 2, 3), **BATCH_NORM),
    LayerCase(
        "BatchNorm2d-momentum",
        lambda rng: nnkit.BatchNorm2d(2, momentum=0.5),
        in_shape=(3, 2, 2, 2),
        **BATCH_NORM,
    ),
    LayerCase("GroupNorm", lambda rng: nnkit.GroupNorm(3, 6), in_shape=(4, 6, 3)),
    LayerCase("GroupNorm-2d", lambda rng: nnkit.GroupNorm(2, 6), in_shape=(4, 6)),
    LayerCase("GroupNorm-one-group", lambda rng: nnkit.GroupNorm(1, 4), in_shape=(3, 4, 2, 3)),
    LayerCase(
        "GroupNorm-per-channel",
        lambda rng: nnkit.GroupNorm(4, 4, affine=False),
        in_shape=(3, 4, 2, 3),
    ),
    LayerCase("LayerNorm", lambda rng: nnkit.LayerNorm(4)),
    LayerCase("LayerNorm-2d", lambda rng: nnkit.LayerNorm((3, 4)), in_shape=(5, 3, 4)),
    LayerCase("LayerNorm-3d-input", lambda rng: nnkit.LayerNorm(4), in_shape=(5, 2, 4)),
    LayerCase("LayerNorm-no-affine", lambda rng: nnkit.LayerNorm(4, elementwise_affine=False)),
    LayerCase("LayerNorm-no-bias", lambda rng: nnkit.LayerNorm(4, eps=1e-3, bias=False)),
    LayerCase("Dropout", lambda rng: nnkit.Dropout(0.3, rng=np.random.default_rng(3))),
    LayerCase(
        "Dropout-3d",
        lambda rng: nnkit.Dropout(0.5, rng=np.random.default_rng(4)),
        in_shape=(5, 2, 3),
    ),
    LayerCase("Dropout-p0", lambda rng: nnkit.Dropout(0.0, rng=np.random.default_rng(4))),
    LayerCase("Dropout-p1", lambda rng: nnkit.Dropout(1.0, rng=np.random.default_rng(4))),
    LayerCase(
        "Dropout2d",
        lambda rng: nnkit.Dropout2d(0.4, rng=np.random.default_rng(5)),
        in_shape=(5, 3, 2, 2),
    ),
    LayerCase(
        "Dropout2d-NCL",
        lambda rng: nnkit.Dropout2d(0.4, rng=np.random.default_rng(6)),
        in_shape=(5, 3, 4),
    ),
    LayerCase("Embedding", lambda rng: nnkit.Embedding(7, 3, rng=rng), data=_indices),
    LayerCase(
        "Embedding-padding",
        lambda rng: nnkit.Embedding(7, 3, padding_idx=6, rng=rng),
        data=_indices,
    ),
    LayerCase(
        "Sequential-embedding-layernorm",
        lambda rng: nnkit.Sequential(
            nnkit.Embedding(7, 4, padding_idx=-1, rng=rng),
            nnkit.LayerNorm(4),
            nnkit.Dropout(0.2, rng=np.random.default_rng(7)),
            nnkit.Dense(4, 2, rng=rng),
        ),
        data=_indices,
    ),
    LayerCase(
        "Sequential-dense-batchnorm-dropout",
        lambda rng: nnkit.Sequential(
            nnkit.Dense(4, 6, rng=rng),
            nnkit.BatchNorm1d(6),
            nnkit.ReLU(),
            nnkit.Dropout(0.3, rng=np.random.default_rng(8)),
            nnkit.Dense(6, 2, rng=rng),
        ),
        **BATCH_NORM,
    ),
]
LAYERS += NORMALIZATION_AND_DROPOUT


def _graph(rng: np.random.Generator) -> nnkit.Module:
    """Fan-out (h feeds two branches and the output) and fan-in (a merge node)."""
    return nnkit.Graph(
        inputs="x",
        nodes={
            "h": (nnkit.Dense(4, 3, rng=rng), "x"),
            "a": (nnkit.Tanh(), "h"),
            "b": (nnkit.Sigmoid(), "h"),
            "ab": (nnkit.Multiply(), ["a", "b"]),
            "out": (nnkit.Add(), ["ab", "h"]),
        },
        outputs="out",
    )


def _graph2(rng: np.random.Generator) -> nnkit.Module:
    """Two inputs, two outputs, one of them also feeding the other."""
    return nnkit.Graph(
        inputs=["x", "z"],
        nodes={
            "hx": (nnkit.Dense(4, 3, rng=rng), "x"),
            "joined": (nnkit.Add(), ["hx", "z"]),
            "score": (nnkit.Dense(3, 1, rng=rng), "joined"),
            "gate": (nnkit.Sigmoid(), "joined"),
        },
        outputs=["gate", "score"],
    )


ACTIVATIONS = [
    case
    for case in LAYERS
    if case.name
    in {
        "Identity",
        "Sigmoid",
        "Tanh",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "GELU",
        "Softplus",
        "SiLU",
        "Softmax",
        "LogSoftmax",
    }
]
def _cnn(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Sequential(
        nnkit.Conv2d(1, 2, 3, padding=1, rng=rng), nnkit.ReLU(), nnkit.MaxPool2d(2),
        nnkit.Flatten(), nnkit.Dense(8, 3, rng=rng),
    )


# Small inputs: the finite-difference check costs two forwards per input and weight element.
CONV_LAYERS = [
    LayerCase("Conv2d", lambda rng: nnkit.Conv2d(2, 3, 3, rng=rng), (2, 2, 5, 5)),
    LayerCase(
        "Conv2d-stride2-nondivisible",  # (6 + 2 - 3) / 2 is not an integer on both axes
        lambda rng: nnkit.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng), (2, 2, 6, 6),
    ),
    LayerCase(
        "Conv2d-dilation", lambda rng: nnkit.Conv2d(2, 2, 2, dilation=2, padding=1, rng=rng),
        (2, 2, 5, 4),
    ),
    LayerCase(
        "Conv2d-groups-nobias",
        lambda rng: nnkit.Conv2d(4, 2, 3, padding=1, groups=2, bias=False, rng=rng),
        (2, 4, 4, 4),
    ),
    LayerCase(
        "Conv2d-same-even-kernel",  # the odd padding goes at the bottom and right
        lambda rng: nnkit.Conv2d(2, 2, (2, 4), padding="same", rng=rng), (2, 2, 4, 5),
    ),
    LayerCase(
        "Conv2d-valid-stride-tuple",
        lambda rng: nnkit.Conv2d(1, 2, (3, 2), stride=(1, 2), padding="valid", rng=rng),
        (2, 1, 5, 5),
    ),
    LayerCase(
        "Conv2d-tuple-padding",  # padding larger than the kernel's reach on the first axis
        lambda rng: nnkit.Conv2d(2, 2, 3, stride=(3, 1), padding=(2, 0), rng=rng), (2, 2, 4, 5),
    ),
    LayerCase("Conv1d", lambda rng: nnkit.Conv1d(2, 3, 3, padding=1, rng=rng), (3, 2, 7)),
    LayerCase(
        "Conv1d-stride-dilation-groups",
        lambda rng: nnkit.Conv1d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2, rng=rng),
        (2, 2, 8),
    ),
    LayerCase(
        "Conv1d-same-nobias",
        lambda rng: nnkit.Conv1d(2, 2, 4, padding="same", bias=False, rng=rng), (2, 2, 6),
    ),
    LayerCase(
        "ConvTranspose2d",
        lambda rng: nnkit.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, rng=rng),
        (2, 2, 3, 3),
    ),
    LayerCase(
        "ConvTranspose2d-groups-dilation-nobias",
        lambda rng: nnkit.ConvTranspose2d(4, 2, 2, groups=2, dilation=2, bias=False, rng=rng),
        (2, 4, 3, 2),
    ),
    LayerCase("MaxPool2d", lambda rng: nnkit.MaxPool2d(2), (2, 2, 5, 5)),
    LayerCase(
        "MaxPool2d-overlap-pad", lambda rng: nnkit.MaxPool2d(3, stride=2, padding=1), (2, 2, 5, 6)
    ),
    LayerCase("MaxPool1d", lambda rng: nnkit.MaxPool1d(3, 2, 1), (2, 2, 7)),
    LayerCase("AvgPool2d", lambda rng: nnkit.AvgPool2d(2), (2, 2, 5, 5)),
    LayerCase(
        "AvgPool2d-pad",
        lambda rng: nnkit.AvgPool2d((3, 2), stride=(2, 1), padding=(1, 1)), (2, 2, 5, 4),
    ),
    LayerCase("AvgPool1d", lambda rng: nnkit.AvgPool1d(3, 2, 1), (2, 2, 7)),
    LayerCase("AdaptiveAvgPool2d-1", lambda rng: nnkit.AdaptiveAvgPool2d(1), (2, 3, 4, 5)),
    LayerCase("AdaptiveAvgPool2d-2x3", lambda rng: nnkit.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 4)),
    LayerCase("Flatten", lambda rng: nnkit.Flatten(), (2, 3, 2, 2)),
    LayerCase("Flatten-middle", lambda rng: nnkit.Flatten(1, 2), (2, 3, 2, 2)),
    LayerCase("Unflatten", lambda rng: nnkit.Unflatten(1, (2, -1)), (3, 6)),
    LayerCase("Reshape", lambda rng: nnkit.Reshape(2, 3, -1), (2, 12)),
    LayerCase("CNN", _cnn, (2, 1, 4, 4)),
]
LAYERS += CONV_LAYERS

ACTIVATIONS = [case for case in LAYERS if case.name in {
    "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Softplus", "SiLU",
    "Softmax", "LogSoftmax",
}]


@dataclass(frozen=True)
class LossCase:
    name: str
    make: Callable[[], nnkit.Loss]
    data: Callable[[np.random.Generator, int], tuple[Any, Any]]


def _regression(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 3))


def _probabilities(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    return rng.uniform(0.05, 0.95, size=(n, 3)), rng.uniform(size=(n, 3))


def _logits_binary(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    return rng.normal(size=(n, 3)) * 3, rng.uniform(size=(n, 3))


def _logits_indices(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    return rng.normal(size=(n, 4)) * 3, rng.integers(0, 4, size=n)


def _logits_probs(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    return rng.normal(size=(n, 4)) * 3, rng.dirichlet(np.ones(4), size=n)


def _log_probs(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    return np.log(rng.dirichlet(np.ones(4), size=n)), rng.integers(0, 4, size=n)


def _logits_indices_ignored(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    pred, target = _logits_indices(rng, n)
    target[1::3] = -100  # ignore_index
    return pred, target


def _logits_indices_nd(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    """(N, C, d1) logits, e.g. a sequence of 3 steps, with targets (N, d1), some ignored."""
    target = rng.integers(0, 4, size=(n, 3))
    target[:, 1][::2] = -100
    return rng.normal(size=(n, 4, 3)) * 3, target


def _logits_probs_nd(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    """(N, C, H, W) logits with class probabilities of the same shape (classes on axis 1)."""
    probs = np.moveaxis(rng.dirichlet(np.ones(4), size=(n, 2, 2)), -1, 1)
    return rng.normal(size=(n, 4, 2, 2)) * 3, probs


def _log_probs_nd(rng: np.random.Generator, n: int) -> tuple[Any, Any]:
    # C order: gradcheck perturbs pred through reshape(-1), a copy for a non-contiguous array
    log_p = np.log(np.ascontiguousarray(np.moveaxis(rng.dirichlet(np.ones(4), size=(n, 5)), -1, 1)))
    target = rng.integers(0, 4, size=(n, 5))
    target[::2, 0] = 2  # the ignored class of the case below
    return log_p, target


CLASS_WEIGHT = [0.5, 1.0, 2.0, 3.0]

LOSSES = [
    LossCase("MSELoss", nnkit.MSELoss, _regression),
    LossCase("MSELoss-sum", lambda: nnkit.MSELoss(reduction="sum"), _regression),
    LossCase("L1Loss", nnkit.L1Loss, _regression),
    LossCase("HuberLoss", lambda: nnkit.HuberLoss(delta=0.5), _regression),
    LossCase("BCELoss", nnkit.BCELoss, _probabilities),
    LossCase("BCEWithLogitsLoss", nnkit.BCEWithLogitsLoss, _logits_binary),
    LossCase(
        "BCEWithLogitsLoss-pos_weight",
        lambda: nnkit.BCEWithLogitsLoss(pos_weight=[0.5, 2.0, 3.0]),
        _logits_binary,
    ),
    LossCase("CrossEntropyLoss", nnkit.CrossEntropyLoss, _logits_indices),
    LossCase(
        "CrossEntropyLoss-smoothing",
        lambda: nnkit.CrossEntropyLoss(label_smoothing=0.2),
        _logits_indices,
    ),
    LossCase("CrossEntropyLoss-probs", nnkit.CrossEntropyLoss, _logits_probs),
    LossCase(
        "CrossEntropyLoss-probs-smoothing",
        lambda: nnkit.CrossEntropyLoss(label_smoothing=0.1, reduction="sum"),
        _logits_probs,
    ),
    LossCase("NLLLoss", nnkit.NLLLoss, _log_probs),
    LossCase(
        "CrossEntropyLoss-weight",
        lambda: nnkit.CrossEntropyLoss(weight=CLASS_WEIGHT),
        _logits_indices,
    ),
    LossCase("CrossEntropyLoss-ignore_index", nnkit.CrossEntropyLoss, _logits_indices_ignored),
    LossCase(
        "CrossEntropyLoss-weight-smoothing-ignore",
        lambda: nnkit.CrossEntropyLoss(label_smoothing=0.2, weight=CLASS_WEIGHT),
        _logits_indices_ignored,
    ),
    LossCase("CrossEntropyLoss-nd", nnkit.CrossEntropyLoss, _logits_indices_nd),
    LossCase(
        "CrossEntropyLoss-nd-weight-smoothing-sum",
        lambda: nnkit.CrossEntropyLoss("sum", 0.1, weight=CLASS_WEIGHT),
        _logits_indices_nd,
    ),
    LossCase(
        "CrossEntropyLoss-nd-probs-weight",
        lambda: nnkit.CrossEntropyLoss(label_smoothing=0.1, weight=CLASS_WEIGHT),
        _logits_probs_nd,
    ),
    LossCase("NLLLoss-weight", lambda: nnkit.NLLLoss(weight=CLASS_WEIGHT), _log_probs),
    LossCase(
        "NLLLoss-nd-weight-ignore",
        lambda: nnkit.NLLLoss(weight=CLASS_WEIGHT, ignore_index=2),
        _log_probs_nd,
    ),
]


def ids(cases: list[Any]) -> list[str]:
    return [case.name for case in cases]


# -- sequences: recurrent layers, attention, positions -----------------------------------------
# Time-major layers are checked with batch_axis=1. ``Harnessed`` (tests/sequence_adapters.py)
# flattens an LSTM's nested (output, (h_n, c_n)) and moves h_n's batch axis next to a
# batch-first output's, which is all check_module needs to see every output and gradient.


@dataclass(frozen=True)
class SequenceCase(LayerCase):
    """A LayerCase whose inputs are built by ``make_inputs`` (masks are bool, options are
    plain values), checked with the traits in ``options`` (batch_axis, modes, ...)."""

    make_inputs: Callable[[np.random.Generator], tuple[Any, ...]] | None = None

    def inputs(self, rng: np.random.Generator) -> tuple[Any, ...]:
        if self.make_inputs is None:
            return super().inputs(rng)
        return self.make_inputs(rng)


_T, _N, _I, _H = 4, 3, 2, 3


def _recurrent_case(
    kind: str,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    h0: bool = False,
    **options: Any,
) -> SequenceCase:
    directions = 2 if bidirectional else 1
    state_shape = (num_layers * directions, _N, _H)
    x_shape = (_N, _T, _I) if batch_first else (_T, _N, _I)
    lstm = kind == "LSTM"

    def make(rng: np.random.Generator) -> nnkit.Module:
        layer = getattr(nnkit, kind)(
            _I,
            _H,
            num_layers,
            bidirectional=bidirectional,
            batch_first=batch_first,
            rng=rng,
            **options,
        )
        if not lstm and not batch_first:
            return layer  # (output, h_n) both have the batch on axis 1: checked as it is
        state_move = (1, 0) if batch_first else None
        return Harnessed(layer, lstm_state=lstm, moves=(None, state_move, state_move))

    shapes = [x_shape] + ([state_shape] * (2 if lstm else 1) if h0 else [])
    axes = [0 if batch_first else 1] + [1] * (len(shapes) - 1)
    name = "-".join(
        [
            kind,
            f"L{num_layers}",
            "bi" if bidirectional else "uni",
            "batch_first" if batch_first else "time_major",
            "h0" if h0 else "no_h0",
        ]
        + [f"{k}={v}" for k, v in options.items()]
    )
    return SequenceCase(
        name,
        make,
        in_shape=x_shape,
        more_inputs=tuple(shapes[1:]),
        options={"batch_axis": axes if len(axes) > 1 else axes[0]},
    )


def _recurrent_cases() -> list[SequenceCase]:
    cases = []
    for kind in ("RNN", "LSTM", "GRU"):
        cases += [
            _recurrent_case(kind),
            _recurrent_case(kind, h0=True),
            _recurrent_case(kind, 2, True, h0=True),
            _recurrent_case(kind, 1, True, batch_first=True),
            _recurrent_case(kind, 2, False, batch_first=True, h0=True),
            _recurrent_case(kind, 2, True, batch_first=True, dropout=0.3),
            _recurrent_case(kind, 2, False, h0=True, bias=False),
        ]
    cases.append(_recurrent_case("RNN", 2, True, h0=True, nonlinearity="relu"))
    return cases


_E, _HEADS, _L, _S = 4, 2, 3, 5


def _padding(n: int, s: int) -> Any:
    """A bool key padding mask: sample 0 keeps every key, sample 1 pads the last two, and
    sample 2 (if any) pads key 0 only."""
    mask = np.zeros((n, s), dtype=bool)
    if n > 1:
        mask[1, -2:] = True
    if n > 2:
        mask[2, 0] = True
    return mask


def _attention_inputs(batch_first: bool, kdim: int = _E, vdim: int = _E) -> Any:
    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        def seq(length: int, dim: int) -> Any:
            return rng.normal(size=(_N, length, dim) if batch_first else (length, _N, dim))

        return seq(_L, _E), seq(_S, kdim), seq(_S, vdim)

    return make


def _masked_inputs(rng: np.random.Generator) -> tuple[Any, ...]:
    q, k, v = _attention_inputs(True)(rng)
    # key_padding_mask, need_weights, a float attn_mask (differentiated), per-head weights
    return q, k, v, _padding(_N, _S), True, rng.normal(size=(_L, _S)), False


def _causal_inputs(rng: np.random.Generator) -> tuple[Any, ...]:
    x = rng.normal(size=(_L, _N, _E))
    # key 0 of sample 2 is padded, so its query 0 (which may only see key 0) sees nothing:
    # the fully masked row gives zero weights
    return x, _padding(_N, _L), False, nnkit.causal_mask(_L)


SEQUENCES = [
    *_recurrent_cases(),
    SequenceCase(
        "MultiheadAttention-batch_first",
        lambda rng: nnkit.MultiheadAttention(_E, _HEADS, batch_first=True, rng=rng),
        make_inputs=_attention_inputs(True),
    ),
    SequenceCase(
        "MultiheadAttention-time_major-kdim-vdim",
        lambda rng: Harnessed(
            nnkit.MultiheadAttention(_E, _HEADS, kdim=3, vdim=5, rng=rng), moves=(None, (0, 1))
        ),
        make_inputs=_attention_inputs(False, 3, 5),
        options={"batch_axis": 1},
    ),
    SequenceCase(
        "MultiheadAttention-masks-per_head",
        lambda rng: nnkit.MultiheadAttention(_E, _HEADS, batch_first=True, rng=rng),
        make_inputs=_masked_inputs,
        options={"batch_axis": [0, 0, 0, 0, None, None, None]},
    ),
    SequenceCase(
        "MultiheadAttention-self-causal-fully_masked_row",
        lambda rng: Harnessed(nnkit.MultiheadAttention(_E, _HEADS, rng=rng), self_attention=True),
        make_inputs=_causal_inputs,
        options={"batch_axis": [1, 0, None, None]},
    ),
    SequenceCase(
        "MultiheadAttention-dropout-nobias",
        lambda rng: nnkit.MultiheadAttention(
            _E, _HEADS, dropout=0.3, bias=False, batch_first=True, rng=rng
        ),
        make_inputs=_attention_inputs(True),
    ),
    SequenceCase(
        "TransformerEncoderLayer-time_major",
        lambda rng: nnkit.TransformerEncoderLayer(_E, _HEADS, 6, dropout=0.0, rng=rng),
        in_shape=(_S, _N, _E),
        options={"batch_axis": 1},
    ),
    SequenceCase(
        "TransformerEncoderLayer-batch_first-norm_first-gelu-dropout",
        lambda rng: nnkit.TransformerEncoderLayer(
            _E,
            _HEADS,
            6,
            dropout=0.2,
            activation="gelu",
            batch_first=True,
            norm_first=True,
            rng=rng,
        ),
        in_shape=(_N, _S, _E),
    ),
    SequenceCase(
        "TransformerEncoderLayer-causal-padding-nobias",
        lambda rng: nnkit.TransformerEncoderLayer(_E, _HEADS, 6, dropout=0.0, bias=False, rng=rng),
        make_inputs=lambda rng: (
            rng.normal(size=(_S, _N, _E)),
            nnkit.causal_mask(_S),
            _padding(_N, _S),
        ),
        options={"batch_axis": [1, None, 0]},
    ),
    SequenceCase(
        "TransformerEncoder-2-norm-float_mask",
        lambda rng: nnkit.TransformerEncoder(
            nnkit.TransformerEncoderLayer(_E, _HEADS, 6, dropout=0.0, batch_first=True, rng=rng),
            2,
            norm=nnkit.LayerNorm(_E),
        ),
        make_inputs=lambda rng: (rng.normal(size=(_N, _S, _E)), rng.normal(size=(_S, _S))),
        options={"batch_axis": [0, None]},
    ),
    SequenceCase(
        "Sequential-PositionalEmbedding-causal-TransformerEncoder",
        lambda rng: nnkit.Sequential(
            nnkit.PositionalEmbedding(_S, _E, batch_first=True, rng=rng),
            nnkit.TransformerEncoder(
                nnkit.TransformerEncoderLayer(
                    _E, _HEADS, 6, dropout=0.0, batch_first=True, norm_first=True, rng=rng
                ),
                1,
                causal=True,
            ),
        ),
        in_shape=(_N, _S, _E),
    ),
    SequenceCase(
        "SequenceOutput",
        lambda rng: nnkit.SequenceOutput(),
        in_shape=(_T, _N, _H),
        more_inputs=((1, _N, _H),),
        options={"batch_axis": 1},
    ),
    SequenceCase(
        "LastTimeStep-batch_first",
        lambda rng: nnkit.LastTimeStep(batch_first=True),
        in_shape=(_N, _T, _H),
        more_inputs=((1, _N, _H),),
        options={"batch_axis": [0, 1]},
    ),
    SequenceCase(
        "LastTimeStep-time_major",  # the output's batch axis (0) is not the input's (1)
        lambda rng: nnkit.LastTimeStep(),
        in_shape=(_T, _N, _H),
        batch_independent=False,
        options={"empty_batch": False},
    ),
    SequenceCase(
        "Sequential-LSTM-LastTimeStep-Dense",
        lambda rng: nnkit.Sequential(
            nnkit.LSTM(_I, _H, batch_first=True, rng=rng),
            nnkit.LastTimeStep(batch_first=True),
            nnkit.Dense(_H, 2, rng=rng),
        ),
        in_shape=(_N, _T, _I),
    ),
    SequenceCase(
        "FinalState",
        lambda rng: nnkit.FinalState(),
        in_shape=(_N, _T, 2 * _H),  # a batch-first bidirectional output
        more_inputs=((4, _N, _H),),  # h_n of 2 layers, 2 directions
        options={"batch_axis": [0, 1]},
    ),
    SequenceCase(
        "FinalState-stacked-lstm-state",  # (h_n, c_n) as np.asarray stacks it
        lambda rng: nnkit.FinalState(),
        in_shape=(_N, _T, 2 * _H),
        more_inputs=((2, 2, _N, _H),),
        options={"batch_axis": [0, 2]},
    ),
    SequenceCase(
        "Sequential-LSTM-bi-FinalState-Dense",
        lambda rng: nnkit.Sequential(
            nnkit.LSTM(_I, _H, 2, bidirectional=True, batch_first=True, rng=rng),
            nnkit.FinalState(),
            nnkit.Dense(2 * _H, 2, rng=rng),
        ),
        in_shape=(_N, _T, _I),
    ),
    SequenceCase(
        "Sequential-GRU-SequenceOutput",
        lambda rng: nnkit.Sequential(nnkit.GRU(_I, _H, rng=rng), nnkit.SequenceOutput()),
        in_shape=(_T, _N, _I),
        options={"batch_axis": 1},
    ),
    SequenceCase(
        "PositionalEmbedding-time_major",
        lambda rng: nnkit.PositionalEmbedding(6, _E, rng=rng),
        in_shape=(_L, _N, _E),
        options={"batch_axis": 1},
    ),
    SequenceCase(
        "PositionalEmbedding-batch_first",
        lambda rng: nnkit.PositionalEmbedding(6, _E, batch_first=True, rng=rng),
        in_shape=(_N, _L, _E),
    ),
    SequenceCase(
        "SinusoidalPositionalEncoding-time_major",
        lambda rng: nnkit.SinusoidalPositionalEncoding(5, max_len=8),
        in_shape=(_L, _N, 5),
        options={"batch_axis": 1},
    ),
    SequenceCase(
        "SinusoidalPositionalEncoding-batch_first",
        lambda rng: nnkit.SinusoidalPositionalEncoding(_E, batch_first=True),
        in_shape=(_N, _L, _E),
    ),
]
