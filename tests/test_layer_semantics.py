"""Behaviour of the normalisation, dropout and embedding layers beyond the conformance harness
and the torch parity tables: masks and generators, saving them, padding, index dtypes, shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import nnkit
from nnkit.optim import SGD

# -- Dropout ---------------------------------------------------------------------------------


def test_dropout_same_seed_same_masks_and_a_fresh_mask_each_forward() -> None:
    x = np.ones((8, 50), dtype=np.float32)
    a, b = (
        nnkit.Dropout(0.5, rng=np.random.default_rng(3)),
        nnkit.Dropout(0.5, rng=np.random.default_rng(3)),
    )
    first = a(x)
    assert np.array_equal(first, b(x))
    assert not np.array_equal(first, a(x))


def test_dropout_keeps_the_multiplier_in_the_input_dtype() -> None:
    layer = nnkit.Dropout(0.25, rng=np.random.default_rng(0))
    for dtype in (np.float32, np.float64):
        y = layer(np.ones((4, 6), dtype=dtype))
        assert y.dtype == dtype
        assert layer._multiplier is not None and layer._multiplier.dtype == dtype
        assert set(np.unique(layer._multiplier)) <= {0.0, dtype(1 / 0.75)}


@pytest.mark.parametrize("make", [lambda: nnkit.Dropout(0.3), lambda: nnkit.Dropout2d(0.3)])
def test_dropout_eval_is_the_identity_and_draws_nothing(make: Any) -> None:
    layer = make().eval()
    x = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    before = layer.generator_state()
    y = layer(x)
    assert np.array_equal(y, x) and y.dtype == np.float32
    assert layer.generator_state() == before  # eval consumes no random numbers
    dy = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    assert np.array_equal(layer.backward(dy), dy)


def test_dropout_p0_is_the_identity_and_p1_gives_zeros() -> None:
    x = np.random.default_rng(0).normal(size=(6, 7))
    zero = nnkit.Dropout(0.0, rng=np.random.default_rng(0))
    before = zero.generator_state()
    assert np.array_equal(zero(x), x) and zero.generator_state() == before
    one = nnkit.Dropout(1.0, rng=np.random.default_rng(0))
    y = one(x)
    assert np.all(y == 0) and np.all(np.isfinite(y))
    assert np.all(one.backward(np.ones_like(x)) == 0)


def test_dropout_generator_is_named_in_the_model_state() -> None:
    model = nnkit.Sequential(nnkit.Dense(3, 3), nnkit.Dropout(0.5), nnkit.Dropout2d(0.1))
    assert [name for name, _ in model.named_generators()] == ["1.rng", "2.rng"]
    assert "1.rng" not in model.state_dict()  # generators are state, but not in state_dict


def test_saved_dropout_draws_the_same_masks_after_loading(tmp_path: Path) -> None:
    model = nnkit.Sequential(
        nnkit.Dense(4, 16, rng=np.random.default_rng(0)),
        nnkit.Dropout(0.5, rng=np.random.default_rng(1)),
        nnkit.LayerNorm(16),
        nnkit.Dropout(0.2, rng=np.random.default_rng(2)),
    )
    x = np.random.default_rng(3).normal(size=(5, 4))
    model(x)  # advance the generators past their seeds
    nnkit.save(model, tmp_path / "m.npz")
    loaded = nnkit.load(tmp_path / "m.npz")
    assert loaded.generator_state() == model.generator_state()
    for _ in range(3):
        assert model(x).tobytes() == loaded(x).tobytes()


def _model(seed: int) -> nnkit.Module:
    rng = np.random.default_rng(seed)
    return nnkit.Sequential(
        nnkit.Dense(3, 16, rng=rng),
        nnkit.ReLU(),
        nnkit.Dropout(0.3, rng=np.random.default_rng(seed + 1)),
        nnkit.BatchNorm1d(16),
        nnkit.LayerNorm(16),
        nnkit.Dense(16, 1, rng=rng),
    )


def _train(model: nnkit.Module, optimizer: SGD, steps: range) -> list[float]:
    data = np.random.default_rng(100)
    X = data.normal(size=(6 * 8, 3)).astype(np.float32)
    Y = np.sin(X[:, :1])
    loss_fn = nnkit.MSELoss()
    losses = []
    for i in steps:
        optimizer.zero_grad()
        losses.append(loss_fn(model(X[i * 8 : (i + 1) * 8]), Y[i * 8 : (i + 1) * 8]))
        model.backward(loss_fn.backward())
        optimizer.step()
    return losses


def test_checkpoint_resume_with_dropout_and_batchnorm_is_bitwise(tmp_path: Path) -> None:
    reference = _model(0)
    expected = _train(reference, SGD(reference.parameters(), lr=0.05, momentum=0.9), range(6))

    model = _model(0)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = _train(model, optimizer, range(3))
    nnkit.save_checkpoint(tmp_path / "c.npz", model=model, optimizer=optimizer)

    resumed = _model(7)  # other seeds: only the checkpoint makes the second half agree
    optimizer = SGD(resumed.parameters(), lr=0.05, momentum=0.9)
    nnkit.load_checkpoint(tmp_path / "c.npz", model=resumed, optimizer=optimizer)
    assert first + _train(resumed, optimizer, range(3, 6)) == expected
    assert list(resumed.state_dict()) == list(reference.state_dict())
    assert "3.running_var" in reference.state_dict()
    for a, b in zip(resumed.state_dict().values(), reference.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    x = np.random.default_rng(9).normal(size=(4, 3)).astype(np.float32)
    assert resumed.eval()(x).tobytes() == reference.eval()(x).tobytes()

    # the dropout generator's state is what makes it exact: without it the run diverges
    other = _model(7)
    optimizer = SGD(other.parameters(), lr=0.05, momentum=0.9)
    nnkit.load_checkpoint(tmp_path / "c.npz", model=other, optimizer=optimizer)
    other[2].rng = np.random.default_rng(0)
    assert _train(other, optimizer, range(3, 6)) != expected[3:]


# -- Embedding -------------------------------------------------------------------------------

FAST = settings(max_examples=40, deadline=None)


@FAST
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    rows=st.integers(1, 6),
    dim=st.integers(1, 4),
    pad=st.one_of(st.none(), st.integers(0, 5)),
    seed=st.integers(0, 2**16),
)
def test_embedding_gradient_is_the_sum_over_positions(
    shape: list[int], rows: int, dim: int, pad: int | None, seed: int
) -> None:
    """Against the plain definition: row v gets the sum of dy over the positions holding v."""
    pad = None if pad is None else pad % rows
    rng = np.random.default_rng(seed)
    layer = nnkit.Embedding(rows, dim, padding_idx=pad, rng=rng, dtype=np.float64)
    ids = rng.integers(0, rows, size=shape)
    y = layer(ids)
    assert y.shape == (*shape, dim)
    assert np.array_equal(y, layer.weight.data[ids])
    dy = rng.normal(size=y.shape)
    layer.weight.grad[...] = 1.0  # accumulates onto what is there
    layer.backward(dy)
    expected = np.ones((rows, dim))
    for v in range(rows):
        if v != pad:
            expected[v] += dy[ids == v].sum(axis=0)
    np.testing.assert_allclose(layer.weight.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint64, np.int64])
def test_embedding_takes_any_integer_dtype(dtype: Any) -> None:
    layer = nnkit.Embedding(5, 2, rng=np.random.default_rng(0))
    ids = np.array([[4, 0], [1, 1]], dtype=dtype)
    y = layer(ids)
    assert y.dtype == np.float32 and np.array_equal(y, layer.weight.data[ids.astype(np.int64)])
    layer.backward(np.ones_like(y))
    assert np.array_equal(layer.weight.grad[:, 0], [1, 2, 0, 0, 1])


def test_embedding_scatters_into_a_non_contiguous_gradient_too() -> None:
    """A gradient array assigned by the user (Fortran order here) cannot be viewed flat: the
    row-wise scatter runs instead, with the same result."""
    ids = np.array([[0, 2, 2], [4, 0, 2]])
    dy = np.random.default_rng(1).normal(size=(2, 3, 3))
    flat, rows = (nnkit.Embedding(5, 3, padding_idx=4, dtype=np.float64) for _ in range(2))
    rows.weight.grad = np.asfortranarray(np.zeros((5, 3)))
    for layer in (flat, rows):
        layer(ids)
        layer.backward(dy)
    assert not rows.weight.grad.flags.c_contiguous
    np.testing.assert_allclose(rows.weight.grad, flat.weight.grad, rtol=1e-15)
    assert np.any(flat.weight.grad[2] != 0) and not np.any(flat.weight.grad[4])


def test_embedding_scalar_index_and_lists() -> None:
    layer = nnkit.Embedding(5, 3, rng=np.random.default_rng(0))
    assert np.array_equal(layer(np.int64(2)), layer.weight.data[2])
    assert layer([[1, 2, 3]]).shape == (1, 3, 3)


def test_embedding_padding_row_keeps_its_value_through_training() -> None:
    layer = nnkit.Embedding(4, 2, padding_idx=1, rng=np.random.default_rng(0))
    optimizer = SGD(layer.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        layer(np.array([[1, 1, 2], [0, 1, 3]]))
        layer.backward(np.ones((2, 3, 2)))
        optimizer.step()
    assert np.all(layer.weight.data[1] == 0)
    assert np.all(layer.weight.data[[0, 2, 3]] != 0)


def test_embedding_in_a_model_trains_through_fit() -> None:
    """Integer ids through a Sequential: fit's accumulate_grad reaches the table."""
    rng = np.random.default_rng(0)
    model = nnkit.Sequential(
        nnkit.Embedding(10, 8, rng=rng), nnkit.LayerNorm(8), nnkit.Dense(8, 10, rng=rng)
    )
    ids = rng.integers(0, 10, size=200)
    before = model[0].weight.data.copy()
    history = nnkit.fit(
        model,
        nnkit.CrossEntropyLoss(),
        SGD(model.parameters(), lr=0.5),
        ids,
        ids,
        epochs=15,
        batch_size=20,
        rng=rng,
        verbose=0,
    )
    assert not np.array_equal(before, model[0].weight.data)
    assert history.history["accuracy"][-1] > 0.9  # learns the identity map


