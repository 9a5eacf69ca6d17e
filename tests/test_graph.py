"""Containers and Graph: results equal the same network written by hand, construction errors
are clear, errors name the child by its dotted path, and nested models save and load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stateful_layers import Center, Noise

import nnkit


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def full_message(exc: BaseException) -> str:
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


def two_in_two_out() -> nnkit.Graph:
    r = rng()
    return nnkit.Graph(
        inputs=["x", "z"],
        nodes={
            "h": (nnkit.Dense(4, 3, rng=r), "x"),  # fan-out: h feeds a, b and sum
            "a": (nnkit.Tanh(), "h"),
            "b": (nnkit.Sigmoid(), "h"),
            "prod": (nnkit.Multiply(), ["a", "b"]),
            "sum": (nnkit.Add(), ["prod", "h", "z"]),  # fan-in of three
            "head": (nnkit.Dense(3, 2, rng=r), "sum"),
        },
        outputs=["head", "sum"],
    )


def test_graph_equals_the_network_written_by_hand() -> None:
    graph = two_in_two_out().astype(np.float64)
    x, z = rng(1).normal(size=(5, 4)), rng(2).normal(size=(5, 3))
    g_head, g_sum = rng(3).normal(size=(5, 2)), rng(4).normal(size=(5, 3))
    head, summed = graph(x, z)
    dx, dz = graph.backward(g_head, g_sum)

    w1, b1 = graph.nodes["h"].weight.data, graph.nodes["h"].bias.data
    w2, b2 = graph.nodes["head"].weight.data, graph.nodes["head"].bias.data
    h = x @ w1 + b1
    a, b = np.tanh(h), 1 / (1 + np.exp(-h))
    s = a * b + h + z
    np.testing.assert_allclose(summed, s, rtol=1e-12)
    np.testing.assert_allclose(head, s @ w2 + b2, rtol=1e-12)
    ds = g_sum + g_head @ w2.T  # sum's value feeds head and is an output
    dh = ds + ds * b * (1 - a**2) + ds * a * b * (1 - b)  # three consumers of h, summed
    np.testing.assert_allclose(dx, dh @ w1.T, rtol=1e-10)
    np.testing.assert_allclose(dz, ds, rtol=1e-12)
    np.testing.assert_allclose(graph.nodes["h"].weight.grad, x.T @ dh, rtol=1e-10)
    np.testing.assert_allclose(graph.nodes["head"].weight.grad, s.T @ g_head, rtol=1e-10)


def test_a_missing_output_gradient_means_zeros_and_accumulate_grad_matches() -> None:
    graph = two_in_two_out().astype(np.float64)
    x, z = rng(1).normal(size=(5, 4)), rng(2).normal(size=(5, 3))
    g = rng(3).normal(size=(5, 2))
    graph(x, z)
    dx, _ = graph.backward(g, None)
    grads = {n: p.grad.copy() for n, p in graph.named_parameters()}
    graph.zero_grad()
    graph(x, z)
    dx0, _ = graph.backward(g, np.zeros((5, 3)))
    np.testing.assert_array_equal(dx, dx0)
    graph.zero_grad()
    graph(x, z)
    graph.accumulate_grad(g, None)
    for name, param in graph.named_parameters():
        np.testing.assert_allclose(param.grad, grads[name], rtol=1e-12)
    assert [n for n, _ in graph.named_parameters()] == [
        "h.weight", "h.bias", "head.weight", "head.bias",
    ]  # fmt: skip


def picks() -> nnkit.Graph:
    return nnkit.Graph(
        inputs=["x", "y"],
        nodes={
            "pair": (nnkit.Parallel(nnkit.Tanh(), nnkit.Sigmoid()), ["x", "y"]),
            "out": (nnkit.Multiply(), ["pair:1", "pair:0"]),
        },
        outputs="out",
    )


def test_graph_picks_elements_of_a_tuple_output() -> None:
    x, y = rng(1).normal(size=(3, 2)), rng(2).normal(size=(3, 2))
    np.testing.assert_allclose(picks()(x, y), np.tanh(x) / (1 + np.exp(-y)), rtol=1e-12)
    nnkit.testing.check_module(picks(), x, y)


GRAPH_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("cycle", dict(inputs="x", nodes={"a": (nnkit.Tanh(), ["x", "b"]),
                                      "b": (nnkit.Tanh(), "a")}, outputs="b"), "cycle"),
    ("self loop", dict(inputs="x", nodes={"a": (nnkit.Add(), ["x", "a"])}, outputs="a"),
     "its own output"),
    ("unknown source", dict(inputs="x", nodes={"a": (nnkit.Tanh(), "y")}, outputs="a"),
     "'y', which is neither an input nor a node"),
    ("unused input", dict(inputs=["x", "spare"], nodes={"a": (nnkit.Tanh(), "x")},
                          outputs="a"), "inputs ['spare'] feed no node"),
    ("unused node", dict(inputs="x", nodes={"a": (nnkit.Tanh(), "x"),
                                            "lost": (nnkit.ReLU(), "x")}, outputs="a"),
     "nodes ['lost'] feed no node and are not outputs"),
    ("output is an input", dict(inputs="x", nodes={"a": (nnkit.Tanh(), "x")},
                                outputs=["a", "x"]), "output 'x' is not a node"),
    ("name clash", dict(inputs="x", nodes={"x": (nnkit.Tanh(), "x")}, outputs="x"),
     "used twice"),
    ("dotted name", dict(inputs="x", nodes={"a.b": (nnkit.Tanh(), "x")}, outputs="a.b"),
     "without '.' or ':'"),
    ("bad index", dict(inputs="x", nodes={"a": (nnkit.Tanh(), "x:first")}, outputs="a"),
     "'name' or 'name:index'"),
    ("not a pair", dict(inputs="x", nodes={"a": nnkit.Tanh()}, outputs="a"),
     "must be (module, source)"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, words", [c[1:] for c in GRAPH_ERRORS],
                         ids=[c[0] for c in GRAPH_ERRORS])  # fmt: skip
def test_graph_construction_errors(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises((ValueError, TypeError), match=re.escape(words)):
        nnkit.Graph(**kwargs)


def test_a_module_may_be_only_one_node() -> None:
    tanh = nnkit.Tanh()
    with pytest.raises(ValueError, match="already part of this Graph"):
        nnkit.Graph(inputs="x", nodes={"a": (tanh, "x"), "b": (tanh, "a")}, outputs="b")


def test_graph_call_errors() -> None:
    graph = two_in_two_out()
    with pytest.raises(ValueError, match=r"takes 2 inputs \(x, z\), got 1"):
        graph(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="before forward"):
        graph.backward(np.ones((2, 2)), None)
    graph(np.ones((2, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="one gradient per output"):
        graph.backward(np.ones((2, 2)))


def test_errors_carry_the_whole_dotted_path_of_the_child() -> None:
    model = nnkit.Sequential(
        nnkit.Dense(2, 4), nnkit.Tanh(),
        nnkit.Residual(nnkit.Sequential(nnkit.Dense(4, 4), nnkit.Tanh())),
    )  # fmt: skip
    model(np.ones((3, 2)))
    with pytest.raises(ValueError) as info:
        model.backward(np.ones((3, 5)))
    message = full_message(info.value)
    assert 'raised in backward of child "2.body.1" (Tanh)' in message
    assert message.count("raised in") == 1
    graph = nnkit.Graph(inputs="x", nodes={"inner": (model, "x")}, outputs="inner")
    with pytest.raises(ValueError) as info:
        graph(np.ones((3, 3)))
    assert 'raised in forward of child "inner.0" (Dense)' in full_message(info.value)


def test_residual_and_concat_check_their_shapes_and_children() -> None:
    with pytest.raises(ValueError, match=r"maps input \(2, 4\) to \(2, 3\)"):
        nnkit.Residual(nnkit.Dense(4, 3))(np.ones((2, 4)))
    dense = nnkit.Dense(4, 4)
    with pytest.raises(ValueError, match="already part of this Residual"):
        nnkit.Residual(dense, dense)
    with pytest.raises(TypeError, match="the class Tanh"):
        nnkit.Concat(nnkit.Tanh)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ outside axis 1"):
        nnkit.Concatenate()(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="nnkit does not broadcast"):
        nnkit.Add()(np.ones((2, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="2 branches takes 2 inputs, got 1"):
        nnkit.Parallel(nnkit.Tanh(), nnkit.ReLU())(np.ones(2))


@nnkit.register_module
class Block(nnkit.Module):
    """A user's module built from modules passed to its constructor."""

    def __init__(self, encoder: nnkit.Module, head: nnkit.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.encoder, self.head, self.scale = encoder, head, scale

    def forward(self, x: Any) -> Any:
        return self.head(self.encoder(x)) * self.scale

    def backward(self, grad_out: Any) -> Any:
        return self.encoder.backward(self.head.backward(grad_out * self.scale))

    def get_config(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "head": self.head, "scale": self.scale}


def nested(seed: int = 0) -> nnkit.Module:
    r = rng(seed)
    body = nnkit.Sequential(nnkit.Dense(4, 4, rng=r), Center(4), nnkit.Tanh())
    branches = nnkit.Concat(nnkit.Dense(4, 2, rng=r), Noise(0.2, rng=rng(seed + 1)))
    graph = nnkit.Graph(
        inputs="x",
        nodes={"r": (nnkit.Residual(body), "x"), "c": (branches, "r")},
        outputs="c",
    )
    return Block(graph, nnkit.Sequential(nnkit.Dense(6, 3, rng=r)), scale=0.5)


def test_nested_modules_save_and_load_with_buffers_and_generators(tmp_path: Path) -> None:
    model = nested()
    x = rng(5).normal(size=(6, 4))
    model(x)  # moves the running mean and the noise generator
    nnkit.save(model, tmp_path / "nested.npz")
    loaded = nnkit.load(tmp_path / "nested.npz")
    assert repr(loaded) == repr(model)
    assert [type(m) for m in loaded.modules()] == [type(m) for m in model.modules()]
    assert list(loaded.state_dict()) == list(model.state_dict())
    assert all(np.array_equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert loaded.generator_state() == model.generator_state()
    np.testing.assert_array_equal(loaded(x), model(x))  # train mode: the same noise too
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), model(x))


