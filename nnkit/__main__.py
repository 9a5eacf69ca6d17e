"""``python -m nnkit``: a short demo that trains the XOR network and prints what it learned."""

from __future__ import annotations

import time

import numpy as np

import nnkit
from nnkit.optim import SGD


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
        model.backward(loss_fn.backward())
        optimizer.step()
        if epoch in (1, epochs // 10, epochs // 2, epochs):
            print(f"epoch {epoch:5d}  loss {loss:.5f}")
    elapsed = time.perf_counter() - start
    print(f"trained in {elapsed:.2f} s; what it learned:")
    for row, out in zip(x, model.eval()(x), strict=True):
        print(f"  {row[0]} xor {row[1]} -> {out[0]:.3f} (target {row[0] ^ row[1]})")


def main() -> None:
    print(f"nnkit {nnkit.__version__}: XOR with a 2-3-2-1 sigmoid network\n")
    xor_demo()


if __name__ == "__main__":
    main()