# -- LayerNorm -------------------------------------------------------------------------------


@FAST
@given(
    lead=st.lists(st.integers(0, 3), min_size=0, max_size=2),
    norm=st.lists(st.integers(1, 4), min_size=1, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_layernorm_normalises_each_group_and_its_gradients_check(
    lead: list[int], norm: list[int], seed: int
) -> None:
    assume(int(np.prod(norm)) > 1)  # one value per group has no variance to divide by
    rng = np.random.default_rng(seed)
    layer = nnkit.LayerNorm(tuple(norm), elementwise_affine=False, eps=0.0)
    x = rng.normal(size=(*lead, *norm)) * 3 + 1
    y = layer(x)
    assert y.shape == x.shape and y.dtype == np.float64
    groups = y.reshape(-1, int(np.prod(norm)))
    np.testing.assert_allclose(groups.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(groups.var(axis=1), 1, rtol=1e-9)
    if x.size:
        affine = nnkit.LayerNorm(tuple(norm), dtype=np.float64)
        nnkit.gradcheck(affine, x, max_elements=None)


def test_layernorm_float32_stays_float32() -> None:
    layer = nnkit.LayerNorm(6)
    y = layer(np.random.default_rng(0).normal(size=(4, 6)))  # float64 data, float32 layer
    assert y.dtype == np.float32
    assert layer.backward(np.ones((4, 6))).dtype == np.float32
    assert layer.weight is not None and layer.weight.grad.dtype == np.float32


# -- Dense on N-D input ----------------------------------------------------------------------


def test_dense_on_a_sequence_equals_dense_on_its_rows() -> None:
    """(N, T, F) is computed as the (N*T, F) matrix: same output, dx and gradients, exactly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 3)).astype(np.float32)
    dy = rng.normal(size=(4, 5, 2)).astype(np.float32)
    seq, rows = (
        nnkit.Dense(3, 2, rng=np.random.default_rng(1)),
        nnkit.Dense(3, 2, rng=np.random.default_rng(1)),
    )
    y = seq(x)
    assert y.shape == (4, 5, 2) and y.dtype == np.float32
    assert np.array_equal(y.reshape(20, 2), rows(x.reshape(20, 3)))
    dx = seq.backward(dy)
    assert dx.shape == x.shape
    assert np.array_equal(dx.reshape(20, 3), rows.backward(dy.reshape(20, 2)))
    for a, b in zip(seq.parameters(), rows.parameters(), strict=True):
        assert np.array_equal(a.grad, b.grad)
    seq.zero_grad()
    seq(x[:, ::2])  # a non-contiguous input
    seq.accumulate_grad(dy[:, ::2])
    assert np.allclose(seq.weight.grad, x[:, ::2].reshape(-1, 3).T @ dy[:, ::2].reshape(-1, 2))


# -- BatchNorm -------------------------------------------------------------------------------


def test_batchnorm_state_is_pytorchs() -> None:
    layer = nnkit.BatchNorm2d(3)
    assert list(layer.state_dict()) == [
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    layer.astype(np.float64)
    state = layer.state_dict()
    assert state["running_var"].dtype == np.float64
    assert (
        state["num_batches_tracked"].dtype == np.int64 and state["num_batches_tracked"].shape == ()
    )
    assert list(nnkit.BatchNorm1d(3, affine=False, track_running_stats=False).state_dict()) == []


def test_batchnorm_refusing_a_batch_of_one_changes_nothing() -> None:
    layer = nnkit.BatchNorm1d(3)
    layer(np.random.default_rng(0).normal(size=(4, 3)))
    before = layer.state_dict()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(np.ones((1, 3)))
    after = layer.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    layer.eval()
    assert layer(np.ones((1, 3))).shape == (1, 3)  # eval uses the running statistics


def test_batchnorm_running_statistics_converge_to_the_data_statistics() -> None:
    """With momentum=None the running mean is the mean of the batch means, exactly, and the
    running variance the mean of the unbiased batch variances."""
    rng = np.random.default_rng(0)
    layer = nnkit.BatchNorm1d(2, momentum=None, dtype=np.float64)
    batches = [rng.normal([1.0, -2.0], [0.5, 3.0], size=(16, 2)) for _ in range(5)]
    for batch in batches:
        layer(batch)
    assert int(layer.state_dict()["num_batches_tracked"]) == 5
    np.testing.assert_allclose(
        layer.state_dict()["running_mean"], np.mean([b.mean(0) for b in batches], 0), rtol=1e-12
    )
    np.testing.assert_allclose(
        layer.state_dict()["running_var"],
        np.mean([b.var(0, ddof=1) for b in batches], 0),
        rtol=1e-12,
    )


def test_batchnorm_train_and_eval_outputs() -> None:
    """Training output has zero mean and unit biased variance per channel; eval with the
    running statistics equal to the batch's biased ones reproduces it."""
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, size=(6, 2, 4, 5))
    layer = nnkit.BatchNorm2d(2, momentum=1.0, eps=0.0, dtype=np.float64)
    y = layer(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-12)
    m = 6 * 4 * 5
    layer.running_var.data *= (m - 1) / m  # type: ignore[union-attr]  # unbiased -> biased
    np.testing.assert_allclose(layer.eval()(x), y, rtol=1e-10, atol=1e-12)


@FAST
@given(
    n=st.integers(2, 4),
    c=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 3), min_size=0, max_size=1),
    seed=st.integers(0, 2**16),
)
def test_batchnorm1d_gradients_in_both_modes(n: int, c: int, spatial: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, *spatial)) * 2
    for training in (True, False):
        layer = nnkit.BatchNorm1d(c, momentum=None, dtype=np.float64).train(training)
        layer(rng.normal(size=x.shape))  # only moves the statistics in training
        nnkit.gradcheck(layer.train(training), x, max_elements=None)


