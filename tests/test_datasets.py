"""Tests for nnkit.datasets: shapes, dtypes, equations, determinism and argument checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nnkit.datasets import blobs, circles, moons, spirals, xor

# (generator, kwargs, N, class counts, n_features)
RANDOM = [
    (spirals, {}, 300, [100] * 3, 2),
    (spirals, {"n_per_class": 50, "n_classes": 5, "noise": 0.0}, 250, [50] * 5, 2),
    (moons, {}, 100, [50, 50], 2),
    (moons, {"n_samples": 7, "noise": 0.0}, 7, [3, 4], 2),
    (circles, {}, 100, [50, 50], 2),
    (circles, {"n_samples": 9, "factor": 0.3}, 9, [4, 5], 2),
    (blobs, {}, 100, [34, 33, 33], 2),
    (blobs, {"n_samples": 10, "centers": 4, "n_features": 5}, 10, [3, 3, 2, 2], 5),
]
IDS = [f"{f.__name__}-{i}" for i, (f, *_) in enumerate(RANDOM)]

Factory = Callable[..., tuple[np.ndarray, np.ndarray]]


@pytest.mark.parametrize(("make", "kwargs", "n", "counts", "d"), RANDOM, ids=IDS)
def test_shapes_dtypes_and_classes(
    make: Factory, kwargs: dict[str, Any], n: int, counts: list[int], d: int
) -> None:
    X, y = make(**kwargs, rng=np.random.default_rng(0))
    assert X.shape == (n, d) and X.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert np.all(np.isfinite(X))
    assert np.bincount(y).tolist() == counts
    assert np.all(np.diff(y) >= 0)  # ordered by class


@pytest.mark.parametrize(("make", "kwargs", "n", "counts", "d"), RANDOM, ids=IDS)
def test_seed_determines_data(
    make: Factory, kwargs: dict[str, Any], n: int, counts: list[int], d: int
) -> None:
    X1, y1 = make(**kwargs, rng=np.random.default_rng(5))
    X2, y2 = make(**kwargs, rng=np.random.default_rng(5))
    X3, _ = make(**kwargs, rng=np.random.default_rng(6))
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    if kwargs.get("noise", 1.0) != 0.0:
        assert not np.array_equal(X1, X3)
    X4, _ = make(**kwargs)  # rng=None works
    assert X4.shape == X1.shape


def test_xor() -> None:
    X, y = xor()
    assert X.dtype == np.float32 and y.dtype == np.float32
    assert X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert y.tolist() == [[0], [1], [1], [0]]


def test_spirals_equations_without_noise() -> None:
    X, y = spirals(n_per_class=11, n_classes=2, noise=0.0)
    r = np.hypot(X[:, 0], X[:, 1])
    assert np.allclose(r, np.tile(np.linspace(0, 1, 11), 2), atol=1e-6)
    t = np.linspace(4, 8, 11)  # class 1's angles
    assert np.allclose(X[y == 1], np.stack([np.sin(t), np.cos(t)], 1) * r[y == 1, None])


def test_moons_equations_without_noise() -> None:
    X, y = moons(n_samples=40, noise=0.0)
    upper, lower = X[y == 0], X[y == 1]
    assert np.allclose(np.hypot(*upper.T), 1, atol=1e-6) and np.all(upper[:, 1] >= -1e-6)
    assert np.allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1, atol=1e-6)
    assert np.all(lower[:, 1] <= 0.5 + 1e-6)


def test_circles_equations_without_noise() -> None:
    X, y = circles(n_samples=40, noise=0.0, factor=0.3)
    radius = np.hypot(X[:, 0], X[:, 1])
    assert np.allclose(radius, np.where(y == 0, 1.0, 0.3), atol=1e-6)
    assert len(np.unique(X.round(5), axis=0)) == 40  # endpoint excluded: no duplicate point


def test_blobs_with_given_centers() -> None:
    centers = [[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]]
    X, y = blobs(n_samples=5, centers=centers, n_features=3, cluster_std=0.0)
    assert np.array_equal(X, np.asarray(centers, np.float32)[y])
    assert y.tolist() == [0, 0, 0, 1, 1]
    X, y = blobs(n_samples=2000, centers=centers, n_features=3, cluster_std=0.5)
    assert np.allclose(X[y == 1].mean(0), 5.0, atol=0.1)
    assert np.allclose(X[y == 1].std(0), 0.5, atol=0.05)


def test_blobs_random_centers_in_box() -> None:
    X, y = blobs(n_samples=300, centers=3, cluster_std=0.0, rng=np.random.default_rng(1))
    assert np.all(np.abs(X) <= 10)
    centers = np.unique(X, axis=0)
    assert len(centers) == 3 and all(len(np.unique(X[y == k], axis=0)) == 1 for k in range(3))


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (spirals, {"n_per_class": 1}, ValueError, "n_per_class must be >= 2, got 1"),
        (spirals, {"n_classes": 0}, ValueError, "n_classes must be >= 1"),
        (spirals, {"n_classes": 2.5}, TypeError, "n_classes must be an int"),
        (spirals, {"noise": -0.1}, ValueError, "noise must be a finite number >= 0, got -0.1"),
        (spirals, {"noise": float("inf")}, ValueError, "noise must be a finite number"),
        (spirals, {"noise": "0.1"}, TypeError, "noise must be a real number"),
        (moons, {"n_samples": 1}, ValueError, "n_samples must be >= 2"),
        (moons, {"rng": 3}, TypeError, "np.random.default_rng"),
        (circles, {"factor": 1.0}, ValueError, r"factor must be in \(0, 1\)"),
        (circles, {"factor": 0.0}, ValueError, r"factor must be in \(0, 1\)"),
        (circles, {"n_samples": None}, TypeError, "n_samples must be an int"),
        (blobs, {"n_samples": 0}, ValueError, "n_samples must be >= 1"),
        (blobs, {"centers": 0}, ValueError, "centers must be >= 1"),
        (blobs, {"centers": [[0.0, 0.0, 0.0]]}, ValueError, r"shape \(K, n_features=2\)"),
        (blobs, {"centers": [1.0, 2.0]}, ValueError, r"got shape \(2,\)"),
        (blobs, {"cluster_std": -1.0}, ValueError, "cluster_std must be"),
        (blobs, {"n_features": 0}, ValueError, "n_features must be >= 1"),
    ],
)
def test_rejects_bad_arguments(
    make: Factory, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make(**kwargs)
