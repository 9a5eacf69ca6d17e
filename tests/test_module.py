"""Module, Parameter and Sequential: discovery, modes, state, dtype, repr."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit.testing import check_module


def mlp(seed: int = 0) -> nnkit.Sequential:
    rng = np.random.default_rng(seed)
    return nnkit.Sequential(
        nnkit.Dense(2, 3, rng=rng), nnkit.Sigmoid(), nnkit.Dense(3, 1, rng=rng)
    )


class TwoBranch(nnkit.Module):
    """A custom module: parameters found through attributes and a list, one layer shared."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.shared = nnkit.Dense(3, 3, rng=rng)
        self.blocks = [self.shared, nnkit.Tanh(), self.shared]
        self.scale = nnkit.Parameter(np.array([2.0]))

    def forward(self, x: Any) -> Any:
        for block in self.blocks:
            x = block(x)
        return x * self.scale.data

    def backward(self, grad_out: Any) -> Any:
        raise NotImplementedError  # not needed for discovery tests


def test_parameter_basics() -> None:
    p = nnkit.Parameter([[1, 2]])
    assert p.data.dtype == np.float32 and p.grad.shape == (1, 2) and not p.grad.any()
    p.grad += 3
    grad = p.grad
    p.zero_grad()
    assert grad is p.grad and not p.grad.any()
    assert repr(p) == "Parameter(shape=(1, 2), dtype=float32)"
    with pytest.raises(TypeError, match="floating"):
        nnkit.Parameter([1.0], dtype=np.int32)
    with pytest.raises(TypeError, match="numeric"):
        nnkit.Parameter(["a"])


def test_zero_grad_is_lazy_but_never_visible() -> None:
    p = nnkit.Parameter(np.ones((2, 2)))
    array = p.grad
    array += 5
    p.zero_grad()
    p.add_grad(np.full((2, 2), 2.0))  # after zero_grad: overwrite, not add
    assert p.grad is array and np.all(p.grad == 2)
    p.add_grad(np.ones((2, 2)))  # then accumulate
    assert np.all(p.grad == 3)
    p.zero_grad()
    a, b = np.ones((2, 3)), np.ones((3, 2))
    p.add_grad_matmul(a, b)
    assert np.all(p.grad == 3) and p.grad is array
    p.add_grad_matmul(a, b)
    assert np.all(p.grad == 6)
    p.zero_grad()
    p.add_grad_sum(np.ones((3, 2, 2)))
    assert np.all(p.grad == 3)
    p.add_grad_sum(np.ones((2, 2, 4)), axis=2)
    assert np.all(p.grad == 7)
    p.zero_grad()
    assert not p.grad.any()  # reading materialises the zeros
    p.grad += 1  # the plain += of a custom layer works after zero_grad too
    p.zero_grad()
    p.grad += 1
    assert np.all(p.grad == 1)
    p.zero_grad()
    p.astype(np.float64)
    assert p.grad.dtype == np.float64 and not p.grad.any()


def test_grad_setter_checks_shape_and_dtype() -> None:
    p = nnkit.Parameter(np.ones(3))
    p.zero_grad()
    p.grad = np.full(3, 2.0)
    assert np.all(p.grad == 2)  # an assigned gradient is not cleared by an earlier zero_grad
    with pytest.raises(ValueError, match="shape"):
        p.grad = np.ones(4)
    with pytest.raises(ValueError, match="dtype"):
        p.grad = np.ones(3, dtype=np.float32)


