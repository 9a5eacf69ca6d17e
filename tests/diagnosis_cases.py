"""The corpus of training setups nnkit.diagnose is judged on: broken ones, each with the
finding expected first and the module it must name, and healthy ones that must give none.

Each factory returns ``(model, loss_fn, X, y, optimizer)``. Broken setups reproduce the
classic mistakes: the hand-written XOR network's (all-positive initialisation, no biases, an
update using the wrong layer's activation, an overflowing sigmoid), one at a time and all
together, and the usual others (a softmax before CrossEntropyLoss, pixels 0..255, a learning
rate off by orders of magnitude, a planted backward bug deep inside a Residual or a Graph).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from stateful_layers import Center, Noise

import nnkit
from nnkit.datasets import blobs, circles, moons, spirals
from nnkit.module import Array, as_float_array
from nnkit.optim import SGD, Adam

Setup = tuple[nnkit.Module, nnkit.Loss, Any, Any, Any]

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)


# -- the original XOR network's mistakes, as modules ------------------------------------------
class NaiveSigmoid(nnkit.Module):
    """1 / (1 + exp(-x)): overflows for x < -88 in float32 (the original network's sigmoid)."""

    def __init__(self) -> None:
        super().__init__()
        self._y: Array | None = None

    def forward(self, x: Any) -> Array:
        x = as_float_array(x)
        self._y = 1.0 / (1.0 + np.exp(-x))
        return self._y

    def backward(self, grad_out: Any) -> Array:
        if self._y is None:
            raise self._no_cache_error()
        return np.asarray(grad_out) * self._y * (1 - self._y)


class WrongActivationDense(nnkit.Dense):
    """Dense whose weight update multiplies by its output instead of its input: the original
    network used the wrong layer's activation."""

    def forward(self, x: Any) -> Any:
        self._out = super().forward(x)
        return self._out

    def backward(self, grad_out: Any) -> Any:
        dx = grad_out @ self.weight.data.T
        w = self.weight.grad
        n = min(w.shape)
        w[:n, :n] += (self._out.T @ grad_out)[:n, :n]  # planted: the wrong activation
        if self.bias is not None:
            self.bias.grad += grad_out.sum(axis=0)
        return dx


class ForgetsScale(nnkit.Module):
    """y = 2 x, whose backward forgets the factor 2."""

    def forward(self, x: Any) -> Array:
        return as_float_array(x) * 2.0

    def backward(self, grad_out: Any) -> Array:
        return np.array(grad_out, copy=True)


class ZeroesInput(nnkit.Module):
    """Multiplies its input by zero (a wiring mistake); its gradient is right: zero."""

    def forward(self, x: Any) -> Array:
        return as_float_array(x) * 0.0

    def backward(self, grad_out: Any) -> Array:
        return np.zeros_like(np.asarray(grad_out))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def xor_net(
    seed: int = 0, bias: bool = True, sigmoid: type[nnkit.Module] = nnkit.Sigmoid,
    first: type[nnkit.Dense] = nnkit.Dense,
) -> nnkit.Sequential:  # fmt: skip
    r = rng(seed)
    return nnkit.Sequential(
        first(2, 3, rng=r, bias=bias), sigmoid(),
        nnkit.Dense(3, 2, rng=r, bias=bias), sigmoid(),
        nnkit.Dense(2, 1, rng=r, bias=bias), sigmoid(),
    )  # fmt: skip


def positive_init(model: nnkit.Module, seed: int = 1) -> nnkit.Module:
    """Weights from np.random.rand, as the original network drew them."""
    g = rng(seed)
    for name, param in model.named_parameters():
        if name.endswith("weight"):
            param.data[...] = g.random(param.shape)
    return model


def xor_setup(model: nnkit.Module) -> Setup:
    return model, nnkit.BCELoss(), XOR_X, XOR_Y, SGD(model.parameters(), lr=1.0, momentum=0.9)


def spirals_data(scale: float = 1.0) -> tuple[Array, Array]:
    X, y = spirals(100, 3, noise=0.2, rng=rng(0))
    return X * scale, y


def mlp(n_in: int = 2, n_out: int = 3, hidden: int = 32, act: Any = nnkit.ReLU, seed: int = 0,
        depth: int = 2) -> nnkit.Sequential:  # fmt: skip
    r = rng(seed)
    layers: list[nnkit.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nnkit.Dense(width, hidden, rng=r), act()]
        width = hidden
    layers.append(nnkit.Dense(width, n_out, rng=r))
    return nnkit.Sequential(*layers)


def classify(model: nnkit.Module, X: Any, y: Any, opt: Any = None) -> Setup:
    return model, nnkit.CrossEntropyLoss(), X, y, opt or Adam(model.parameters(), lr=1e-2)


# -- broken setups -----------------------------------------------------------------------------
def _xor_all_mistakes() -> Setup:
    model = positive_init(xor_net(bias=False, sigmoid=NaiveSigmoid, first=WrongActivationDense))
    return xor_setup(model)


def _overflowing_sigmoid() -> Setup:
    model = xor_net(sigmoid=NaiveSigmoid)
    model[0].bias.data[...] = -200.0  # type: ignore[union-attr]  # exp(-x) overflows
    return xor_setup(model)


def _deep_sigmoid() -> Setup:
    r = rng(0)
    layers: list[nnkit.Module] = []
    for i in range(10):
        layers += [nnkit.Dense(2 if i == 0 else 32, 32, rng=r, weight_init="xavier_normal"),
                   nnkit.Sigmoid()]  # fmt: skip
    model = nnkit.Sequential(*layers, nnkit.Dense(32, 3, rng=r))
    return classify(model, *spirals_data(), SGD(model.parameters(), lr=0.1))


def _exploding() -> Setup:
    """Each ReLU layer multiplies the signal by about 4 (He's gain is 1)."""
    model = mlp(depth=8, hidden=32)
    g = rng(9)
    for name, param in model.named_parameters():
        if name.endswith("weight"):
            fan_in = param.shape[0]
            param.data[...] = g.normal(0, 4 * np.sqrt(2 / fan_in), param.shape)
    return classify(model, *spirals_data(), SGD(model.parameters(), lr=1e-6))


def _dead_relu() -> Setup:
    model = mlp(hidden=32)
    model[0].bias.data[...] = -20.0  # type: ignore[union-attr]
    return classify(model, *spirals_data())


def _saturated_tanh() -> Setup:
    X, y = blobs(200, centers=3, n_features=20, rng=rng(0))
    X = (X - X.mean(0)) / X.std(0)
    model = mlp(n_in=20, act=nnkit.Tanh, hidden=32)
    model[0].weight.data *= 15.0
    return classify(model, X, y)


def _identical_units() -> Setup:
    """Every hidden unit starts with the same weights, and the next layer treats them alike:
    they get the same gradients and stay copies of each other."""
    model = mlp(hidden=16)
    g = rng(3)
    model[0].weight.data[...] = np.repeat(g.normal(0, 0.5, size=(2, 1)), 16, axis=1)
    model[2].weight.data[...] = np.repeat(g.normal(0, 0.5, size=(1, 16)), 16, axis=0)
    model[4].weight.data[...] = np.repeat(g.normal(0, 0.5, size=(1, 3)), 16, axis=0)
    return classify(model, *spirals_data())


def _residual_bug() -> Setup:
    r = rng(0)
    model = nnkit.Sequential(
        nnkit.Dense(2, 16, rng=r), nnkit.ReLU(),
        nnkit.Residual(nnkit.Sequential(nnkit.Dense(16, 16, rng=r), ForgetsScale(), nnkit.Tanh())),
        nnkit.Dense(16, 3, rng=r),
    )  # fmt: skip
    return classify(model, *spirals_data())


def _graph_bug() -> Setup:
    r = rng(0)
    model = nnkit.Graph(
        inputs="x",
        nodes={
            "h": (nnkit.Dense(2, 16, rng=r), "x"),
            "a": (nnkit.Tanh(), "h"),
            "b": (nnkit.Sequential(nnkit.Dense(16, 16, rng=r), ForgetsScale()), "h"),
            "sum": (nnkit.Add(), ["a", "b"]),
            "out": (nnkit.Dense(16, 3, rng=r), "sum"),
        },
        outputs="out",
    )
    return classify(model, *spirals_data())


def _random_labels() -> Setup:
    X, _ = spirals_data()
    y = rng(5).integers(0, 3, size=len(X))
    model = mlp(hidden=3, depth=1, act=nnkit.Tanh)
    return classify(model, X, y, SGD(model.parameters(), lr=0.01))


@dataclass(frozen=True)
class Broken:
    name: str
    make: Callable[[], Setup]
    code: str
    where: str


BROKEN: list[Broken] = [
    Broken("xor: weights from np.random.rand", lambda: xor_setup(positive_init(xor_net())),
           "bad_init", "0"),
    Broken("xor: no biases", lambda: xor_setup(xor_net(bias=False)), "no_bias", "0"),
    Broken("xor: update uses the wrong activation",
           lambda: xor_setup(xor_net(first=WrongActivationDense)), "bad_gradient", "0"),
    Broken("xor: overflowing sigmoid", _overflowing_sigmoid, "nonfinite", "1"),
    Broken("xor: all the mistakes together", _xor_all_mistakes, "bad_gradient", "0"),
    Broken("softmax before CrossEntropyLoss",
           lambda: classify(nnkit.Sequential(*mlp().layers, nnkit.Softmax()), *spirals_data()),
           "activation_before_logits_loss", "5"),
    Broken("sigmoid before BCEWithLogitsLoss",
           lambda: (nnkit.Sequential(*mlp(n_out=1).layers, nnkit.Sigmoid()),
                    nnkit.BCEWithLogitsLoss(), XOR_X, XOR_Y, None),
           "activation_before_logits_loss", "5"),
    Broken("BCELoss on raw outputs",
           lambda: (mlp(n_out=1), nnkit.BCELoss(), XOR_X, XOR_Y, None),
           "probabilities_loss_on_logits", "4"),
    Broken("NLLLoss on logits", lambda: (mlp(), nnkit.NLLLoss(), *spirals_data(), None),
           "probabilities_loss_on_logits", "4"),
    Broken("targets of shape (N, 1) for CrossEntropyLoss",
           lambda: classify(mlp(), spirals_data()[0], spirals_data()[1][:, None]),
           "target_mismatch", "data"),
    Broken("labels beyond the outputs",
           lambda: classify(mlp(n_out=2), *spirals_data()), "target_mismatch", "data"),
    Broken("regression targets into CrossEntropyLoss",
           lambda: classify(mlp(), spirals_data()[0], spirals_data()[0][:, 0] * 1.7),
           "target_mismatch", "data"),
    Broken("BCE targets outside [0, 1]",
           lambda: (nnkit.Sequential(*mlp(n_out=1).layers, nnkit.Sigmoid()), nnkit.BCELoss(),
                    XOR_X, XOR_Y * 3, None), "target_mismatch", "data"),
    Broken("pixels 0..255", lambda: classify(mlp(), *spirals_data(scale=120.0)),
           "unscaled_inputs", "data"),
    Broken("one feature dominating",
           lambda: classify(mlp(), spirals_data()[0] * np.array([1.0, 500.0]),
                            spirals_data()[1]), "unscaled_inputs", "data"),
    Broken("identical samples",
           lambda: classify(mlp(), np.ones((60, 2)), np.arange(60) % 3),
           "constant_inputs", "data"),
    Broken("identical units (symmetry not broken)", _identical_units, "bad_init", "0"),
    Broken("deep sigmoid network", _deep_sigmoid, "vanishing_gradient", "0"),
    Broken("exploding gradients", _exploding, "exploding_gradient", "0"),
    Broken("dead ReLUs", _dead_relu, "dead_units", "1"),
    Broken("saturated tanh units", _saturated_tanh, "saturated_units", "1"),
    Broken("learning rate far too high",
           lambda: classify(mlp(), *spirals_data(), SGD(mlp().parameters(), lr=50.0)),
           "lr_too_high", "optimizer"),
    Broken("a first step that kills every ReLU",
           lambda: classify(mlp(), *spirals_data(), SGD(mlp().parameters(), lr=10.0)),
           "lr_too_high", "optimizer"),
    Broken("learning rate far too low",
           lambda: classify(mlp(), *spirals_data(), SGD(mlp().parameters(), lr=1e-7)),
           "lr_too_low", "optimizer"),
    Broken("a backward bug deep inside a Residual", _residual_bug, "bad_gradient",
           "2.body.1"),
    Broken("a backward bug inside a Graph node", _graph_bug, "bad_gradient", "b.1"),
    Broken("a layer that drops its input",
           lambda: classify(nnkit.Sequential(ZeroesInput(), *mlp().layers), *spirals_data()),
           "constant_output", "0"),
    Broken("random labels on a tiny model", _random_labels, "not_learning", "model"),
]  # fmt: skip


def _with_optimizer(make: Callable[[], tuple[nnkit.Module, nnkit.Loss, Any, Any]],
                    opt: Callable[[nnkit.Module], Any]) -> Callable[[], Setup]:  # fmt: skip
    def build() -> Setup:
        model, loss, X, y = make()
        return model, loss, X, y, opt(model)

    return build


def _fix_broken_optimizers() -> None:
    """The lr cases must step the model they diagnose: rebuild their optimizers on it."""
    for i, case in enumerate(BROKEN):
        if case.code in ("lr_too_high", "lr_too_low"):
            lr = {"lr_too_low": 1e-7}.get(case.code, 10.0 if "ReLU" in case.name else 50.0)

            def make(lr: float = lr) -> Setup:
                model = mlp()
                return classify(model, *spirals_data(), SGD(model.parameters(), lr=lr))

            BROKEN[i] = Broken(case.name, make, case.code, case.where)


_fix_broken_optimizers()


# -- healthy setups ----------------------------------------------------------------------------
def _xor_recipe() -> Setup:
    return xor_setup(xor_net())


def _spirals() -> Setup:
    X, y = spirals(300, 3, noise=0.2, rng=rng(0))
    model = mlp(hidden=64)
    return classify(model, X, y)


def _blobs() -> Setup:
    X, y = blobs(300, centers=4, rng=rng(1))
    X = (X - X.mean(0)) / X.std(0)
    return classify(mlp(n_out=4, hidden=16), X, y)


def _moons_tanh() -> Setup:
    X, y = moons(300, noise=0.1, rng=rng(2))
    model = mlp(act=nnkit.Tanh, hidden=16)
    return classify(model, X, y, SGD(model.parameters(), lr=0.1, momentum=0.9))


def _circles_binary() -> Setup:
    X, y = circles(300, noise=0.05, rng=rng(3))
    model = mlp(n_out=1, hidden=16)
    return (
        model,
        nnkit.BCEWithLogitsLoss(),
        X,
        y[:, None].astype(np.float64),
        Adam(model.parameters(), lr=1e-2),
    )


def _residual_mlp() -> Setup:
    r = rng(4)
    model = nnkit.Sequential(
        nnkit.Dense(2, 32, rng=r), nnkit.ReLU(),
        nnkit.Residual(nnkit.Sequential(nnkit.Dense(32, 32, rng=r), nnkit.ReLU(),
                                        nnkit.Dense(32, 32, rng=r))),
        nnkit.ReLU(), nnkit.Dense(32, 3, rng=r),
    )  # fmt: skip
    return classify(model, *spirals_data())


def _two_branch_graph() -> Setup:
    r = rng(5)
    model = nnkit.Graph(
        inputs="x",
        nodes={
            "h": (nnkit.Dense(2, 32, rng=r), "x"),
            "wide": (nnkit.ReLU(), "h"),
            "deep": (nnkit.Sequential(nnkit.Dense(32, 32, rng=r), nnkit.Tanh()), "h"),
            "joined": (nnkit.Concatenate(axis=1), ["wide", "deep"]),
            "out": (nnkit.Dense(64, 3, rng=r), "joined"),
        },
        outputs="out",
    )
    return classify(model, *spirals_data())


def _stateful_net() -> Setup:
    r = rng(6)
    model = nnkit.Sequential(
        nnkit.Dense(2, 32, rng=r), Center(32), nnkit.ReLU(),
        Noise(0.2, rng=rng(7)), nnkit.Dense(32, 3, rng=r),
    )  # fmt: skip
    return classify(model, *spirals_data())


def _regression() -> Setup:
    X = rng(8).uniform(-2, 2, size=(300, 3))
    y = np.sin(X[:, :1]) + 0.5 * X[:, 1:2] * X[:, 2:3]
    model = mlp(n_in=3, n_out=1, hidden=32, act=nnkit.Tanh)
    return model, nnkit.MSELoss(), X, y, Adam(model.parameters(), lr=1e-2)


def _digits_cnn() -> Setup:
    import pytest

    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]
    r = rng(11)
    model = nnkit.Sequential(
        nnkit.Conv2d(1, 16, 3, padding=1, rng=r), nnkit.BatchNorm2d(16), nnkit.ReLU(),
        nnkit.MaxPool2d(2),
        nnkit.Conv2d(16, 32, 3, padding=1, rng=r), nnkit.BatchNorm2d(32), nnkit.ReLU(),
        nnkit.MaxPool2d(2), nnkit.Flatten(), nnkit.Dropout(0.25, rng=r),
        nnkit.Dense(128, 10, rng=r),
    )  # fmt: skip
    opt = Adam(model.parameters(), lr=3e-3)
    return model, nnkit.CrossEntropyLoss(), X, digits.target, opt


