"""Batching, shuffling and splitting of NumPy arrays.

``DataLoader`` walks arrays in mini-batches, one fresh permutation per epoch;
``train_test_split`` splits them once into a training and a test part.
Both take ``rng: np.random.Generator | None``; a seeded generator reproduces everything.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nnkit._checks import as_generator, check_int

__all__ = ["DataLoader", "train_test_split"]


def _as_arrays(arrays: tuple[ArrayLike, ...], caller: str) -> tuple[NDArray[Any], ...]:
    """Convert to arrays (no copy) and check that they share a non-empty first axis length."""
    if not arrays:
        raise ValueError(f"{caller} needs at least one array, e.g. {caller}(X, y)")
    out = tuple(np.asarray(a) for a in arrays)
    for i, a in enumerate(out):
        if a.ndim == 0:
            raise ValueError(
                f"{caller}: array {i} is 0-d (a scalar); every array needs a sample axis "
                "first, e.g. shape (N,) or (N, features)"
            )
    lengths = [len(a) for a in out]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"{caller}: all arrays must have the same length along axis 0, got lengths {lengths}"
        )
    return out


class DataLoader:
    """Iterate over arrays in mini-batches, every sample exactly once per epoch.

    Each ``for`` loop over the loader is one epoch. With ``shuffle=True`` the epoch starts by
    drawing a fresh permutation from ``rng`` and each batch is taken by fancy-indexing every
    array with a slice of it (a copy); with ``shuffle=False`` batches are slices in the
    original order (views: do not write into them). A seeded ``rng`` reproduces the whole
    sequence of epochs.

    Every iteration yields a **tuple** with one batch per array, in the order given, even for
    a single array: ``for (xb,) in DataLoader(X)`` or ``for xb, yb in DataLoader(X, y)``.

    Args:
        *arrays: arrays (anything ``np.asarray`` accepts) with the same length N along axis 0.
        batch_size: samples per batch; the last batch has N % batch_size samples when that
            is not zero, unless ``drop_last``.
        shuffle: draw a new permutation each epoch; otherwise keep the original order.
        drop_last: drop the last, smaller batch (then each sample appears at most once).
        rng: the generator for the permutations; None means ``np.random.default_rng()``.

    ``len(loader)`` is the number of batches per epoch: ``ceil(N / batch_size)``, or
    ``N // batch_size`` with ``drop_last``.
    """

    def __init__(
        self,
        *arrays: ArrayLike,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.arrays = _as_arrays(arrays, "DataLoader")
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rng = as_generator(rng)

    def __len__(self) -> int:
        n = len(self.arrays[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[NDArray[Any], ...]]:
        n, size = len(self.arrays[0]), self.batch_size
        order = self.rng.permutation(n) if self.shuffle else None
        stop = n - n % size if self.drop_last else n
        for start in range(0, stop, size):
            index = slice(start, start + size) if order is None else order[start : start + size]
            yield tuple(a[index] for a in self.arrays)


def train_test_split(
    *arrays: ArrayLike,
    test_size: float | int = 0.2,
    rng: np.random.Generator | None = None,
    stratify: ArrayLike | None = None,
) -> list[NDArray[Any]]:
    """Split arrays into random train and test parts, as scikit-learn's function does.

    Returns ``[a_train, a_test, b_train, b_test, ...]``, two arrays per input, in input
    order. Both parts are in random order.

    Sizes: ``test_size`` is a fraction in (0, 1) or a count. A fraction gives
    ``n_test = ceil(test_size * N)`` (scikit-learn's rule); both parts must be non-empty.

    Stratification: with ``stratify=labels`` (length N; 1-D labels, or 2-D rows such as
    one-hot vectors, each distinct value or row being a class) every class c with n_c samples
    puts its exact share ``n_test * n_c / N`` into the test part, rounded down, and the
    ``n_test - sum(floors)`` samples left over go one each to the classes with the largest
    fractional remainders (ties to the class that sorts first). So the test part has exactly
    ``n_test`` samples and each class sends the floor or the ceiling of its share to it; a
    class too small to split (one sample) lands wholly in one part.

    Args:
        *arrays: arrays with the same length N along axis 0.
        test_size: fraction in (0, 1) or int count in [1, N - 1] of samples for the test part.
        rng: the generator for the shuffles; None means ``np.random.default_rng()``.
        stratify: class labels of length N to keep class proportions equal in both parts.
    """
    arrays_ = _as_arrays(arrays, "train_test_split")
    rng = as_generator(rng)
    n = len(arrays_[0])
    n_test = _test_count(test_size, n)

    if stratify is None:
        perm = rng.permutation(n)
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    else:
        labels = np.asarray(stratify)
        if labels.ndim == 0 or len(labels) != n:
            raise ValueError(
                f"stratify must have one label per sample ({n}), got shape {labels.shape}"
            )
        axis = 0 if labels.ndim > 1 else None  # rows of a 2-D array are labels
        cls = np.unique(labels, axis=axis, return_inverse=True)[1].reshape(-1)
        counts = np.bincount(cls)
        k, remainder = np.divmod(n_test * counts, n)  # each class's test count, exactly
        k[np.argsort(-remainder, kind="stable")[: n_test - k.sum()]] += 1
        perm = rng.permutation(n)
        order = perm[np.argsort(cls[perm], kind="stable")]  # grouped by class, random within
        rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        in_test = rank < np.repeat(k, counts)
        test_idx = rng.permutation(order[in_test])
        train_idx = rng.permutation(order[~in_test])

    return [part for a in arrays_ for part in (a[train_idx], a[test_idx])]


def _test_count(test_size: float | int, n: int) -> int:
    """Number of test samples for ``test_size`` out of ``n``; raises if a part would be empty."""
    numbers = (int, float, np.integer, np.floating)
    if isinstance(test_size, bool) or not isinstance(test_size, numbers):
        raise TypeError(f"test_size must be a float in (0, 1) or an int count, got {test_size!r}")
    if isinstance(test_size, (int, np.integer)):
        n_test = int(test_size)
    elif 0.0 < test_size < 1.0:
        n_test = math.ceil(float(test_size) * n)
    else:
        raise ValueError(
            f"test_size as a fraction must be in (0, 1), got {test_size}; pass an int for a count"
        )
    if not 1 <= n_test <= n - 1:
        raise ValueError(
            f"test_size={test_size} gives {n_test} test and {n - n_test} training samples "
            f"out of {n}; both parts need at least one sample"
        )
    return n_test
