"""Every optimizer trains the XOR network and fits a small linear regression."""

from __future__ import annotations

import numpy as np
import pytest

import nnkit
from nnkit.optim import SGD, Adagrad, Adam, AdamW, RMSprop, clip_grad_norm_
from nnkit.optim.lr_scheduler import OneCycleLR

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float32)

# (optimizer, hyperparameters, steps) that train both problems from any of a few seeds
TRAINING = [
    (SGD, dict(lr=1.0), 400),
    (SGD, dict(lr=0.5, momentum=0.9, nesterov=True), 300),
    (Adam, dict(lr=0.05), 300),
    (Adam, dict(lr=0.05, amsgrad=True), 300),
    (AdamW, dict(lr=0.05), 300),
    (RMSprop, dict(lr=0.01), 300),
    (RMSprop, dict(lr=0.01, centered=True, momentum=0.5), 300),
    (Adagrad, dict(lr=0.3), 300),
]


def _id(case):
    cls, kwargs, _ = case
    return f"{cls.__name__}-" + "+".join(f"{k}={v}" for k, v in kwargs.items())


def _train(model, loss_fn, opt, x, y, steps, after_backward=None):
    loss = float("inf")
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        if after_backward is not None:
            after_backward()
        opt.step()
    return loss


@pytest.mark.parametrize("case", TRAINING, ids=_id)
@pytest.mark.parametrize("seed", [0, 1])
def test_trains_xor(case, seed):
    cls, kwargs, steps = case
    rng = np.random.default_rng(seed)
    model = nnkit.Sequential(
        nnkit.Dense(2, 8, rng=rng), nnkit.Tanh(), nnkit.Dense(8, 1, rng=rng), nnkit.Sigmoid()
    )
    loss_fn = nnkit.BCELoss()
    opt = cls(model.parameters(), **kwargs)
    loss = _train(model, loss_fn, opt, XOR_X, XOR_Y, steps)
    assert loss < 0.05
    np.testing.assert_array_equal(model(XOR_X) > 0.5, XOR_Y > 0.5)
    assert all(p.data.dtype == np.float32 for p in model.parameters())


@pytest.mark.parametrize("case", TRAINING, ids=_id)
def test_fits_linear_regression(case):
    cls, kwargs, _ = case
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.01 * rng.normal(size=(64, 1))).astype(
        np.float32
    )
    model = nnkit.Sequential(nnkit.Dense(3, 1, rng=rng))
    opt = cls(model.parameters(), **{**kwargs, "lr": min(kwargs["lr"], 0.1)})
    _train(model, nnkit.MSELoss(), opt, x, y, 800)
    design = np.hstack([x, np.ones((64, 1), np.float32)]).astype(np.float64)
    solution = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)[0]
    weight, bias = model[0].weight.data, model[0].bias.data
    np.testing.assert_allclose(np.vstack([weight, bias[:, None]]), solution, atol=0.02)


def test_one_cycle_with_clipping_trains_xor():
    rng = np.random.default_rng(0)
    model = nnkit.Sequential(
        nnkit.Dense(2, 8, rng=rng), nnkit.Tanh(), nnkit.Dense(8, 1, rng=rng), nnkit.Sigmoid()
    )
    loss_fn = nnkit.BCELoss()
    opt = Adam(model.parameters())
    scheduler = OneCycleLR(opt, max_lr=0.1, total_steps=300)
    norms: list[float] = []

    def clip() -> None:
        norms.append(clip_grad_norm_(model.parameters(), max_norm=1.0))

    for _ in range(300):
        _train(model, loss_fn, opt, XOR_X, XOR_Y, 1, after_backward=clip)
        scheduler.step()
    assert loss_fn(model(XOR_X), XOR_Y) < 0.05
    assert max(norms) > 0 and scheduler.last_epoch == 300