@FAST
@given(
    n=st.integers(1, 3),
    groups=st.integers(1, 3),
    per_group=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_groupnorm_gradients_and_group_statistics(
    n: int, groups: int, per_group: int, spatial: list[int], seed: int
) -> None:
    assume(per_group * int(np.prod(spatial)) > 1)  # a group of one value has no variance
    rng = np.random.default_rng(seed)
    c = groups * per_group
    x = rng.normal(size=(n, c, *spatial)) * 2 + 1
    layer = nnkit.GroupNorm(groups, c, eps=0.0, affine=False)
    y = layer(x).reshape(n, groups, -1)
    np.testing.assert_allclose(y.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=2), 1, rtol=1e-9)
    nnkit.gradcheck(nnkit.GroupNorm(groups, c, dtype=np.float64), x, max_elements=None)


def test_saved_batchnorm_restores_its_running_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = nnkit.Sequential(
        nnkit.Dense(3, 4, rng=rng), nnkit.BatchNorm1d(4), nnkit.GroupNorm(2, 4)
    )
    for _ in range(3):
        model(rng.normal(size=(8, 3)))
    model.eval()
    nnkit.save(model, tmp_path / "bn.npz")
    loaded = nnkit.load(tmp_path / "bn.npz")
    assert not loaded.training
    assert int(loaded.state_dict()["1.num_batches_tracked"]) == 3
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].tobytes() == value.tobytes()
    x = rng.normal(size=(2, 3))
    assert loaded(x).tobytes() == model(x).tobytes()


