"""No float64 anywhere in a float32 path: outputs, gradients and optimizer state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from cases import LOSSES, LossCase, ids

import nnkit
from nnkit.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

OPTIMIZERS: list[tuple[str, Callable[[Any], Optimizer]]] = [
    ("SGD", lambda p: SGD(p, lr=0.1)),
    ("SGD-nesterov-wd", lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam-amsgrad", lambda p: Adam(p, amsgrad=True, weight_decay=0.1)),
    ("AdamW", lambda p: AdamW(p, maximize=True)),
    ("RMSprop-centered", lambda p: RMSprop(p, momentum=0.9, centered=True, weight_decay=0.1)),
    ("Adagrad", lambda p: Adagrad(p, lr_decay=0.1, weight_decay=0.1)),
]


def every_layer(rng: np.random.Generator) -> nnkit.Sequential:
    return nnkit.Sequential(
        nnkit.Dense(3, 8, rng=rng), nnkit.ReLU(), nnkit.Dense(8, 8, rng=rng), nnkit.LeakyReLU(),
        nnkit.ELU(), nnkit.GELU(), nnkit.SiLU(), nnkit.Softplus(), nnkit.Tanh(), nnkit.Sigmoid(),
        nnkit.Identity(), nnkit.Softmax(), nnkit.Dense(8, 4, rng=rng), nnkit.LogSoftmax(),
    )


@pytest.mark.parametrize("name, make", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_float32_training_stays_float32(name: str, make: Callable[[Any], Optimizer]) -> None:
    rng = np.random.default_rng(0)
    model = every_layer(rng)
    optimizer = make(model.parameters())
    x = rng.normal(size=(6, 3))  # float64 data into a float32 model
    y = rng.integers(0, 4, size=6)
    loss_fn = nnkit.NLLLoss()
    for _ in range(2):
        optimizer.zero_grad()
        h = x
        for layer in model:
            h = layer(h)
            assert h.dtype == np.float32, type(layer).__name__
        loss_fn(h, y)
        g = loss_fn.backward()
        for layer in reversed(list(model)):
            g = layer.backward(g)
            assert g.dtype == np.float32, type(layer).__name__
        optimizer.step()
    for param_name, param in model.named_parameters():
        assert param.data.dtype == param.grad.dtype == np.float32, param_name
        for key, value in optimizer.state[param].items():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32, (param_name, key)


@pytest.mark.parametrize("case", LOSSES, ids=ids(LOSSES))
def test_loss_gradient_is_float32(case: LossCase) -> None:
    pred, target = case.data(np.random.default_rng(0), 4)
    loss_fn = case.make()
    value = loss_fn(np.asarray(pred, dtype=np.float32), target)  # float64 targets too
    assert type(value) is float
    assert loss_fn.backward().dtype == np.float32