def _batchnorm_dropout_mlp() -> Setup:
    r = rng(12)
    model = nnkit.Sequential(
        nnkit.Dense(2, 64, rng=r), nnkit.BatchNorm1d(64), nnkit.ReLU(), nnkit.Dropout(0.2, rng=r),
        nnkit.Dense(64, 64, rng=r), nnkit.BatchNorm1d(64), nnkit.ReLU(),
        nnkit.Dense(64, 3, rng=r),
    )  # fmt: skip
    return classify(model, *spirals_data())


def _order_task(n: int = 256, length: int = 12) -> tuple[Array, Array]:
    """Sequences of noise with one +1 and one -1 spike: the class is which comes first."""
    g = rng(13)
    X = g.normal(0, 0.1, size=(n, length, 1)).astype(np.float32)
    y = g.integers(0, 2, size=n)
    for i in range(n):
        a, b = sorted(g.choice(length, 2, replace=False))
        X[i, a, 0], X[i, b, 0] = (1.0, -1.0) if y[i] else (-1.0, 1.0)
    return X, y


def _lstm() -> Setup:
    r = rng(14)
    model = nnkit.Sequential(
        nnkit.LSTM(1, 16, batch_first=True, rng=r), nnkit.LastTimeStep(batch_first=True),
        nnkit.Dense(16, 2, rng=r),
    )  # fmt: skip
    return classify(model, *_order_task())


