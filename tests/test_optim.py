"""Optimizers: every optimizer x option combination against a reference written from the
published formula; dtype and buffer reuse; state_dict round trips; argument validation."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nnkit.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from nnkit.parameter import Parameter

STEPS = 12
SHAPES = [(3, 4), (5,)]

# The documented defaults (PyTorch's), which the "defaults" case of every optimizer relies on.
DEFAULTS: dict[type[Optimizer], dict[str, Any]] = {
    SGD: dict(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False),
    Adam: dict(
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False
    ),
    AdamW: dict(
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False
    ),
    RMSprop: dict(
        lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, maximize=False
    ),
    Adagrad: dict(
        lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, maximize=False
    ),
}


# -- references: one step for one array, in the plainest form of each published formula ----------
Ref = Callable[[np.ndarray, np.ndarray, dict[str, Any], int, dict[str, Any]], np.ndarray]


def sgd_ref(theta: np.ndarray, grad: np.ndarray, s: dict[str, Any], t: int, h: dict[str, Any]):
    g = -grad if h["maximize"] else grad
    if h["weight_decay"] != 0:
        g = g + h["weight_decay"] * theta
    if h["momentum"] != 0:
        b = g if t == 1 else h["momentum"] * s["b"] + (1 - h["dampening"]) * g
        s["b"] = b
        g = g + h["momentum"] * b if h["nesterov"] else b
    return theta - h["lr"] * g


def adam_ref(theta: np.ndarray, grad: np.ndarray, s: dict[str, Any], t: int, h: dict[str, Any]):
    return _adam(theta, grad, s, t, h, decoupled=False)


def adamw_ref(theta: np.ndarray, grad: np.ndarray, s: dict[str, Any], t: int, h: dict[str, Any]):
    return _adam(theta, grad, s, t, h, decoupled=True)


def _adam(theta, grad, s, t, h, decoupled):
    beta1, beta2 = h["betas"]
    g = -grad if h["maximize"] else grad
    if decoupled:
        theta = theta - h["lr"] * h["weight_decay"] * theta
    elif h["weight_decay"] != 0:
        g = g + h["weight_decay"] * theta
    m = beta1 * s.get("m", 0) + (1 - beta1) * g
    v = beta2 * s.get("v", 0) + (1 - beta2) * g**2
    s["m"], s["v"] = m, v
    m_hat = m / (1 - beta1**t)
    if h["amsgrad"]:
        s["v_max"] = np.maximum(s.get("v_max", 0), v)
        v_hat = s["v_max"] / (1 - beta2**t)
    else:
        v_hat = v / (1 - beta2**t)
    return theta - h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])


def rmsprop_ref(theta: np.ndarray, grad: np.ndarray, s: dict[str, Any], t: int, h: dict[str, Any]):
    alpha = h["alpha"]
    g = -grad if h["maximize"] else grad
    if h["weight_decay"] != 0:
        g = g + h["weight_decay"] * theta
    v = alpha * s.get("v", 0) + (1 - alpha) * g**2
    s["v"] = v
    v_tilde = v
    if h["centered"]:
        g_ave = alpha * s.get("g_ave", 0) + (1 - alpha) * g
        s["g_ave"] = g_ave
        v_tilde = np.maximum(v - g_ave**2, 0)  # nnkit's clamp (PyTorch has none)
    if h["momentum"] > 0:
        b = h["momentum"] * s.get("b", 0) + g / (np.sqrt(v_tilde) + h["eps"])
        s["b"] = b
        return theta - h["lr"] * b
    return theta - h["lr"] * g / (np.sqrt(v_tilde) + h["eps"])


def adagrad_ref(theta: np.ndarray, grad: np.ndarray, s: dict[str, Any], t: int, h: dict[str, Any]):
    g = -grad if h["maximize"] else grad
    if h["weight_decay"] != 0:
        g = g + h["weight_decay"] * theta
    lr_t = h["lr"] / (1 + (t - 1) * h["lr_decay"])
    state_sum = s.get("sum", h["initial_accumulator_value"]) + g**2
    s["sum"] = state_sum
    return theta - lr_t * g / (np.sqrt(state_sum) + h["eps"])


REFERENCES: dict[type[Optimizer], Ref] = {
    SGD: sgd_ref,
    Adam: adam_ref,
    AdamW: adamw_ref,
    RMSprop: rmsprop_ref,
    Adagrad: adagrad_ref,
}

# -- the table: every optimizer x option combination -----------------------------------------------
CASES: list[tuple[type[Optimizer], dict[str, Any]]] = [
    (SGD, {}),
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.5)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (SGD, dict(lr=0.1, weight_decay=0.1)),
    (SGD, dict(lr=0.1, maximize=True)),
    (SGD, dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.1, maximize=True)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True)),
    (Adam, {}),
    (Adam, dict(lr=0.05)),
    (Adam, dict(lr=0.05, betas=(0.5, 0.8), eps=1e-3)),
    (Adam, dict(lr=0.05, weight_decay=0.1)),
    (Adam, dict(lr=0.05, amsgrad=True)),
    (Adam, dict(lr=0.05, maximize=True)),
    (Adam, dict(lr=0.05, weight_decay=0.1, amsgrad=True, maximize=True)),
    (AdamW, {}),
    (AdamW, dict(lr=0.05, weight_decay=0)),
    (AdamW, dict(lr=0.05, weight_decay=0.2)),
    (AdamW, dict(lr=0.05, weight_decay=0.2, amsgrad=True)),
    (AdamW, dict(lr=0.05, maximize=True)),
    (
        AdamW,
        dict(lr=0.05, betas=(0.5, 0.8), eps=1e-3, weight_decay=0.2, amsgrad=True, maximize=True),
    ),
    (RMSprop, {}),
    (RMSprop, dict(alpha=0.9, eps=1e-3)),
    (RMSprop, dict(centered=True)),
    (RMSprop, dict(momentum=0.9)),
    (RMSprop, dict(centered=True, momentum=0.9)),
    (RMSprop, dict(weight_decay=0.1)),
    (RMSprop, dict(maximize=True)),
    (RMSprop, dict(alpha=0.9, centered=True, momentum=0.5, weight_decay=0.1, maximize=True)),
    (Adagrad, {}),
    (Adagrad, dict(lr=0.1, lr_decay=0.1)),
    (Adagrad, dict(lr=0.1, weight_decay=0.1)),
    (Adagrad, dict(lr=0.1, initial_accumulator_value=0.5)),
    (Adagrad, dict(lr=0.1, eps=1e-2)),
    (Adagrad, dict(lr=0.1, maximize=True)),
    (
        Adagrad,
        dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3, maximize=True),
    ),
]


def case_id(case: tuple[type[Optimizer], dict[str, Any]]) -> str:
    cls, kwargs = case
    return f"{cls.__name__}-" + ("+".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults")


def gradient(theta: np.ndarray, t: int, seed: int) -> np.ndarray:
    """A gradient that depends on the parameters, large for the first steps then small, so
    that AMSGrad's maximum and momentum buffers matter."""
    noise = np.random.default_rng([seed, t]).normal(size=theta.shape)
    return 0.5 * theta + (3.0 if t <= 3 else 0.2) * noise


