"""One state path: parameters, buffers and generators through state_dict, astype, saving,
checkpoints, EarlyStopping and the harness; and the format-1 files that still load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stateful_layers import Center, Noise

import nnkit
from nnkit.callbacks import EarlyStopping
from nnkit.optim import SGD, Adam

DATA = Path(__file__).parent / "data"


def model_with_state(seed: int = 0) -> nnkit.Sequential:
    rng = np.random.default_rng(seed)
    return nnkit.Sequential(
        nnkit.Dense(3, 6, rng=rng), Center(6), nnkit.Tanh(),
        Noise(0.3, rng=np.random.default_rng(seed + 100)), nnkit.Dense(6, 2, rng=rng),
    )  # fmt: skip


def data(n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, 3))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def train(model: nnkit.Module, steps: int, X: Any, y: Any, opt: Any) -> None:
    loss = nnkit.CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss(model(X), y)
        model.accumulate_grad(loss.backward())
        opt.step()


def test_buffers_are_found_named_and_in_the_state_dict() -> None:
    model = model_with_state()
    names = [name for name, _ in model.named_buffers()]
    assert names == ["1.running_mean", "1.steps"]
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.running_mean", "1.steps", "4.weight", "4.bias",
    ]  # fmt: skip
    assert [name for name, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "4.weight", "4.bias",
    ]  # fmt: skip
    assert [name for name, _ in model.named_generators()] == ["3.rng"]


def test_non_persistent_buffers_are_not_saved() -> None:
    layer = Center(2)
    layer.cache = nnkit.Buffer(np.ones(2), persistent=False)
    assert "cache" in dict(layer.named_buffers()) and "cache" not in layer.state_dict()
    layer.load_state_dict(layer.state_dict())  # no key missing


def test_astype_converts_floating_buffers_and_keeps_integer_ones() -> None:
    model = model_with_state().astype(np.float64)
    buffers = dict(model.named_buffers())
    assert buffers["1.running_mean"].dtype == np.float64
    assert buffers["1.steps"].dtype == np.int64
    assert model(np.ones((2, 3))).dtype == np.float64


def test_load_state_dict_checks_buffers_atomically() -> None:
    model = model_with_state()
    state = model.state_dict()
    state["1.steps"] = np.zeros((), dtype=np.float32)  # wrong dtype for an integer buffer
    state["0.weight"] = state["0.weight"] + 1
    with pytest.raises(ValueError, match=r"1\.steps: dtype float32 in the state, int64"):
        model.load_state_dict(state)
    assert not np.array_equal(model.state_dict()["0.weight"], state["0.weight"])


def test_generator_state_round_trips_and_is_checked() -> None:
    model = model_with_state()
    saved = model.generator_state()
    first = model(np.ones((4, 3)))
    model.load_generator_state(saved)
    np.testing.assert_array_equal(model(np.ones((4, 3))), first)  # the same mask again
    with pytest.raises(ValueError, match="unexpected generators: nope"):
        model.load_generator_state({**saved, "nope": saved["3.rng"]})
    with pytest.raises(ValueError, match=r"3\.rng: the state does not fit a MT19937"):
        model.load_generator_state({"3.rng": {"bit_generator": "MT19937", "state": {}}})


def test_save_and_load_keep_buffers_generators_and_eval_output(tmp_path: Path) -> None:
    """The probe: a BatchNorm-like layer's statistics and a Dropout-like layer's generator
    come back, so the loaded model's eval output and next training draws are the same."""
    X, y = data()
    model = model_with_state()
    train(model, 5, X, y, SGD(model.parameters(), lr=0.1))
    nnkit.save(model, tmp_path / "m.npz")
    loaded = nnkit.load(tmp_path / "m.npz")
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(np.array_equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert loaded.generator_state() == model.generator_state()
    model.eval()
    loaded.eval()
    np.testing.assert_array_equal(loaded(X), model(X))
    model.train()
    loaded.train()
    np.testing.assert_array_equal(loaded(X), model(X))  # the same dropout mask next


def test_checkpoint_resume_is_bitwise_with_a_stochastic_layer(tmp_path: Path) -> None:
    X, y = data()

    def fresh() -> tuple[nnkit.Module, Adam]:
        model = model_with_state(seed=3)
        return model, Adam(model.parameters(), lr=1e-2)

    straight, opt = fresh()
    train(straight, 8, X, y, opt)

    first, opt1 = fresh()
    train(first, 4, X, y, opt1)
    nnkit.save_checkpoint(tmp_path / "c.npz", model=first, optimizer=opt1, epoch=4)
    resumed, opt2 = fresh()
    resumed.load_generator_state({"3.rng": np.random.default_rng(999).bit_generator.state})
    assert nnkit.load_checkpoint(tmp_path / "c.npz", model=resumed, optimizer=opt2)["epoch"] == 4
    train(resumed, 4, X, y, opt2)
    for key, value in straight.state_dict().items():
        assert value.tobytes() == resumed.state_dict()[key].tobytes(), key


class NoiseWithOtherName(Noise):
    """The same layer, with its generator under another attribute name."""

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        super().__init__(p, rng)
        self.gen = self.rng
        del self.rng

    def forward(self, x: Any) -> Any:
        self.rng = self.gen
        try:
            return super().forward(x)
        finally:
            del self.rng


def test_a_checkpoint_whose_generators_do_not_fit_changes_nothing(tmp_path: Path) -> None:
    model = model_with_state()
    nnkit.save_checkpoint(tmp_path / "c.npz", model=model)
    target = model_with_state(5)
    target.layers[3] = NoiseWithOtherName(0.3, np.random.default_rng(1))
    before, draws = target.state_dict(), target.generator_state()
    with pytest.raises(nnkit.StateMismatchError, match=r"generator.*3\.gen.*nothing was changed"):
        nnkit.load_checkpoint(tmp_path / "c.npz", model=target)
    assert all(np.array_equal(before[k], v) for k, v in target.state_dict().items())
    assert target.generator_state() == draws


def test_early_stopping_restores_buffers_too() -> None:
    X, y = data()
    model = model_with_state()
    stopper = EarlyStopping(monitor="loss", patience=100, restore_best_weights=True)
    values = iter([1.0, 0.5, 0.9, 0.8])

    class Scripted(nnkit.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
            logs["loss"] = next(values)

    snapshots: list[dict[str, np.ndarray]] = []

    class Snap(nnkit.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
            snapshots.append(self.model.state_dict())

    history = nnkit.fit(model, nnkit.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), X, y,
                        epochs=4, callbacks=[Snap(), stopper], verbose=0, metrics=())  # fmt: skip
    best = snapshots[int(np.argmin(history.history["loss"]))]
    assert "1.running_mean" in best
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, best[key])


def test_format_1_files_still_load() -> None:
    """Files written by the previous format (no buffers, no generators, Sequential layers as
    children only) load: the architecture, the eval flag of a nested module and the weights."""
    model = nnkit.load(DATA / "format1_model.npz")
    assert isinstance(model[1], nnkit.Sequential) and not model[1].training and model.training
    weights = nnkit.load_weights(DATA / "format1_weights.npz")
    assert all(np.array_equal(v, weights[k]) for k, v in model.state_dict().items())
    optimizer = Adam(model.parameters(), lr=0.01)
    info = nnkit.load_checkpoint(DATA / "format1_checkpoint.npz", model=model, optimizer=optimizer)
    assert info["epoch"] == 3
    X = np.load(DATA / "format1_X.npy")
    np.testing.assert_array_equal(model(X), np.load(DATA / "format1_expected.npy"))
    assert optimizer.state_dict()["state"][0]["step"] == 3


def test_summary_counts_buffers_as_non_trainable() -> None:
    text = nnkit.summary(model_with_state(), (3,))
    assert "Trainable params: 38" in text and "Non-trainable params: 6" in text


@pytest.mark.parametrize("kind", [np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_a_generator_of_another_kind_saves_loads_and_passes_the_harness(
    kind: type, tmp_path: Path
) -> None:
    layer = Noise(0.3, rng=np.random.Generator(kind(5)))
    nnkit.testing.check_module(layer, np.random.default_rng(0).normal(size=(4, 3)))
    model = nnkit.Sequential(nnkit.Dense(3, 3), layer)
    model(np.ones((2, 3)))
    nnkit.save(model, tmp_path / "m.npz")
    loaded = nnkit.load(tmp_path / "m.npz")
    assert type(loaded[1].rng.bit_generator) is kind
    np.testing.assert_array_equal(loaded(np.ones((2, 3))), model(np.ones((2, 3))))


def test_a_zero_d_buffer_assigned_a_scalar_stays_an_array(tmp_path: Path) -> None:
    layer = Center(2)
    layer.steps.data = layer.steps.data + 1  # a numpy scalar
    assert isinstance(layer.steps.data, np.ndarray) and layer.steps.dtype == np.int64
    layer.running_mean.data = np.ones(2)  # float64 does not promote the float32 buffer
    assert layer.running_mean.dtype == np.float32
    nnkit.save(nnkit.Sequential(layer), tmp_path / "m.npz")
    assert nnkit.load(tmp_path / "m.npz")[0].steps.data == 1


def test_aliased_and_shared_children_save_and_load(tmp_path: Path) -> None:
    class WithHeadAlias(nnkit.Sequential):
        def __init__(self, *layers: nnkit.Module) -> None:
            super().__init__(*layers)
            self.head = self.layers[-1]

    nnkit.register_module(WithHeadAlias)
    model = WithHeadAlias(nnkit.Dense(2, 3), nnkit.Tanh(), nnkit.Dense(3, 1))
    nnkit.save(model, tmp_path / "alias.npz")
    loaded = nnkit.load(tmp_path / "alias.npz")
    assert loaded.head is loaded.layers[-1]
    x = np.ones((2, 2))
    np.testing.assert_array_equal(loaded(x), model(x))


def test_a_format_1_file_loads_into_a_model_that_has_gained_buffers() -> None:
    """Format 1 never saved buffers: a layer that keeps its statistics in a Buffer now
    keeps its constructor's values for them, and every parameter must still match."""
    model = nnkit.load(DATA / "format1_model.npz")
    model[0].extra = nnkit.Buffer(np.full(3, 7.0))
    nnkit.load_weights(DATA / "format1_weights.npz", model)
    np.testing.assert_array_equal(model[0].extra.data, np.full(3, 7.0))
    with pytest.raises(nnkit.StateMismatchError, match=r"missing keys: 0\.extra"):
        other = nnkit.Sequential(*[nnkit.load(DATA / "format1_model.npz")[i] for i in range(4)])
        other[0].extra = nnkit.Buffer(np.zeros(3))
        nnkit.save_weights(nnkit.load(DATA / "format1_model.npz"), DATA.parent / "w2.npz")
        try:
            nnkit.load_weights(DATA.parent / "w2.npz", other)  # format 2: buffers are required
        finally:
            (DATA.parent / "w2.npz").unlink()
