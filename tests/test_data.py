"""Tests for nnkit.data: DataLoader and train_test_split."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnkit.data import DataLoader, train_test_split

FAST = settings(max_examples=60, deadline=None)


def epoch(loader: DataLoader) -> list[tuple[np.ndarray, ...]]:
    return list(loader)


# ---------------------------------------------------------------- DataLoader


@FAST
@given(
    n=st.integers(0, 120),
    batch_size=st.integers(1, 40),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_sample_once_per_epoch(
    n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int
) -> None:
    X = np.arange(n * 3).reshape(n, 3)
    y = np.arange(n) * 10
    loader = DataLoader(
        X, y, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    for _ in range(2):
        batches = epoch(loader)
        assert len(batches) == len(loader)
        sizes = [len(xb) for xb, _ in batches]
        full, rest = divmod(n, batch_size)
        assert sizes == [batch_size] * full + ([rest] if rest and not drop_last else [])
        seen = np.concatenate([yb for _, yb in batches]) // 10 if batches else np.array([], int)
        assert len(np.unique(seen)) == len(seen)  # at most once
        if not drop_last:
            assert np.array_equal(np.sort(seen), np.arange(n))  # exactly once
        if not shuffle:
            assert np.array_equal(seen, np.arange(len(seen)))  # original order
        for xb, yb in batches:  # arrays stay aligned
            assert np.array_equal(xb, X[yb // 10])


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "expected"),
    [(10, 3, False, 4), (10, 3, True, 3), (9, 3, False, 3), (9, 3, True, 3), (2, 5, False, 1),
     (2, 5, True, 0), (0, 4, False, 0)],
)  # fmt: skip
def test_len(n: int, batch_size: int, drop_last: bool, expected: int) -> None:
    assert len(DataLoader(np.zeros(n), batch_size=batch_size, drop_last=drop_last)) == expected


def test_single_array_yields_one_tuples() -> None:
    batches = list(DataLoader(np.arange(5), batch_size=2, shuffle=False))
    assert all(isinstance(b, tuple) and len(b) == 1 for b in batches)
    (first,) = batches[0]
    assert first.tolist() == [0, 1]


def test_same_seed_reproduces_all_epochs() -> None:
    def run(seed: int) -> list[list[int]]:
        loader = DataLoader(np.arange(50), batch_size=8, rng=np.random.default_rng(seed))
        return [np.concatenate([b for (b,) in loader]).tolist() for _ in range(3)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_fresh_order_each_epoch() -> None:
    loader = DataLoader(np.arange(100), batch_size=100, rng=np.random.default_rng(0))
    (first,), (second,) = next(iter(loader)), next(iter(loader))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, np.arange(100))


def test_rng_none_shuffles() -> None:
    (batch,) = next(iter(DataLoader(np.arange(1000), batch_size=1000)))
    assert not np.array_equal(batch, np.arange(1000))
    assert np.array_equal(np.sort(batch), np.arange(1000))


def test_accepts_lists_and_keeps_trailing_dims() -> None:
    images = np.zeros((6, 1, 4, 4), dtype=np.float32)
    xb, yb = next(iter(DataLoader(images, [0, 1, 2, 3, 4, 5], batch_size=4)))
    assert xb.shape == (4, 1, 4, 4) and xb.dtype == np.float32
    assert yb.shape == (4,)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((), {}, ValueError, "at least one array"),
        ((np.zeros(3), np.zeros(4)), {}, ValueError, r"same length.*\[3, 4\]"),
        ((np.float64(1.0),), {}, ValueError, "array 0 is 0-d"),
        ((np.zeros(3),), {"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ((np.zeros(3),), {"batch_size": -2}, ValueError, "got -2"),
        ((np.zeros(3),), {"batch_size": 2.0}, TypeError, "batch_size must be an int, got 2.0"),
        ((np.zeros(3),), {"batch_size": True}, TypeError, "batch_size must be an int"),
        ((np.zeros(3),), {"rng": 0}, TypeError, "rng must be a np.random.Generator"),
    ],
)
def test_loader_rejects_bad_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        DataLoader(*args, **kwargs)


def test_numpy_integer_batch_size() -> None:
    batch_size: Any = np.int64(4)
    assert len(DataLoader(np.zeros(10), batch_size=batch_size)) == 3


# ---------------------------------------------------------------- train_test_split


@pytest.mark.parametrize(
    ("n", "test_size", "n_test"),
    [(10, 0.2, 2), (10, 0.25, 3), (7, 0.2, 2), (10, 3, 3), (100, 0.5, 50), (2, 0.5, 1),
     (10, np.int64(4), 4), (10, np.float32(0.5), 5)],
)  # fmt: skip
def test_split_sizes_and_partition(n: int, test_size: float, n_test: int) -> None:
    X, y = np.arange(n * 2).reshape(n, 2), np.arange(n)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, rng=np.random.default_rng(0)
    )
    assert (len(X_te), len(y_te), len(X_tr), len(y_tr)) == (n_test, n_test, n - n_test, n - n_test)
    assert np.array_equal(np.sort(np.concatenate([y_tr, y_te])), np.arange(n))
    assert np.array_equal(X_tr, X[y_tr]) and np.array_equal(X_te, X[y_te])


def test_split_returns_pairs_in_input_order() -> None:
    a, b, c = np.arange(10), np.arange(10) + 100, np.arange(10) + 200
    parts = train_test_split(a, b, c, rng=np.random.default_rng(1))
    assert len(parts) == 6
    a_tr, a_te, b_tr, b_te, c_tr, c_te = parts
    assert np.array_equal(b_tr, a_tr + 100) and np.array_equal(b_te, a_te + 100)
    assert np.array_equal(c_tr, a_tr + 200) and np.array_equal(c_te, a_te + 200)


def test_split_is_shuffled_and_reproducible() -> None:
    def split(seed: int) -> list[np.ndarray]:
        return train_test_split(np.arange(100), rng=np.random.default_rng(seed))

    assert all(np.array_equal(p, q) for p, q in zip(split(3), split(3), strict=True))
    train, _ = split(3)
    assert not np.array_equal(train, np.sort(train))


@FAST
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratify_keeps_class_proportions(counts: list[int], fraction: float, seed: int) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    n = len(y)
    n_test = math.ceil(fraction * n)
    if not 1 <= n_test <= n - 1:
        return
    X = np.arange(n)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=fraction, stratify=y, rng=np.random.default_rng(seed)
    )
    assert len(X_te) == n_test and len(X_tr) == n - n_test
    assert np.array_equal(np.sort(np.concatenate([X_tr, X_te])), X)
    assert np.array_equal(y[X_te], y_te) and np.array_equal(y[X_tr], y_tr)
    share = n_test * np.array(counts) / n
    got = np.bincount(y_te, minlength=len(counts))
    assert np.all((got == np.floor(share)) | (got == np.ceil(share)))


def test_stratify_exact_and_rounding() -> None:
    y = np.repeat([0, 1, 2], [50, 30, 20])
    *_, y_tr, y_te = train_test_split(y, test_size=0.25, stratify=y, rng=np.random.default_rng(0))
    # shares 12.5, 7.5, 5: the one left over goes to the first of the tied remainders
    assert np.bincount(y_te).tolist() == [13, 7, 5]
    assert np.bincount(y_tr).tolist() == [37, 23, 15]


def test_stratify_accepts_one_hot_and_string_labels() -> None:
    labels = np.repeat(np.array(["cat", "dog"]), [60, 40])
    one_hot = np.eye(2)[(labels == "dog").astype(int)]
    for stratify in (labels, one_hot):
        _, test = train_test_split(labels, test_size=10, stratify=stratify)
        assert sorted(test.tolist()) == ["cat"] * 6 + ["dog"] * 4


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((), {}, ValueError, "train_test_split needs at least one array"),
        ((np.zeros(3), np.zeros(2)), {}, ValueError, r"same length.*\[3, 2\]"),
        ((np.zeros(()),), {}, ValueError, "0-d"),
        ((np.zeros(10),), {"test_size": 0.0}, ValueError, r"in \(0, 1\), got 0.0"),
        ((np.zeros(10),), {"test_size": 1.0}, ValueError, r"in \(0, 1\), got 1.0"),
        ((np.zeros(10),), {"test_size": float("nan")}, ValueError, "got nan"),
        ((np.zeros(10),), {"test_size": 0}, ValueError, "gives 0 test and 10 training"),
        ((np.zeros(10),), {"test_size": 10}, ValueError, "gives 10 test and 0 training"),
        ((np.zeros(10),), {"test_size": 0.95}, ValueError, "gives 10 test and 0 training"),
        ((np.zeros(1),), {}, ValueError, "both parts need at least one sample"),
        ((np.zeros(10),), {"test_size": "20%"}, TypeError, "test_size must be a float"),
        ((np.zeros(10),), {"test_size": True}, TypeError, "test_size must be a float"),
        ((np.zeros(10),), {"stratify": np.zeros(9)}, ValueError, r"one label per sample \(10\)"),
        ((np.zeros(10),), {"stratify": 0}, ValueError, "one label per sample"),
        ((np.zeros(10),), {"rng": 42}, TypeError, "np.random.default_rng"),
    ],
)
def test_split_rejects_bad_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        train_test_split(*args, **kwargs)
