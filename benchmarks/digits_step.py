"""Time one training step of the digits CNN (examples/digits_cnn.py): nnkit against PyTorch.

A step is what ``nnkit.fit`` does per batch: zero the gradients, forward, cross-entropy,
backward (parameter gradients; the input gradient is not needed), Adam step. The same
network (Conv2d-BatchNorm2d-ReLU-MaxPool2d twice, Flatten, Dropout, Dense) runs in PyTorch
eager on the CPU with the same thread count. The two alternate in one run; the table gives
the median of the timed blocks. Batches of 32 images of 1x8x8, as in the example.

    python benchmarks/digits_step.py                 # 1 and 2 threads
    python benchmarks/digits_step.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/mlp.py


def nnkit_step(batch: int) -> Callable[[], None]:
    import numpy as np

    import nnkit
    from nnkit.optim import Adam

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    from digits_cnn import cnn

    rng = np.random.default_rng(0)
    model = cnn(rng)
    loss_fn = nnkit.CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=3e-3)
    x = rng.random((batch, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, size=batch)

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y)
        model.accumulate_grad(loss_fn.backward())
        opt.step()

    return step


def torch_step(batch: int) -> Callable[[], None]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(128, 10),
    )  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.rand(batch, 1, 8, 8)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def measure(threads: int, repeats: int, steps: int, batch: int) -> dict[str, float]:
    """Median seconds per step of each implementation, alternating blocks."""
    impls: dict[str, Callable[[], None]] = {"nnkit": nnkit_step(batch)}
    try:
        import torch

        torch.set_num_threads(threads)
        impls["torch"] = torch_step(batch)
    except ImportError:
        pass
    times: dict[str, list[float]] = {name: [] for name in impls}
    for step in impls.values():
        for _ in range(steps):  # warm up
            step()
    for r in range(repeats):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for name in order:
            start = time.perf_counter()
            for _ in range(steps):
                impls[name]()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        result = measure(args.child, args.repeats, args.steps, args.batch)
        print(json.dumps(result))
        return
    print(f"digits CNN training step, batch {args.batch}, float32; median of {args.repeats} blocks")
    print(f"{'threads':>7}  {'nnkit':>10}  {'torch':>10}  {'nnkit/torch':>11}")
    for threads in args.threads:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}  # fmt: skip
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(threads), "--repeats", str(args.repeats),
             "--steps", str(args.steps), "--batch", str(args.batch)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        n, t = result["nnkit"], result.get("torch")
        ratio = f"{n / t:11.2f}" if t else f"{'-':>11}"
        torch_time = f"{t * 1e3:8.3f}ms" if t else f"{'-':>10}"
        print(f"{threads:>7}  {n * 1e3:8.3f}ms  {torch_time}  {ratio}")


if __name__ == "__main__":
    main()
