"""Behaviour of the normalisation, dropout and embedding layers beyond the conformance harness
and the torch parity tables: masks and generators, saving them, padding, index dtypes, shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
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


def test_checkpoint_resume_with_dropout_is_bitwise(tmp_path: Path) -> None:
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
    for a, b in zip(resumed.state_dict().values(), reference.state_dict().values(), strict=True):
        assert a.tobytes() == b.tobytes()

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
    rng = np.random.default_rng(seed)
    layer = nnkit.LayerNorm(tuple(norm), elementwise_affine=False, eps=1e-12)
    x = rng.normal(size=(*lead, *norm)) * 3 + 1
    y = layer(x)
    assert y.shape == x.shape and y.dtype == np.float64
    groups = y.reshape(-1, int(np.prod(norm)))
    if groups.size and groups.shape[1] > 1:
        np.testing.assert_allclose(groups.mean(axis=1), 0, atol=1e-12)
        np.testing.assert_allclose(groups.var(axis=1), 1, rtol=1e-9)
    if x.size and int(np.prod(norm)) > 1:
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