def test_a_config_module_that_is_not_a_child_is_refused(tmp_path: Path) -> None:
    class Liar(Block):
        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "head": nnkit.Tanh()}

    nnkit.register_module(Liar)
    with pytest.raises(nnkit.SerializationError, match="not one of its children"):
        nnkit.save(Liar(nnkit.Tanh(), nnkit.ReLU()), tmp_path / "liar.npz")


def test_every_container_conforms_and_its_config_rebuilds_it() -> None:
    model = nested()
    copy = type(model)(**model.get_config())
    assert copy.encoder is model.encoder  # the config holds the children themselves
    x = rng(5).normal(size=(6, 4))
    nnkit.testing.check_module(model, x, batch_independent="eval", empty_batch="eval")


def test_the_error_path_goes_through_a_plain_module_between_containers() -> None:
    inner = nnkit.Sequential(nnkit.Dense(3, 3), nnkit.Dense(4, 2))
    model = nnkit.Sequential(nnkit.Dense(2, 3), Block(inner, nnkit.Tanh()))
    with pytest.raises(ValueError) as info:
        model(np.ones((2, 2)))
    assert 'raised in forward of child "1.encoder.1" (Dense)' in full_message(info.value)


def test_a_sequential_subclass_must_keep_its_layers_in_its_config(tmp_path: Path) -> None:
    class Scaled(nnkit.Sequential):
        def __init__(self, *layers: nnkit.Module, scale: float = 2.0) -> None:
            super().__init__(*layers)
            self.scale = scale

        def get_config(self) -> dict[str, Any]:
            return {"scale": self.scale}  # forgets super().get_config()

    nnkit.register_module(Scaled)
    with pytest.raises(nnkit.SerializationError, match=r"super\(\)\.get_config\(\)"):
        nnkit.save(Scaled(nnkit.Tanh()), tmp_path / "s.npz")


@pytest.mark.parametrize(
    "make",
    [
        lambda: nnkit.Concat(nnkit.Tanh(), nnkit.ReLU()),
        lambda: nnkit.Parallel(nnkit.Tanh()),
        lambda: nnkit.Graph(inputs="x", nodes={"t": (nnkit.Tanh(), "x")}, outputs="t"),
    ],
    ids=["Concat", "Parallel", "Graph"],
)
def test_what_a_container_subclass_adds_is_state_too(make: Any) -> None:
    container = make()
    container.gate = nnkit.Parameter(np.ones(2))
    container.count = nnkit.Buffer(np.zeros((), dtype=np.int64))
    assert "gate" in dict(container.named_parameters())
    assert {"gate", "count"} <= set(container.state_dict())


def test_a_tuple_passed_to_a_one_input_child_gets_advice() -> None:
    model = nnkit.Sequential(nnkit.LSTM(3, 4, batch_first=True), nnkit.Dense(4, 2))
    with pytest.raises(TypeError) as info:
        model(np.ones((2, 5, 3)))
    message = full_message(info.value)
    assert "child 0 (LSTM) returned a tuple of 2 outputs" in message
    assert "LastTimeStep" in message and 'raised in forward of child "1" (Dense)' in message
