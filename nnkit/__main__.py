"""``python -m nnkit``: a short demo of nnkit's workflow.

First the XOR network, trained by a hand-written loop; then a 3-class spirals classifier
trained with ``nnkit.training.fit`` (the recipe of docs/training.md), with its summary, live
progress and final accuracy. It runs in about a second.
"""

from __future__ import annotations

import time

import numpy as np

import nnkit
from nnkit._summary import summary
from nnkit.datasets import spirals
from nnkit.optim import SGD, Adam
from nnkit.training import evaluate, fit


def xor_demo(seed: int = 0, epochs: int = 2000) -> None:
    """Train the 2-3-2-1 sigmoid network on XOR with SGD and momentum, and print it."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    y = np.array([[0], [1], [1], [0]])
    rng = np.random.default_rng(seed)
    model = nnkit.Sequential(
        nnkit.Dense(2, 3, rng=rng), nnkit.Sigmoid(),
        nnkit.Dense(3, 2, rng=rng), nnkit.Sigmoid(),
        nnkit.Dense(2, 1, rng=rng), nnkit.Sigmoid(),
    )
    loss_fn = nnkit.BCELoss()
    optimizer = SGD(model.parameters(), lr=1.0, momentum=0.9)
    print(model)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        model.accumulate_grad(loss_fn.backward())
        optimizer.step()
        if epoch in (1, epochs // 10, epochs // 2, epochs):
            print(f"epoch {epoch:5d}  loss {loss:.5f}")
    elapsed = time.perf_counter() - start
    print(f"trained in {elapsed:.2f} s; what it learned:")
    for row, out in zip(x, model.eval()(x), strict=True):
        print(f"  {row[0]} xor {row[1]} -> {out[0]:.3f} (target {row[0] ^ row[1]})")


def spirals_demo(seed: int = 0, epochs: int = 40, verbose: int = 1) -> float:
    """Train the spirals classifier of docs/training.md with fit; print and return its accuracy.

    The recipe: 900 points of ``spirals(300, 3, noise=0.2)``, Dense(2, 64)-ReLU-Dense(64, 64)-
    ReLU-Dense(64, 3), CrossEntropyLoss, Adam(lr=1e-2), 40 epochs of batches of 32. A second,
    independent draw of 300 points serves as validation data.
    """
    rng = np.random.default_rng(seed)
    X, y = spirals(300, 3, noise=0.2, rng=rng)
    X_val, y_val = spirals(100, 3, noise=0.2, rng=rng)
    model = nnkit.Sequential(
        nnkit.Dense(2, 64, rng=rng), nnkit.ReLU(),
        nnkit.Dense(64, 64, rng=rng), nnkit.ReLU(),
        nnkit.Dense(64, 3, rng=rng),
    )  # fmt: skip
    loss_fn = nnkit.CrossEntropyLoss()
    print(summary(model, (2,)))
    start = time.perf_counter()
    fit(
        model, loss_fn, Adam(model.parameters(), lr=1e-2), X, y,
        epochs=epochs, batch_size=32, validation_data=(X_val, y_val), rng=rng, verbose=verbose,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    accuracy = evaluate(model, loss_fn, X, y)["accuracy"]
    val_accuracy = evaluate(model, loss_fn, X_val, y_val)["accuracy"]
    print(
        f"trained in {elapsed:.2f} s: accuracy {accuracy:.1%} on the {len(X)} training points, "
        f"{val_accuracy:.1%} on {len(X_val)} new points"
    )
    return accuracy


def main() -> None:
    print(f"nnkit {nnkit.__version__}: XOR with a 2-3-2-1 sigmoid network\n")
    xor_demo()
    print("\nA 3-class spirals classifier trained with nnkit.training.fit\n")
    spirals_demo()


if __name__ == "__main__":
    main()
