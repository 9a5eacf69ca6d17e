"""Activations, normalisation, dropout, embedding and N-D dense layers against torch.nn, in
float64.

Each case builds an nnkit layer, copies its parameters (moved away from their initial values)
into the torch.nn equivalent, and compares the output, dx and every parameter gradient to
rtol 1e-10; stateful layers are stepped several times and their buffers compared too.
Skipped without torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import nnkit

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-10, 1e-12


def t(a: Any, grad: bool = False) -> Any:
    tensor = torch.tensor(np.asarray(a), dtype=torch.float64)
    return tensor.requires_grad_(grad)


def close(a: Any, b: Any) -> None:
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@dataclass(frozen=True)
class Pair:
    """An nnkit layer, its torch.nn twin, an input shape, and the parameter names of both
    (nnkit name -> torch name) whose values are copied and whose gradients are compared."""

    name: str
    ours: Callable[[], nnkit.Module]
    theirs: Callable[[], Any]
    shape: tuple[int, ...]
    params: dict[str, str] = field(default_factory=dict)
    transposed: frozenset[str] = frozenset()  # nnkit stores these transposed (Dense weight)


def twins(pair: Pair, seed: int = 0) -> tuple[nnkit.Module, Any]:
    rng = np.random.default_rng(seed)
    ours = pair.ours().astype(np.float64)
    theirs = pair.theirs().double()
    ours_params = dict(ours.named_parameters())
    theirs_params = dict(theirs.named_parameters())
    assert set(ours_params) == set(pair.params), "the case must list every parameter"
    assert set(theirs_params) == set(pair.params.values())
    for name, param in ours_params.items():
        param.data[...] = param.data * rng.uniform(0.5, 1.5, param.shape) + rng.normal(
            0, 0.3, param.shape
        )
        value = param.data.T if name in pair.transposed else param.data
        with torch.no_grad():
            theirs_params[pair.params[name]].copy_(t(value))
    return ours, theirs


def compare_step(
    ours: nnkit.Module, theirs: Any, pair: Pair, x: Any, rng: np.random.Generator
) -> None:
    """One forward and backward of both (a random dy); y, dx, every parameter gradient and
    every buffer agree."""
    ours.zero_grad()
    theirs.zero_grad()
    y = ours(x)
    xt = t(x, grad=True)
    yt = theirs(xt)
    close(y, yt)
    dy = rng.normal(size=y.shape)
    dx = ours.backward(dy)
    yt.backward(t(dy))
    close(dx, xt.grad)
    theirs_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        grad = theirs_params[pair.params[name]].grad
        close(param.grad, grad.T if name in pair.transposed else grad)
    theirs_buffers = dict(theirs.named_buffers())
    assert {name for name, _ in ours.named_buffers()} == set(theirs_buffers)
    for name, buffer in ours.named_buffers():  # running statistics after this step
        if buffer.dtype.kind == "f":
            close(buffer.data, theirs_buffers[name])
        else:
            assert buffer.dtype == np.int64 and int(buffer.data) == int(theirs_buffers[name])


AFFINE = {"weight": "weight", "bias": "bias"}
LINEAR = {"weight": "weight", "bias": "bias"}

ACTIVATIONS = [  # (name, nnkit, torch.nn): no parameters, so only y and dx are compared
    ("Identity", nnkit.Identity, torch.nn.Identity),
    ("Sigmoid", nnkit.Sigmoid, torch.nn.Sigmoid),
    ("Tanh", nnkit.Tanh, torch.nn.Tanh),
    ("ReLU", nnkit.ReLU, torch.nn.ReLU),
    ("LeakyReLU", lambda: nnkit.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1)),
    ("ELU", lambda: nnkit.ELU(0.7), lambda: torch.nn.ELU(0.7)),
    ("GELU-tanh", nnkit.GELU, lambda: torch.nn.GELU(approximate="tanh")),
    ("Softplus", nnkit.Softplus, torch.nn.Softplus),
    ("SiLU", nnkit.SiLU, torch.nn.SiLU),
    ("Softmax", nnkit.Softmax, lambda: torch.nn.Softmax(dim=-1)),
    ("Softmax-axis1", lambda: nnkit.Softmax(axis=1), lambda: torch.nn.Softmax(dim=1)),
    ("LogSoftmax", nnkit.LogSoftmax, lambda: torch.nn.LogSoftmax(dim=-1)),
]

PAIRS = [
    *(Pair(name, ours, theirs, (6, 5, 4)) for name, ours, theirs in ACTIVATIONS),
    Pair(
        "BatchNorm1d",
        lambda: nnkit.BatchNorm1d(4),
        lambda: torch.nn.BatchNorm1d(4),
        (8, 4),
        AFFINE,
    ),
    Pair(
        "BatchNorm1d-NCL",
        lambda: nnkit.BatchNorm1d(3, eps=1e-3, momentum=0.3),
        lambda: torch.nn.BatchNorm1d(3, eps=1e-3, momentum=0.3),
        (4, 3, 5),
        AFFINE,
    ),
    Pair(
        "BatchNorm1d-cumulative",
        lambda: nnkit.BatchNorm1d(4, momentum=None),
        lambda: torch.nn.BatchNorm1d(4, momentum=None),
        (2, 4),  # the smallest batch: m / (m - 1) = 2
        AFFINE,
    ),
    Pair(
        "BatchNorm1d-no-affine",
        lambda: nnkit.BatchNorm1d(4, affine=False),
        lambda: torch.nn.BatchNorm1d(4, affine=False),
        (6, 4),
    ),
    Pair(
        "BatchNorm1d-batch-stats-only",
        lambda: nnkit.BatchNorm1d(3, track_running_stats=False),
        lambda: torch.nn.BatchNorm1d(3, track_running_stats=False),
        (6, 3, 2),
        AFFINE,
    ),
    Pair(
        "BatchNorm2d",
        lambda: nnkit.BatchNorm2d(3),
        lambda: torch.nn.BatchNorm2d(3),
        (4, 3, 5, 6),
        AFFINE,
    ),
    Pair(
        "BatchNorm2d-bare",
        lambda: nnkit.BatchNorm2d(2, affine=False, track_running_stats=False),
        lambda: torch.nn.BatchNorm2d(2, affine=False, track_running_stats=False),
        (3, 2, 4, 4),
    ),
    Pair(
        "GroupNorm",
        lambda: nnkit.GroupNorm(3, 6),
        lambda: torch.nn.GroupNorm(3, 6),
        (4, 6, 5),
        AFFINE,
    ),
    Pair(
        "GroupNorm-images",
        lambda: nnkit.GroupNorm(2, 4, eps=1e-3),
        lambda: torch.nn.GroupNorm(2, 4, eps=1e-3),
        (3, 4, 5, 6),
        AFFINE,
    ),
    Pair(
        "GroupNorm-2d-input",
        lambda: nnkit.GroupNorm(2, 6),
        lambda: torch.nn.GroupNorm(2, 6),
        (5, 6),
        AFFINE,
    ),
    Pair(
        "GroupNorm-instance-no-affine",
        lambda: nnkit.GroupNorm(4, 4, affine=False),
        lambda: torch.nn.GroupNorm(4, 4, affine=False),
        (3, 4, 7),
    ),
    Pair(
        "Dense-3d",
        lambda: nnkit.Dense(5, 3),
        lambda: torch.nn.Linear(5, 3),
        (4, 6, 5),
        LINEAR,
        frozenset({"weight"}),
    ),
    Pair(
        "Dense-4d-nobias",
        lambda: nnkit.Dense(5, 2, bias=False),
        lambda: torch.nn.Linear(5, 2, bias=False),
        (2, 3, 4, 5),
        {"weight": "weight"},
        frozenset({"weight"}),
    ),
    Pair(
        "Dense-2d",
        lambda: nnkit.Dense(5, 3),
        lambda: torch.nn.Linear(5, 3),
        (7, 5),
        LINEAR,
        frozenset({"weight"}),
    ),
    Pair("LayerNorm", lambda: nnkit.LayerNorm(6), lambda: torch.nn.LayerNorm(6), (5, 6), AFFINE),
    Pair(
        "LayerNorm-2d-shape",
        lambda: nnkit.LayerNorm((3, 4), eps=1e-3),
        lambda: torch.nn.LayerNorm((3, 4), eps=1e-3),
        (2, 5, 3, 4),
        AFFINE,
    ),
    Pair(
        "LayerNorm-seq",
        lambda: nnkit.LayerNorm(8),
        lambda: torch.nn.LayerNorm(8),
        (4, 7, 8),
        AFFINE,
    ),
    Pair(
        "LayerNorm-no-affine",
        lambda: nnkit.LayerNorm(5, elementwise_affine=False),
        lambda: torch.nn.LayerNorm(5, elementwise_affine=False),
        (6, 5),
    ),
    Pair(
        "LayerNorm-no-bias",
        lambda: nnkit.LayerNorm(5, bias=False),
        lambda: torch.nn.LayerNorm(5, bias=False),
        (6, 5),
        {"weight": "weight"},
    ),
]


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
def test_forward_and_backward_match_torch(pair: Pair) -> None:
    """Three training steps (the running statistics move), then three in eval mode, then
    training again: y, dx, the parameter gradients and the buffers agree after each."""
    ours, theirs = twins(pair)
    rng = np.random.default_rng(1)
    for mode in ("train", "eval", "train"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        for _ in range(3):
            x = rng.normal(size=pair.shape) * 2 + 0.5
            compare_step(ours, theirs, pair, x, rng)


def test_batchnorm_empty_batch_in_training_matches_torch() -> None:
    """An empty batch counts in num_batches_tracked but leaves the statistics alone."""
    ours = nnkit.BatchNorm1d(3).astype(np.float64)
    theirs = torch.nn.BatchNorm1d(3).double()
    x = np.random.default_rng(0).normal(size=(5, 3))
    for batch in (x, x[:0], x):
        y = ours(batch)
        close(y, theirs(t(batch)))
        assert ours.backward(np.ones_like(y)).shape == batch.shape
        state = theirs.state_dict()
        for name, value in ours.state_dict().items():
            close(value, state[name])


def test_batchnorm_state_dict_loads_torchs() -> None:
    """Same keys, shapes and (for num_batches_tracked) dtype: a torch state dict loads."""
    theirs = torch.nn.BatchNorm2d(3).double()
    for _ in range(2):
        theirs(torch.randn(4, 3, 2, 2, dtype=torch.float64))
    ours = nnkit.BatchNorm2d(3).astype(np.float64)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.eval()
    theirs.eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 2, 2))
    close(ours(x), theirs(t(x)))


# -- Embedding -------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1])
def test_embedding_matches_torch_with_repeats_and_padding(padding_idx: int | None) -> None:
    ours = nnkit.Embedding(6, 4, padding_idx=padding_idx, rng=np.random.default_rng(0))
    ours.astype(np.float64)
    theirs = torch.nn.Embedding(6, 4, padding_idx=padding_idx).double()
    with torch.no_grad():
        theirs.weight.copy_(t(ours.weight.data))
    ids = np.array([[0, 1, 1, 5], [3, 3, 3, 0], [5, 2, 1, 4]])  # repeats and every padding id
    dy = np.random.default_rng(1).normal(size=(3, 4, 4))
    for _ in range(2):  # the second step accumulates onto the first
        y = ours(ids)
        yt = theirs(torch.tensor(ids))
        close(y, yt)
        assert ours.backward(dy) is None
        yt.backward(t(dy))
        close(ours.weight.grad, theirs.weight.grad)
    if padding_idx is not None:
        assert not ours.weight.grad[padding_idx].any()
        assert ours.padding_idx == theirs.padding_idx


def test_embedding_initialisation_follows_torch() -> None:
    """N(0, 1) entries with the padding row zeroed, as torch.nn.Embedding."""
    ours = nnkit.Embedding(400, 50, padding_idx=7, rng=np.random.default_rng(0))
    theirs = torch.nn.Embedding(400, 50, padding_idx=7)
    for w in (ours.weight.data, theirs.weight.detach().numpy()):
        assert not w[7].any()
        rest = np.delete(w, 7, axis=0)
        assert abs(rest.mean()) < 0.02 and abs(rest.std() - 1) < 0.02
    assert ours.weight.dtype == np.float32


# -- Dropout ---------------------------------------------------------------------------------


def kept(y: Any, x: np.ndarray, p: float) -> np.ndarray:
    """Which elements survived: y is 0 or x / (1 - p) everywhere (x is never 0 here)."""
    y = y.detach().numpy() if hasattr(y, "detach") else y
    keep = y != 0
    np.testing.assert_allclose(y[keep], x[keep] / (1 - p), rtol=1e-14)
    return keep


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_has_torchs_law(p: float) -> None:
    """y in {0, x / (1 - p)}, and zero fractions within 5 sigma of p, for both."""
    shape = (200, 500)
    x = np.random.default_rng(0).uniform(1, 2, size=shape)
    ours = nnkit.Dropout(p, rng=np.random.default_rng(1))
    theirs = torch.nn.Dropout(p)
    torch.manual_seed(0)
    sigma = np.sqrt(p * (1 - p) / x.size)
    for keep in (kept(ours(x), x, p), kept(theirs(t(x)), x, p)):
        assert abs(np.mean(~keep) - p) < 5 * sigma
    ours.eval()
    theirs.eval()
    assert np.array_equal(ours(x), theirs(t(x)).numpy())


def test_dropout_backward_uses_the_forward_mask() -> None:
    ours = nnkit.Dropout(0.4, rng=np.random.default_rng(2))
    x = np.random.default_rng(0).uniform(1, 2, size=(30, 40))
    m = kept(ours(x), x, 0.4) / 0.6
    dy = np.random.default_rng(1).normal(size=x.shape)
    # torch's backward of x * m for a fixed m is dy * m: the same as ours
    xt = t(x, grad=True)
    (xt * t(m)).backward(t(dy))
    close(ours.backward(dy), xt.grad)
    close(ours.backward(dy), xt.grad)  # a second backward reuses the same mask


@pytest.mark.parametrize("shape", [(20, 30, 4, 5), (20, 30, 7)])
def test_dropout2d_zeroes_whole_channels_like_torch(shape: tuple[int, ...]) -> None:
    p = 0.3
    x = np.random.default_rng(0).uniform(1, 2, size=shape)
    ours = nnkit.Dropout2d(p, rng=np.random.default_rng(1))
    theirs = torch.nn.Dropout2d(p)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns on 3-D input; same behaviour
        keeps = [kept(ours(x), x, p), kept(theirs(t(x)), x, p)]
    sigma = np.sqrt(p * (1 - p) / (shape[0] * shape[1]))
    for keep in keeps:
        per_channel = keep.reshape(shape[0], shape[1], -1)
        assert np.all(per_channel == per_channel[:, :, :1])  # constant over each channel
        assert abs(np.mean(~per_channel[:, :, 0]) - p) < 5 * sigma
    dy = np.random.default_rng(2).normal(size=shape)
    np.testing.assert_allclose(ours.backward(dy), dy * keeps[0] / (1 - p), rtol=1e-15)