def test_named_parameters_use_dotted_indices() -> None:
    names = [name for name, _ in mlp().named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert mlp().num_parameters() == 2 * 3 + 3 + 3 + 1


def test_discovery_walks_attributes_and_lists_and_dedups_shared() -> None:
    model = TwoBranch(np.random.default_rng(0))
    names = [name for name, _ in model.named_parameters()]
    assert names == ["shared.weight", "shared.bias", "scale"]
    assert [name for name, _ in model.named_children()] == [
        "shared", "blocks.0", "blocks.1", "blocks.2"
    ]
    assert len(list(model.modules())) == 3  # itself, the shared Dense, the Tanh


def test_discovery_of_parameter_lists_and_dicts() -> None:
    class Bag(nnkit.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ws = [nnkit.Parameter(np.ones(2)), nnkit.Parameter(np.ones(3))]
            self.heads = {"cls": nnkit.Dense(2, 2), "box": nnkit.Dense(2, 4)}

    names = [name for name, _ in Bag().named_parameters()]
    assert names == [
        "ws.0", "ws.1", "heads.cls.weight", "heads.cls.bias", "heads.box.weight", "heads.box.bias"
    ]


def test_repr_of_a_container_with_config() -> None:
    class Scaled(nnkit.Sequential):
        def get_config(self) -> dict[str, Any]:
            return {"scale": 0.5}

    assert repr(Scaled(nnkit.Tanh())) == "Scaled(\n  scale=0.5\n  (0): Tanh()\n)"


def test_tying_weights_of_different_shapes_says_so() -> None:
    first, second = nnkit.Dense(4, 3), nnkit.Dense(3, 4)
    second.weight = first.weight
    with pytest.raises(ValueError, match=r"weight of shape \(4, 3\); a Parameter shared"):
        nnkit.Sequential(first, second)(np.ones((1, 4)))


def test_same_layer_twice_is_refused_with_a_way_out() -> None:
    layer = nnkit.Dense(3, 3)
    with pytest.raises(ValueError, match=r"Dense in argument 2 is already part"):
        nnkit.Sequential(layer, nnkit.Tanh(), layer)
    with pytest.raises(ValueError, match="already part"):
        nnkit.Sequential(layer, nnkit.Tanh(), nnkit.Sequential(layer))  # nested reuse
    model = nnkit.Sequential(layer)
    with pytest.raises(ValueError, match=re.escape("second.weight = first.weight")):
        model.append(layer)
    assert len(model) == 1


def test_tied_weights_collect_gradient_from_both_uses() -> None:
    rng = np.random.default_rng(0)
    first, second = nnkit.Dense(3, 3, rng=rng), nnkit.Dense(3, 3, rng=rng)
    second.weight = first.weight
    model = nnkit.Sequential(first, nnkit.Tanh(), second)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.bias"]
    x = rng.normal(size=(4, 3))
    assert nnkit.gradcheck(model, x)  # the shared weight's gradient is the sum of both uses
    check_module(model, x)


def test_sequential_subclass_keeps_its_own_parameters() -> None:
    class Scaled(nnkit.Sequential):
        def __init__(self) -> None:
            super().__init__(nnkit.Dense(2, 2))
            self.scale = nnkit.Parameter(np.ones(1))

    model = Scaled()
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "scale"]
    assert "scale" in model.state_dict()


def test_parameter_copy_is_independent() -> None:
    p = nnkit.Parameter(np.ones(3))
    p.grad += 5
    q = copy.copy(p)
    q.zero_grad()
    q.add_grad(np.ones(3))
    assert np.all(p.grad == 5) and np.all(q.grad == 1) and np.all(q.data == p.data)
    q.data += 1
    assert np.all(p.data == 1)


@pytest.mark.parametrize("zeroed", [True, False], ids=["after-zero_grad", "accumulating"])
def test_parameter_adds_refuse_broadcasting(zeroed: bool) -> None:
    p = nnkit.Parameter(np.ones((2, 3)))
    if zeroed:
        p.zero_grad()
    with pytest.raises(ValueError, match=r"add_grad got shape \(1, 3\)"):
        p.add_grad(np.ones((1, 3)))
    with pytest.raises(ValueError, match="add_grad_matmul"):
        p.add_grad_matmul(np.ones((1, 4)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="add_grad_sum"):
        p.add_grad_sum(np.ones((5, 3)), axis=0)
    with pytest.raises(TypeError, match="ndarray"):
        p.grad = [1.0, 2.0, 3.0]  # type: ignore[assignment]


def test_subclass_overriding_backward_keeps_correct_accumulate_grad() -> None:
    class Scaled(nnkit.Sequential):
        def __init__(self) -> None:
            super().__init__(nnkit.Dense(2, 1, rng=np.random.default_rng(0)))
            self.scale = nnkit.Parameter(np.full(1, 3.0))
            self._y: Any = None

        def forward(self, x: Any) -> Any:
            self._y = super().forward(x)
            return self._y * self.scale.data

        def backward(self, grad_out: Any) -> Any:
            self.scale.add_grad(np.sum(grad_out * self._y, axis=0))
            return super().backward(grad_out * self.scale.data)

    x = np.random.default_rng(1).normal(size=(4, 2))
    via_backward, via_accumulate = Scaled(), Scaled()
    for model, run in ((via_backward, "backward"), (via_accumulate, "accumulate_grad")):
        model(x)
        getattr(model, run)(np.ones((4, 1)))
    for (name, a), (_, b) in zip(
        via_backward.named_parameters(), via_accumulate.named_parameters(), strict=True
    ):
        np.testing.assert_allclose(a.grad, b.grad, err_msg=name)


def test_train_eval_switch_whole_tree() -> None:
    model = mlp()
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_zero_grad_clears_every_parameter() -> None:
    model = mlp()
    model(np.ones((2, 2)))
    model.backward(np.ones((2, 1)))
    assert any(p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert not any(p.grad.any() for p in model.parameters())


def test_state_dict_round_trip_and_copies() -> None:
    a, b = mlp(0), mlp(1)
    state = a.state_dict()
    state["0.weight"][...] = 7  # a copy: the model is not touched
    assert not np.any(a[0].weight.data == 7)  # type: ignore[attr-defined]
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).normal(size=(3, 2))
    np.testing.assert_array_equal(a(x), b(x))


def test_load_state_dict_lists_every_problem_and_changes_nothing() -> None:
    model = mlp()
    before = model.state_dict()
    bad = model.state_dict()
    del bad["2.bias"]
    bad["extra"] = np.zeros(1, dtype=np.float32)
    bad["0.weight"] = np.zeros((3, 2), dtype=np.float32)
    bad["0.bias"] = np.zeros(3, dtype=np.float64)
    bad["2.weight"] = bad["2.weight"] + 5  # valid, must not be assigned either
    with pytest.raises(ValueError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    assert "missing keys: 2.bias" in message
    assert "unexpected keys: extra" in message
    assert "0.weight: shape (3, 2) in the state, (2, 3) in the model" in message
    assert "0.bias: dtype float64 in the state, float32 in the model" in message
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_load_state_dict_non_strict_allows_missing_and_extra() -> None:
    model = mlp()
    state = {"0.bias": np.ones(3, dtype=np.float32), "other": np.zeros(2)}
    model.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(model[0].bias.data, 1)  # type: ignore[union-attr, attr-defined]
    with pytest.raises(ValueError, match="shape"):
        model.load_state_dict({"0.bias": np.ones(4, dtype=np.float32)}, strict=False)


def test_astype_converts_everything_and_keeps_working() -> None:
    model = mlp().astype(np.float64)
    assert all(p.data.dtype == p.grad.dtype == np.float64 for p in model.parameters())
    assert model(np.ones((1, 2))).dtype == np.float64
    with pytest.raises(TypeError, match="floating"):
        model.astype(np.int64)


def test_repr_is_readable_and_nested() -> None:
    inner = nnkit.Sequential(nnkit.Dense(3, 1), nnkit.Sigmoid())
    model = nnkit.Sequential(nnkit.Dense(2, 3, bias=False), nnkit.LeakyReLU(0.2), inner)
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Dense(in_features=2, out_features=3, bias=False)\n"
        "  (1): LeakyReLU(negative_slope=0.2)\n"
        "  (2): Sequential(\n"
        "    (0): Dense(in_features=3, out_features=1, bias=True)\n"
        "    (1): Sigmoid()\n"
        "  )\n"
        ")"
    )
    assert repr(nnkit.Dense(2, 3, dtype=np.float64)) == (
        "Dense(in_features=2, out_features=3, bias=True, dtype='float64')"
    )


def test_sequential_container_protocol() -> None:
    model = mlp()
    assert len(model) == 3
    assert isinstance(model[1], nnkit.Sigmoid)
    assert isinstance(model[-1], nnkit.Dense)
    head = model[:2]
    assert isinstance(head, nnkit.Sequential) and len(head) == 2 and head[0] is model[0]
    assert [type(m).__name__ for m in model] == ["Dense", "Sigmoid", "Dense"]
    assert model.append(nnkit.Sigmoid()) is model and len(model) == 4
    assert [n for n, _ in model.named_parameters()][-1] == "2.bias"


def test_empty_sequential_is_identity() -> None:
    x = np.ones((2, 2))
    np.testing.assert_array_equal(nnkit.Sequential()(x), x)


def test_base_module_methods_must_be_implemented() -> None:
    with pytest.raises(NotImplementedError, match="forward"):
        nnkit.Module()(np.zeros(1))
    with pytest.raises(NotImplementedError, match="backward"):
        nnkit.Module().backward(np.zeros(1))


def test_custom_layer_from_the_docs_passes_the_harness() -> None:
    class Scale(nnkit.Module):
        """y = x * gamma, one gamma per feature."""

        def __init__(self, features: int) -> None:
            super().__init__()
            self.gamma = nnkit.Parameter(np.ones(features))
            self._x: Any = None

        def forward(self, x: Any) -> Any:
            self._x = nnkit.module.as_float_array(x, self.gamma.data.dtype)
            return self._x * self.gamma.data

        def backward(self, grad_out: Any) -> Any:
            if self._x is None:
                raise self._no_cache_error()
            dy = self._grad_like(grad_out, self._x.shape, self._x.dtype)
            self.gamma.grad += (dy * self._x).sum(axis=0)
            return dy * self.gamma.data

    check_module(Scale(3), np.random.default_rng(0).normal(size=(4, 3)))


def test_dense_weight_init_options() -> None:
    rng = np.random.default_rng(0)
    default = nnkit.Dense(100, 50, rng=rng)
    bound = 1 / np.sqrt(100)
    assert np.abs(default.weight.data).max() <= bound and default.bias is not None
    assert np.abs(default.bias.data).max() <= bound and default.bias.data.any()
    xavier = nnkit.Dense(100, 50, rng=rng, weight_init="xavier_uniform")
    assert np.abs(xavier.weight.data).max() <= np.sqrt(6 / 150) and xavier.bias is not None
    assert not xavier.bias.data.any()
    custom = nnkit.Dense(2, 3, weight_init=lambda shape, rng: np.full(shape, 0.5))
    np.testing.assert_array_equal(custom.weight.data, 0.5)
    with pytest.raises(ValueError, match=re.escape("returned shape (3, 2), expected (2, 3)")):
        nnkit.Dense(2, 3, weight_init=lambda shape, rng: np.zeros((3, 2)))


def test_same_seed_same_model() -> None:
    a, b = mlp(5), mlp(5)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
