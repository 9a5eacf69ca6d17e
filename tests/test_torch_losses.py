"""Losses against torch.nn in float64: class weights, ignore_index, N-D inputs, and every
reduction, "none" with an upstream gradient. Skipped without torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import nnkit

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-10, 1e-12
W4 = [0.5, 1.0, 2.0, 3.0]


@dataclass(frozen=True)
class LossPair:
    name: str
    ours: Callable[[str], nnkit.Loss]  # reduction -> loss
    theirs: Callable[[str], Any]
    data: Callable[[np.random.Generator], tuple[Any, Any]]


def indices(shape: tuple[int, ...], c: int = 4, ignored: int | None = None) -> Any:
    def make(rng: np.random.Generator) -> tuple[Any, Any]:
        n, rest = shape[0], shape[1:]
        target = rng.integers(0, c, size=(n, *rest))
        if ignored is not None:
            target.reshape(-1)[::3] = ignored
        return rng.normal(size=(n, c, *rest)) * 3, target

    return make


def log_probs(shape: tuple[int, ...], ignored: int | None = None) -> Any:
    make_logits = indices(shape, ignored=ignored)

    def make(rng: np.random.Generator) -> tuple[Any, Any]:
        x, target = make_logits(rng)
        return nnkit.functional.log_softmax(x, axis=1), target

    return make


def probabilities(shape: tuple[int, ...]) -> Any:
    def make(rng: np.random.Generator) -> tuple[Any, Any]:
        n, rest = shape[0], shape[1:]
        q = np.ascontiguousarray(np.moveaxis(rng.dirichlet(np.ones(4), size=(n, *rest)), -1, 1))
        return rng.normal(size=q.shape) * 3, q

    return make


def same_shape(low: float = -3, high: float = 3, unit: bool = False) -> Any:
    def make(rng: np.random.Generator) -> tuple[Any, Any]:
        shape = (5, 3, 2)
        pred = rng.uniform(0.05, 0.95, shape) if unit else rng.uniform(low, high, shape)
        return pred, rng.uniform(0, 1, shape) if unit or low >= 0 else rng.normal(size=shape)

    return make


def ce(**kw: Any) -> Callable[[str], nnkit.Loss]:
    return lambda r: nnkit.CrossEntropyLoss(reduction=r, **kw)  # type: ignore[arg-type]


def tce(**kw: Any) -> Callable[[str], Any]:
    if "weight" in kw:
        kw["weight"] = torch.tensor(kw["weight"], dtype=torch.float64)
    return lambda r: torch.nn.CrossEntropyLoss(reduction=r, **kw)


def nll(**kw: Any) -> Callable[[str], nnkit.Loss]:
    return lambda r: nnkit.NLLLoss(reduction=r, **kw)  # type: ignore[arg-type]


def tnll(**kw: Any) -> Callable[[str], Any]:
    if "weight" in kw:
        kw["weight"] = torch.tensor(kw["weight"], dtype=torch.float64)
    return lambda r: torch.nn.NLLLoss(reduction=r, **kw)


PAIRS = [
    LossPair("CE", ce(), tce(), indices((6,))),
    LossPair("CE-weight", ce(weight=W4), tce(weight=W4), indices((6,))),
    LossPair("CE-ignore", ce(), tce(), indices((7,), ignored=-100)),
    LossPair("CE-ignore-in-range", ce(ignore_index=1), tce(ignore_index=1), indices((7,))),
    LossPair("CE-weight-ignore", ce(weight=W4), tce(weight=W4), indices((7,), ignored=-100)),
    LossPair(
        "CE-smoothing-weight-ignore",
        ce(label_smoothing=0.2, weight=W4),
        tce(label_smoothing=0.2, weight=W4),
        indices((7,), ignored=-100),
    ),
    LossPair(
        "CE-smoothing-ignore",
        ce(label_smoothing=0.3, ignore_index=0),
        tce(label_smoothing=0.3, ignore_index=0),
        indices((7,)),
    ),
    LossPair("CE-3d", ce(), tce(), indices((4, 5))),
    LossPair("CE-4d-weight", ce(weight=W4), tce(weight=W4), indices((3, 2, 5))),
    LossPair(
        "CE-3d-smoothing-weight-ignore",
        ce(label_smoothing=0.1, weight=W4, ignore_index=3),
        tce(label_smoothing=0.1, weight=W4, ignore_index=3),
        indices((4, 6)),
    ),
    LossPair("CE-probs-3d", ce(), tce(), probabilities((4, 3))),
    LossPair(
        "CE-probs-4d-weight-smoothing",
        ce(weight=W4, label_smoothing=0.2),
        tce(weight=W4, label_smoothing=0.2),
        probabilities((3, 2, 2)),
    ),
    LossPair("NLL", nll(), tnll(), log_probs((6,))),
    LossPair("NLL-weight-ignore", nll(weight=W4), tnll(weight=W4), log_probs((7,), ignored=-100)),
    LossPair(
        "NLL-4d-weight-ignore",
        nll(weight=W4, ignore_index=2),
        tnll(weight=W4, ignore_index=2),
        log_probs((3, 4, 2)),
    ),
    LossPair(
        "MSE", lambda r: nnkit.MSELoss(r), lambda r: torch.nn.MSELoss(reduction=r), same_shape()
    ),  # type: ignore[arg-type]
    LossPair("L1", lambda r: nnkit.L1Loss(r), lambda r: torch.nn.L1Loss(reduction=r), same_shape()),  # type: ignore[arg-type]
    LossPair(
        "Huber",
        lambda r: nnkit.HuberLoss(r, delta=0.7),  # type: ignore[arg-type]
        lambda r: torch.nn.HuberLoss(reduction=r, delta=0.7),
        same_shape(),
    ),
    LossPair(
        "BCE",
        lambda r: nnkit.BCELoss(r),  # type: ignore[arg-type]
        lambda r: torch.nn.BCELoss(reduction=r),
        same_shape(unit=True),
    ),
    LossPair(
        "BCEWithLogits-pos_weight",
        lambda r: nnkit.BCEWithLogitsLoss(r, pos_weight=[0.5, 2.0]),  # type: ignore[arg-type]
        lambda r: torch.nn.BCEWithLogitsLoss(
            reduction=r, pos_weight=torch.tensor([0.5, 2.0], dtype=torch.float64)
        ),
        same_shape(low=0),
    ),
]


def _torch_target(target: Any) -> Any:
    if np.asarray(target).dtype.kind in "iu":
        return torch.tensor(target, dtype=torch.int64)
    return torch.tensor(target, dtype=torch.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_loss_and_gradient_match_torch(pair: LossPair, reduction: str) -> None:
    rng = np.random.default_rng(0)
    pred, target = pair.data(rng)
    ours = pair.ours(reduction)
    value = ours(pred, target)
    xt = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    expected = pair.theirs(reduction)(xt, _torch_target(target))
    if reduction == "none":
        assert isinstance(value, np.ndarray) and value.dtype == np.float64
        assert value.shape == tuple(expected.shape)
        upstream = rng.normal(size=value.shape)
        grad = ours.backward(upstream)
        expected.backward(torch.tensor(upstream))
    else:
        assert type(value) is float
        grad = ours.backward()
        expected.backward()
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert grad.shape == pred.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_float32_stays_float32_in_every_reduction(pair: LossPair) -> None:
    pred, target = pair.data(np.random.default_rng(1))
    pred = pred.astype(np.float32)
    if np.asarray(target).dtype.kind == "f":
        target = target.astype(np.float32)
    for reduction in ("mean", "sum", "none"):
        loss = pair.ours(reduction)
        value = loss(pred, target)
        if reduction == "none":
            assert value.dtype == np.float32
            assert loss.backward(np.ones(value.shape)).dtype == np.float32
        assert loss.backward().dtype == np.float32