class _ClassesFirst(nnkit.Module):
    """(N, T, C) -> (N, C, T), the layout CrossEntropyLoss and accuracy read."""

    def forward(self, x: Any) -> Any:
        return np.swapaxes(np.asarray(x), 1, 2)

    def backward(self, grad_out: Any) -> Any:
        return np.swapaxes(np.asarray(grad_out), 1, 2)


def test_a_sequence_tagger_trains_with_nd_loss_and_accuracy() -> None:
    """Embedding -> LayerNorm -> Dense per step -> (N, C, T) logits, with (N, T) targets and
    padding ignored: fit checks the targets, the loss and the accuracy read the N-D layout."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 8, size=(64, 5))
    ids[:, 3:][::2] = 0  # padding
    tags = ids % 3
    target = np.where(ids == 0, -100, tags)
    model = nnkit.Sequential(
        nnkit.Embedding(8, 8, padding_idx=0, rng=rng),
        nnkit.LayerNorm(8),
        nnkit.Dense(8, 3, rng=rng),
        _ClassesFirst(),
    )
    loss_fn = nnkit.CrossEntropyLoss()
    history = nnkit.fit(
        model, loss_fn, SGD(model.parameters(), lr=0.5), ids, target, epochs=20,
        batch_size=16, rng=rng, verbose=0, metrics=(),
    )  # fmt: skip
    losses = history.history["loss"]
    assert losses[-1] < 0.1 * losses[0]
    logits = model.eval()(ids)
    assert nnkit.metrics.Accuracy()(logits[1::2], tags[1::2]) > 0.95  # rows without padding
    assert not model[0].weight.data[0].any()  # the padding row never moved


# -- kept scratch arrays ----------------------------------------------------------------------

KEEPS_SCRATCH = {
    "BatchNorm2d": (lambda: nnkit.BatchNorm2d(3), (4, 3, 2, 2)),
    "BatchNorm1d-eval": (lambda: nnkit.BatchNorm1d(3).eval(), (4, 3)),
    "LayerNorm": (lambda: nnkit.LayerNorm(5), (4, 2, 5)),
    "LayerNorm-no-affine": (lambda: nnkit.LayerNorm(5, elementwise_affine=False), (4, 5)),
    "GroupNorm": (lambda: nnkit.GroupNorm(2, 4), (3, 4, 5)),
    "Dropout": (lambda: nnkit.Dropout(0.5, rng=np.random.default_rng(0)), (6, 7)),
    "Dropout2d": (lambda: nnkit.Dropout2d(0.5, rng=np.random.default_rng(0)), (6, 7, 2)),
}


@pytest.mark.parametrize("make, shape", KEEPS_SCRATCH.values(), ids=KEEPS_SCRATCH.keys())
def test_returned_arrays_survive_the_next_step(make: Any, shape: tuple[int, ...]) -> None:
    """Layers rewrite their cache and scratch arrays every step, never an array they returned:
    step 1's output and dx are unchanged by step 2, and step 2's backward is step 2's."""
    rng = np.random.default_rng(0)
    layer, fresh = make(), make()
    x1, x2 = rng.normal(size=shape), rng.normal(size=shape)
    dy1, dy2 = rng.normal(size=shape), rng.normal(size=shape)
    y1 = layer(x1)
    dx1 = layer.backward(dy1)
    kept = y1.copy(), dx1.copy()
    y2 = layer(x2)
    dx2 = layer.backward(dy2)
    assert np.array_equal(y1, kept[0]) and np.array_equal(dx1, kept[1])
    fresh(x1)  # the same state (the same draws, the same running statistics) as layer
    fresh.backward(dy1)
    assert np.array_equal(fresh(x2), y2) and np.array_equal(fresh.backward(dy2), dx2)