def build(cls, kwargs, dtype=np.float64, seed=0):
    """Two parameters in two groups; the second group has its own (halved) learning rate."""
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.normal(size=shape), dtype=dtype) for shape in SHAPES]
    lr = kwargs.get("lr", DEFAULTS[cls]["lr"])
    opt = cls([{"params": [params[0]]}, {"params": [params[1]], "lr": lr / 2}], **kwargs)
    return params, opt


def set_grads(params, t):
    for i, p in enumerate(params):
        p.grad[...] = gradient(p.data.astype(np.float64), t, seed=i)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference_formula(case):
    cls, kwargs = case
    params, opt = build(cls, kwargs)
    hyper = [{**DEFAULTS[cls], **kwargs, "lr": group["lr"]} for group in opt.param_groups]
    base_lrs = [group["lr"] for group in opt.param_groups]
    thetas = [p.data.copy() for p in params]
    ref_states: list[dict[str, Any]] = [{}, {}]
    for t in range(1, STEPS + 1):
        # the learning rate changes every step, as a scheduler would change it
        for group, h, base in zip(opt.param_groups, hyper, base_lrs, strict=True):
            group["lr"] = h["lr"] = base * (1 + 0.1 * t)
        grads = [gradient(theta, t, seed=i) for i, theta in enumerate(thetas)]
        for p, g in zip(params, grads, strict=True):
            p.zero_grad()  # as a training step does: the lazy zero, then a layer's add_grad
            p.add_grad(g)
        opt.step()
        for i, p in enumerate(params):
            thetas[i] = REFERENCES[cls](thetas[i], grads[i], ref_states[i], t, hyper[i])
            np.testing.assert_allclose(p.data, thetas[i], rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(p.grad, grads[i])  # step never modifies grad
    assert all(p.data.dtype == np.float64 for p in params)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float32_state_and_buffers_reused(case):
    cls, kwargs = case
    # a float64 NumPy scalar as lr must not promote anything (NEP 50 treats it as strong)
    kwargs = {**kwargs, "lr": np.float64(kwargs.get("lr", DEFAULTS[cls]["lr"]))}
    params, opt = build(cls, kwargs, dtype=np.float32)
    reference, ref_opt = build(cls, kwargs, dtype=np.float64)
    buffers: dict[tuple[int, str], int] = {}
    for t in range(1, 6):
        set_grads(params, t)
        set_grads(reference, t)
        opt.step()
        ref_opt.step()
        for i, p in enumerate(params):
            assert p.data.dtype == np.float32 and p.grad.dtype == np.float32
            for key, value in opt.state[p].items():
                if key == "step":
                    assert value == t and isinstance(value, int)
                    continue
                assert value.dtype == np.float32, key
                assert buffers.setdefault((i, key), id(value)) == id(value), "reallocated"
    for p, q in zip(params, reference, strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-4, atol=1e-5)


def test_centered_rmsprop_stays_finite_when_the_variance_rounds_below_zero():
    """A constant float32 gradient: v - ḡ² is 0 in exact arithmetic, but rounding makes it
    slightly negative at some steps, and its square root NaN unless clamped at 0."""
    p = Parameter(np.zeros(100), dtype=np.float32)
    opt = RMSprop([p], lr=1e-3, centered=True)
    grad = np.full(100, 0.1, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # sqrt of a negative number warns
        for _ in range(3000):
            p.zero_grad()
            p.add_grad(grad)
            opt.step()
    assert p.data.dtype == np.float32 and np.isfinite(p.data).all()
    assert np.isfinite(opt.state[p]["square_avg"]).all()


def _assert_plain(value: Any, where: str = "state_dict") -> None:
    """Only dicts (str/int keys), lists, tuples, arrays, numbers, bools, strings and None."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where} key {key!r}"
            _assert_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _assert_plain(item, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (np.ndarray, int, float, bool, str)), where


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_state_dict_round_trip_continues_bitwise(case):
    cls, kwargs = case
    params, opt = build(cls, kwargs, dtype=np.float32)
    for t in range(1, 5):
        set_grads(params, t)
        opt.step()
    saved = opt.state_dict()
    _assert_plain(saved)
    assert sorted(saved["state"]) == [0, 1]
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1]]
    snapshot = {i: {k: np.copy(v) for k, v in s.items()} for i, s in saved["state"].items()}

    # a fresh model with the same values, and a freshly built optimizer with other settings
    clones = [Parameter(p.data, dtype=np.float32) for p in params]
    resumed = cls([{"params": [clones[0]]}, {"params": [clones[1]], "lr": 123.0}])
    groups = list(resumed.param_groups)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[1]["lr"] == opt.param_groups[1]["lr"]
    assert all(a is b for a, b in zip(groups, resumed.param_groups, strict=True))  # in place
    for t in range(5, 11):
        set_grads(params, t)
        set_grads(clones, t)
        opt.step()
        resumed.step()
        for p, q in zip(params, clones, strict=True):
            np.testing.assert_array_equal(p.data, q.data)  # bitwise: same ops, same order
    for i, s in saved["state"].items():  # the state_dict was a copy, untouched by later steps
        for key, value in s.items():
            np.testing.assert_array_equal(value, snapshot[i][key])


def test_state_dict_survives_conversion_to_plain_arrays():
    """What a pickle-free checkpoint does: arrays -> float64 arrays, numbers -> 0-d arrays."""
    params, opt = build(Adam, dict(lr=0.05, amsgrad=True))
    for t in range(1, 4):
        set_grads(params, t)
        opt.step()
    saved = opt.state_dict()
    converted = {
        "state": {
            str(i): {k: np.asarray(v, dtype=np.float64) for k, v in s.items()}
            for i, s in saved["state"].items()
        },
        "param_groups": saved["param_groups"],
    }
    clones = [Parameter(p.data) for p in params]
    resumed = Adam([{"params": [clones[0]]}, {"params": [clones[1]]}], amsgrad=True)
    resumed.load_state_dict(converted)
    assert resumed.state[clones[0]]["step"] == 3
    set_grads(params, 4)
    set_grads(clones, 4)
    opt.step()
    resumed.step()
    for p, q in zip(params, clones, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def _trained_adam():
    params, opt = build(Adam, dict(lr=0.05))
    set_grads(params, 1)
    opt.step()
    return params, opt


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda sd: sd["param_groups"].pop(), ValueError, "1 parameter groups, but the"),
        (lambda sd: sd["param_groups"][0]["params"].append(7), ValueError, "has 2 parameters"),
        (lambda sd: sd["state"][0].update(exp_avg=np.zeros((4, 3))), ValueError, r"shape \(4, 3\)"),
        (lambda sd: sd["state"][0].update(momentum_buffer=np.zeros((3, 4))), ValueError, "unknown"),
        (lambda sd: sd["state"][0].pop("exp_avg_sq"), ValueError, "exp_avg_sq"),
        (lambda sd: sd["state"][0].update(step=2.5), ValueError, "integer"),
        (lambda sd: sd["state"].update({9: {}}), ValueError, "parameter 9"),
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError, "-1.0"),
        (lambda sd: sd["param_groups"][0].update(amsgrad=True), ValueError, "max_exp_avg_sq"),
        (lambda sd: sd.pop("state"), ValueError, "'state'"),
    ],
)
def test_load_state_dict_validates_and_changes_nothing_on_error(mutate, error, match):
    _params, opt = _trained_adam()
    saved = opt.state_dict()
    mutate(saved)
    before_groups = [dict(g) for g in opt.param_groups]
    before_state = opt.state
    with pytest.raises(error, match=match):
        opt.load_state_dict(saved)
    assert opt.param_groups == before_groups and opt.state is before_state


def test_load_state_dict_into_a_different_optimizer_is_refused():
    params, opt = _trained_adam()
    sgd = SGD([{"params": [params[0]]}, {"params": [params[1]]}], momentum=0.9)
    with pytest.raises(ValueError, match="unknown entries"):
        sgd.load_state_dict(opt.state_dict())


# -- parameter groups ------------------------------------------------------------------------------
def test_group_options_override_defaults():
    w, b = Parameter(np.ones((2, 2))), Parameter(np.ones(2))
    opt = SGD([{"params": [w]}, {"params": b, "weight_decay": 0.0}], lr=0.5, weight_decay=0.1)
    assert opt.param_groups[0]["weight_decay"] == 0.1
    assert opt.param_groups[1]["weight_decay"] == 0.0 and opt.param_groups[1]["lr"] == 0.5
    opt.step()  # zero gradients: only weight decay moves the parameters
    np.testing.assert_allclose(w.data, 1 - 0.5 * 0.1)
    np.testing.assert_array_equal(b.data, 1.0)


def test_add_param_group_starts_without_state():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt = Adam([a], lr=0.1)
    a.grad[...] = 1.0
    opt.step()
    opt.add_param_group({"params": [b], "lr": 0.2})
    assert b not in opt.state and opt.param_groups[1]["betas"] == (0.9, 0.999)
    b.grad[...] = 1.0
    opt.step()
    assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1
    np.testing.assert_allclose(b.data, 1 - 0.2, rtol=1e-7)  # Adam's first step moves by ~lr


def test_zero_grad_resets_every_parameter_in_place():
    params, opt = build(SGD, {})
    grads = [p.grad for p in params]
    set_grads(params, 1)
    opt.zero_grad()
    for p, g in zip(params, grads, strict=True):
        assert p.grad is g and not p.grad.any()


def test_accepts_a_generator_and_a_bare_parameter_group():
    params = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
    assert len(SGD(p for p in params).param_groups[0]["params"]) == 2
    assert SGD([{"params": params[0]}]).param_groups[0]["params"] == [params[0]]


# -- signatures and argument validation ------------------------------------------------------------
@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda c: c.__name__)
def test_signature_matches_pytorch(cls):
    signature = inspect.signature(cls)
    names = list(signature.parameters)
    assert names == ["params", *DEFAULTS[cls]]
    for name, default in DEFAULTS[cls].items():
        assert signature.parameters[name].default == default, name
    assert signature.parameters["maximize"].kind is inspect.Parameter.KEYWORD_ONLY


def _p():
    return Parameter(np.zeros(3))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: SGD([_p()], lr=-0.1), ValueError, "lr must be a finite number >= 0, got -0.1"),
        (
            lambda: SGD([_p()], momentum=-0.5),
            ValueError,
            "momentum must be a finite number >= 0, got -0.5",
        ),
        (
            lambda: SGD([_p()], weight_decay=-1e-4),
            ValueError,
            "weight_decay must be a finite number >= 0, got -0.0001",
        ),
        (
            lambda: SGD([_p()], lr=float("nan")),
            ValueError,
            "lr must be a finite number >= 0, got nan",
        ),
        (lambda: SGD([_p()], lr="0.1"), TypeError, "lr must be a real number, got '0.1'"),
        (lambda: SGD([_p()], nesterov=True), ValueError, "momentum=0"),
        (lambda: SGD([_p()], momentum=0.9, dampening=0.1, nesterov=True), ValueError, "0.1"),
        (
            lambda: Adam([_p()], betas=(1.0, 0.999)),
            ValueError,
            r"betas\[0\] must be in \[0, 1\), got 1.0",
        ),
        (
            lambda: Adam([_p()], betas=(0.9, -0.1)),
            ValueError,
            r"betas\[1\] must be in \[0, 1\), got -0.1",
        ),
        (lambda: Adam([_p()], betas=(0.9,)), ValueError, "pair"),
        (
            lambda: Adam([_p()], eps=-1e-8),
            ValueError,
            "eps must be a finite number >= 0, got -1e-08",
        ),
        (
            lambda: AdamW([_p()], weight_decay=-0.01),
            ValueError,
            "weight_decay must be a finite number >= 0, got -0.01",
        ),
        (lambda: AdamW([_p()], betas=(0.9, 1.5)), ValueError, "1.5"),
        (
            lambda: RMSprop([_p()], alpha=-0.1),
            ValueError,
            "alpha must be a finite number >= 0, got -0.1",
        ),
        (lambda: RMSprop([_p()], alpha=1.5), ValueError, r"alpha must be in \[0, 1\], got 1.5"),
        (
            lambda: RMSprop([_p()], momentum=-1),
            ValueError,
            "momentum must be a finite number >= 0, got -1",
        ),
        (
            lambda: RMSprop([_p()], eps=-1.0),
            ValueError,
            "eps must be a finite number >= 0, got -1.0",
        ),
        (
            lambda: Adagrad([_p()], lr_decay=-1),
            ValueError,
            "lr_decay must be a finite number >= 0, got -1",
        ),
        (
            lambda: Adagrad([_p()], initial_accumulator_value=-2),
            ValueError,
            "initial_accumulator_value must be a finite number >= 0, got -2",
        ),
        (lambda: Adagrad([_p()], eps=-1), ValueError, "eps must be a finite number >= 0, got -1"),
        (lambda: SGD(np.zeros(3)), TypeError, "ndarray"),
        (lambda: SGD(_p()), TypeError, "Parameter"),
        (lambda: SGD([]), ValueError, "empty"),
        (lambda: SGD([np.zeros(3)]), TypeError, "ndarray, not a Parameter"),
        (lambda: SGD([{"params": {_p()}}]), TypeError, "set"),
        (lambda: SGD([{"params": []}]), ValueError, "no parameters"),
        (lambda: SGD([{"lr": 0.1}]), TypeError, "'params'"),
        (
            lambda: SGD([{"params": [_p()], "lr": -3.0}]),
            ValueError,
            "lr must be a finite number >= 0, got -3.0",
        ),
        (
            lambda: SGD([_p()], lr=float("inf")),
            ValueError,
            "lr must be a finite number >= 0, got inf",
        ),
        (lambda: Adam([_p()], betas={0.999, 0.9}), TypeError, r"betas must be a tuple .* \(set\)"),
        (lambda: Adam([_p()], betas={0.9: 0, 0.999: 1}), TypeError, r"\(dict\)"),
        (lambda: Adam([_p()], betas=iter((0.9, 0.999))), TypeError, "betas must be a tuple"),
        (lambda: Adam([_p()], betas="ab"), TypeError, "betas must be a tuple"),
        (lambda: SGD([_p()], maximize="no"), TypeError, "maximize must be True or False, got 'no'"),
        (
            lambda: SGD([_p()], momentum=0.9, nesterov=1),
            TypeError,
            "nesterov must be True or False",
        ),
        (lambda: Adam([_p()], amsgrad="yes"), TypeError, "amsgrad must be True or False"),
        (lambda: AdamW([_p()], maximize=0), TypeError, "maximize must be True or False, got 0"),
        (lambda: RMSprop([_p()], centered="False"), TypeError, "centered must be True or False"),
        (lambda: Adagrad([_p()], maximize=None), TypeError, "maximize must be True or False"),
        (lambda: SGD([{"params": [_p()], "maximize": "no"}]), TypeError, "maximize must be True"),
    ],
)
def test_argument_errors_name_the_bad_value(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_parameter_twice_is_an_error():
    p, q = _p(), _p()
    with pytest.raises(ValueError, match="more than once"):
        SGD([p, q, p])
    with pytest.raises(ValueError, match="group 0 and again in group 1"):
        SGD([{"params": [p]}, {"params": [q, p]}])
    opt = SGD([p])
    with pytest.raises(ValueError, match="one group only"):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1


def test_hyperparameters_are_read_at_every_step():
    p = Parameter(np.zeros(1))
    opt = SGD([p], lr=1.0)
    p.grad[...] = 1.0
    opt.step()
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    assert p.data[0] == pytest.approx(-1.25)
    assert math.isclose(opt.defaults["lr"], 1.0)
