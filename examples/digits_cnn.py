"""A small CNN on scikit-learn's 8x8 handwritten digits, trained with nnkit.fit.

Run it (needs scikit-learn, the optional extra ``examples``: ``pip install ".[examples]"``):

    python examples/digits_cnn.py              # the CNN, then the same budget as an MLP
    python examples/digits_cnn.py --seeds 5    # accuracy over several seeds

The data are the 1,797 8x8 images bundled with scikit-learn (no download), pixel values 0..16
scaled to [0, 1], split 80/20 stratified with a fixed seed. The network::

    Conv2d(1, 16, 3, padding=1) - BatchNorm2d - ReLU - MaxPool2d(2)      -> (N, 16, 4, 4)
    Conv2d(16, 32, 3, padding=1) - BatchNorm2d - ReLU - MaxPool2d(2)     -> (N, 32, 2, 2)
    Flatten - Dropout(0.25) - Dense(128, 10)

trained with Adam (lr 3e-3) and CrossEntropyLoss for 15 epochs of batch 32.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import nnkit
from nnkit.data import train_test_split
from nnkit.optim import Adam

EPOCHS = 15
BATCH_SIZE = 32
LEARNING_RATE = 3e-3


def load_data(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """The digits as (N, 1, 8, 8) float32 images in [0, 1], split 80/20 stratified."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, rng=np.random.default_rng(seed)
    )
    return X_train, X_test, y_train, y_test


def cnn(rng: np.random.Generator) -> nnkit.Sequential:
    return nnkit.Sequential(
        nnkit.Conv2d(1, 16, 3, padding=1, rng=rng),
        nnkit.BatchNorm2d(16),
        nnkit.ReLU(),
        nnkit.MaxPool2d(2),
        nnkit.Conv2d(16, 32, 3, padding=1, rng=rng),
        nnkit.BatchNorm2d(32),
        nnkit.ReLU(),
        nnkit.MaxPool2d(2),
        nnkit.Flatten(),
        nnkit.Dropout(0.25, rng=rng),
        nnkit.Dense(128, 10, rng=rng),
    )


def mlp(rng: np.random.Generator) -> nnkit.Sequential:
    """The comparison: the same inputs flattened, two hidden layers of 128."""
    return nnkit.Sequential(
        nnkit.Flatten(),
        nnkit.Dense(64, 128, rng=rng),
        nnkit.ReLU(),
        nnkit.Dense(128, 128, rng=rng),
        nnkit.ReLU(),
        nnkit.Dense(128, 10, rng=rng),
    )


def run(make: Any, seed: int, epochs: int = EPOCHS) -> tuple[float, float, nnkit.Module]:
    """Train a fresh model; return its test accuracy, the seconds fit took, and the model."""
    X_train, X_test, y_train, y_test = load_data()
    rng = np.random.default_rng(seed)
    model = make(rng)
    loss_fn = nnkit.CrossEntropyLoss()
    start = time.perf_counter()
    nnkit.fit(model, loss_fn, Adam(model.parameters(), lr=LEARNING_RATE), X_train, y_train,
              epochs=epochs, batch_size=BATCH_SIZE, rng=rng, verbose=0)  # fmt: skip
    seconds = time.perf_counter() - start
    accuracy = nnkit.evaluate(model, loss_fn, X_test, y_test)["accuracy"]
    return accuracy, seconds, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="train this many seeds (0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    X_train, X_test, _, _ = load_data()
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8")
    print(nnkit.summary(cnn(np.random.default_rng(0)), (1, 8, 8)))
    for name, make in (("CNN", cnn), ("MLP", mlp)):
        results = [run(make, seed, args.epochs)[:2] for seed in range(args.seeds)]
        accuracies = [a for a, _ in results]
        times = [t for _, t in results]
        print(
            f"{name}: test accuracy {np.median(accuracies):.2%} median over {args.seeds} "
            f"seed(s) (min {min(accuracies):.2%}, max {max(accuracies):.2%}); fit "
            f"{np.median(times):.2f} s median for {args.epochs} epochs"
        )


if __name__ == "__main__":
    main()