def _transformer() -> Setup:
    r = rng(15)
    model = nnkit.Sequential(
        nnkit.Dense(1, 16, rng=r),
        nnkit.SinusoidalPositionalEncoding(16, max_len=32),
        nnkit.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1, batch_first=True,
                                      rng=r),
        nnkit.LastTimeStep(batch_first=True),
        nnkit.Dense(16, 2, rng=r),
    )  # fmt: skip
    return classify(model, *_order_task(), Adam(model.parameters(), lr=3e-3))


HEALTHY: list[tuple[str, Callable[[], Setup]]] = [
    ("the XOR recipe", _xor_recipe),
    ("spirals MLP with Adam", _spirals),
    ("blobs with four classes", _blobs),
    ("moons with tanh and momentum", _moons_tanh),
    ("circles with BCEWithLogitsLoss", _circles_binary),
    ("residual MLP", _residual_mlp),
    ("two-branch Graph", _two_branch_graph),
    ("a net with running statistics and noise", _stateful_net),
    ("a regression with MSELoss", _regression),
    ("the digits CNN", _digits_cnn),
    ("an MLP with BatchNorm and Dropout", _batchnorm_dropout_mlp),
    ("an LSTM classifier", _lstm),
    ("a Transformer encoder classifier", _transformer),
]
