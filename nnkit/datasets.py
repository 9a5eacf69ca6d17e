"""Small synthetic datasets for demos and tests; nothing is downloaded.

Every generator returns ``(X, y)`` with ``X`` float32 of shape (N, 2) (``blobs``: (N,
n_features)) and, except ``xor``, ``y`` int64 class indices of shape (N,). Samples come
ordered by class (class 0 first); shuffle them with ``DataLoader`` or ``train_test_split``.
For a binary loss that wants float targets of shape (N, 1), use
``y[:, None].astype(np.float32)``. The random ones take ``rng: np.random.Generator | None``
(None means ``np.random.default_rng()``); a seeded generator gives the same data every time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnkit._checks import as_generator, check_int, check_real

__all__ = ["blobs", "circles", "moons", "spirals", "xor"]

_Dataset = tuple[NDArray[np.float32], NDArray[Any]]


def _split_two(n_samples: int) -> tuple[int, int]:
    """Sizes of class 0 and class 1 for two-class data: class 1 gets the odd sample."""
    n = check_int("n_samples", n_samples, 2)
    return n // 2, n - n // 2


def _two_classes(n0: int, n1: int) -> NDArray[np.int64]:
    return np.repeat(np.arange(2, dtype=np.int64), [n0, n1])


def xor() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The four XOR points.

    Returns:
        X: float32 (4, 2), the rows (0, 0), (0, 1), (1, 0), (1, 1).
        y: float32 (4, 1), ``x1 XOR x2``: 0, 1, 1, 0 (ready for a binary loss).
    """
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    return X, y


def spirals(
    n_per_class: int = 100,
    n_classes: int = 3,
    noise: float = 0.2,
    rng: np.random.Generator | None = None,
) -> _Dataset:
    """Interleaved spiral arms, one per class (the CS231n classic).

    For class k = 0..K-1 and sample i = 0..n-1 (n = ``n_per_class``)::

        r     = i / (n - 1)                                (radius from 0 to 1)
        theta = 4k + 4 i / (n - 1) + noise * e,  e ~ N(0, 1)
        x     = (r sin(theta), r cos(theta))

    Returns:
        X: float32 (K n, 2); y: int64 (K n,) class indices, class k in rows k n .. (k+1) n - 1.
    """
    n = check_int("n_per_class", n_per_class, 2)
    k = check_int("n_classes", n_classes, 1)
    noise = check_real("noise", noise, minimum=0, finite=True)
    rng = as_generator(rng)
    t = np.linspace(0.0, 1.0, n)
    r = np.tile(t, k)
    theta = (4.0 * (np.arange(k)[:, None] + t)).reshape(-1) + noise * rng.standard_normal(k * n)
    X = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1).astype(np.float32)
    return X, np.repeat(np.arange(k, dtype=np.int64), n)


def moons(
    n_samples: int = 100, noise: float = 0.1, rng: np.random.Generator | None = None
) -> _Dataset:
    """Two interleaving half circles (as scikit-learn's ``make_moons``).

    With t spaced evenly over [0, pi] within each class and e ~ N(0, I)::

        class 0 (n_samples // 2 points):       x = (cos t, sin t)             + noise * e
        class 1 (the rest):                    x = (1 - cos t, 0.5 - sin t)   + noise * e

    Returns:
        X: float32 (n_samples, 2); y: int64 (n_samples,) with values 0 and 1.
    """
    n0, n1 = _split_two(n_samples)
    noise = check_real("noise", noise, minimum=0, finite=True)
    rng = as_generator(rng)
    t0, t1 = np.linspace(0.0, np.pi, n0), np.linspace(0.0, np.pi, n1)
    X = np.concatenate(
        [
            np.stack([np.cos(t0), np.sin(t0)], axis=1),
            np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1),
        ]
    )
    X += noise * rng.standard_normal(X.shape)
    return X.astype(np.float32), _two_classes(n0, n1)


def circles(
    n_samples: int = 100,
    noise: float = 0.05,
    factor: float = 0.5,
    rng: np.random.Generator | None = None,
) -> _Dataset:
    """A circle inside a larger one (as scikit-learn's ``make_circles``).

    With t spaced evenly over [0, 2 pi) within each class and e ~ N(0, I)::

        class 0 (n_samples // 2 points):   x = (cos t, sin t)                   + noise * e
        class 1 (the rest):                x = factor * (cos t, sin t)          + noise * e

    Args:
        factor: radius of the inner circle relative to the outer one, in (0, 1).

    Returns:
        X: float32 (n_samples, 2); y: int64 (n_samples,), 0 outer and 1 inner.
    """
    n0, n1 = _split_two(n_samples)
    noise = check_real("noise", noise, minimum=0, finite=True)
    if not 0.0 < check_real("factor", factor) < 1.0:
        raise ValueError(f"factor must be in (0, 1) (inner radius / outer radius), got {factor}")
    rng = as_generator(rng)
    t0 = np.linspace(0.0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0.0, 2 * np.pi, n1, endpoint=False)
    radius = np.repeat([1.0, factor], [n0, n1])
    t = np.concatenate([t0, t1])
    X = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    X += noise * rng.standard_normal(X.shape)
    return X.astype(np.float32), _two_classes(n0, n1)


def blobs(
    n_samples: int = 100,
    centers: int | ArrayLike = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    rng: np.random.Generator | None = None,
) -> _Dataset:
    """Isotropic Gaussian clusters (as scikit-learn's ``make_blobs``).

    ``centers`` is a count K, drawing the centers c_k uniformly from [-10, 10]^n_features, or
    a (K, n_features) array of centers. The samples are split as evenly as possible (the first
    ``n_samples % K`` classes get one extra) and sample i of class k is::

        x = c_k + cluster_std * e,   e ~ N(0, I)

    Returns:
        X: float32 (n_samples, n_features); y: int64 (n_samples,) with values 0..K-1.
    """
    n = check_int("n_samples", n_samples, 1)
    d = check_int("n_features", n_features, 1)
    std = check_real("cluster_std", cluster_std, minimum=0, finite=True)
    rng = as_generator(rng)
    if isinstance(centers, (int, np.integer)) and not isinstance(centers, bool):
        k = check_int("centers", centers, 1)
        c = rng.uniform(-10.0, 10.0, size=(k, d))
    else:
        c = np.asarray(centers, dtype=np.float64)
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] != d:
            raise ValueError(
                f"centers must be an int or an array of shape (K, n_features={d}), "
                f"got shape {c.shape}; pass n_features to match"
            )
        k = c.shape[0]
    counts = n // k + (np.arange(k) < n % k)
    y = np.repeat(np.arange(k, dtype=np.int64), counts)
    X = c[y] + std * rng.standard_normal((n, d))
    return X.astype(np.float32), y
