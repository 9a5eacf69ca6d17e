"""XOR with the classic 2-3-2-1 sigmoid network: the problem nnkit was built for.

Run it:                         python examples/xor.py
Measure the success rate:       python examples/xor.py --seeds 20

A hand-written version of this network (parallel lists of weights, deltas and activations
indexed by layer number) is easy to get wrong. Here each layer owns its cache, parameters and
gradients, and the training loop is four lines.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nnkit
from nnkit.optim import SGD

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # integer input is fine
Y = np.array([[0], [1], [1], [0]])

# The documented settings.
EPOCHS = 2000
LEARNING_RATE = 1.0
MOMENTUM = 0.9


def train(seed: int) -> nnkit.Sequential:
    """Train the 2-3-2-1 sigmoid network on XOR, full batch, and return it."""
    rng = np.random.default_rng(seed)
    model = nnkit.Sequential(
        nnkit.Dense(2, 3, rng=rng),
        nnkit.Sigmoid(),
        nnkit.Dense(3, 2, rng=rng),
        nnkit.Sigmoid(),
        nnkit.Dense(2, 1, rng=rng),
        nnkit.Sigmoid(),
    )
    loss_fn = nnkit.BCELoss()
    optimizer = SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    for _ in range(EPOCHS):
        optimizer.zero_grad()
        loss_fn(model(X), Y)
        model.accumulate_grad(loss_fn.backward())
        optimizer.step()
    return model


def learned(model: nnkit.Module) -> bool:
    """True when all four outputs are on the right side of 0.5."""
    return bool(np.all((model(X) > 0.5) == (Y == 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="train with seeds 0..N-1")
    args = parser.parse_args()
    successes, times = 0, []
    for seed in range(args.seeds):
        start = time.perf_counter()
        model = train(seed)
        times.append(time.perf_counter() - start)
        successes += learned(model)
        if args.seeds == 1:
            for row, out in zip(X, model(X), strict=True):
                print(f"{row.tolist()} -> {out[0]:.3f}")
    print(
        f"learned XOR for {successes}/{args.seeds} seeds; "
        f"{EPOCHS} epochs in {np.median(times) * 1000:.0f} ms per seed (median), "
        f"{max(times) * 1000:.0f} ms at most"
    )


if __name__ == "__main__":
    main()
