"""The tables of built-in layers and losses that the parametrized tests run over.

A new layer or loss is added here once, and every table-driven test covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import nnkit


@dataclass(frozen=True)
class LayerCase:
    name: str
    make: Callable[[np.random.Generator], nnkit.Module]
    in_shape: tuple[int, ...] = (5, 4)
    batch_independent: bool = True
    options: dict[str, Any] = field(default_factory=dict)


def _seq(rng: np.random.Generator) -> nnkit.Module:
    return nnkit.Sequential(
        nnkit.Dense(4, 6, rng=rng), nnkit.Tanh(), nnkit.Dense(6, 3, rng=rng), nnkit.LogSoftmax()
    )


LAYERS = [
    LayerCase("Dense", lambda rng: nnkit.Dense(4, 3, rng=rng)),
    LayerCase("Dense-nobias", lambda rng: nnkit.Dense(4, 3, bias=False, rng=rng)),
    LayerCase("Dense-xavier", lambda rng: nnkit.Dense(4, 3, rng=rng, weight_init="xavier_normal")),
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
]


def ids(cases: list[Any]) -> list[str]:
    return [case.name for case in cases]
