"""Time forward + backward (dx and the parameter gradients) of the normalisation, dropout and
embedding layers in float32: nnkit against plain NumPy and PyTorch.

"plain" is the textbook NumPy version of each layer with no checks: ``mean``/``var``/``sum``
along axes, a boolean mask, ``np.add.at`` on rows. It is what nnkit's layers would cost
written directly from their equations; nnkit replaces those reductions by BLAS GEMVs and
einsum dot products, and the row scatter by a flat one. PyTorch (CPU, eager) runs when
installed.

    python benchmarks/normalization.py            # the table (about a minute)
    python benchmarks/normalization.py --quick    # a smoke run with tiny counts

The implementations alternate inside one run: each timed block runs one of them ``--number``
times, blocks rotate ``--repeats`` times after a warm-up, and the table reports the median
block. Ratios below 1 mean nnkit is faster.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/mlp.py

import numpy as np

import nnkit

try:  # optional
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

Array = Any
Step = Callable[[], None]


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    ours: Callable[[], nnkit.Module]
    plain: Callable[[Array, Array, nnkit.Module], Step]  # (x, dy, the nnkit layer) -> step
    theirs: Callable[[], Any] | None


def plain_batchnorm(x: Array, dy: Array, layer: nnkit.Module) -> Step:
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    gamma = np.ones(x.shape[1], dtype=np.float32).reshape(shape)
    m = x.size // x.shape[1]

    def step() -> None:
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        invstd = 1 / np.sqrt(var + 1e-5)
        xhat = (x - mean) * invstd
        _y = xhat * gamma + 0.0
        dbeta = dy.sum(axis=axes, keepdims=True)
        dgamma = (dy * xhat).sum(axis=axes, keepdims=True)
        _dx = gamma * invstd * (dy - dbeta / m - xhat * dgamma / m)

    return step


def plain_layernorm(x: Array, dy: Array, layer: nnkit.Module) -> Step:
    gamma = np.ones(x.shape[-1], dtype=np.float32)
    lead = tuple(range(x.ndim - 1))

    def step() -> None:
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        invstd = 1 / np.sqrt(var + 1e-5)
        xhat = (x - mean) * invstd
        _y = xhat * gamma + 0.0
        _dbeta = dy.sum(axis=lead)
        _dgamma = (dy * xhat).sum(axis=lead)
        g = dy * gamma
        _dx = invstd * (
            g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)
        )

    return step


def plain_groupnorm(x: Array, dy: Array, layer: nnkit.Module) -> Step:
    groups = layer.num_groups  # type: ignore[attr-defined]
    n, c = x.shape[:2]
    gamma = np.ones((1, c) + (1,) * (x.ndim - 2), dtype=np.float32)

    def step() -> None:
        xg = x.reshape(n, groups, -1)
        mean = xg.mean(axis=-1, keepdims=True)
        var = xg.var(axis=-1, keepdims=True)
        invstd = 1 / np.sqrt(var + 1e-5)
        xhat = ((xg - mean) * invstd).reshape(x.shape)
        _y = xhat * gamma + 0.0
        axes = (0, *range(2, x.ndim))
        _dbeta = dy.sum(axis=axes)
        _dgamma = (dy * xhat).sum(axis=axes)
        g = (dy * gamma).reshape(n, groups, -1)
        xh = xhat.reshape(n, groups, -1)
        _dx = invstd * (
            g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).mean(axis=-1, keepdims=True)
        )

    return step


def plain_dropout(x: Array, dy: Array, layer: nnkit.Module) -> Step:
    rng = np.random.default_rng(0)

    def step() -> None:
        mask = (rng.random(x.shape, dtype=np.float32) >= 0.5) / np.float32(0.5)
        _y = x * mask
        _dx = dy * mask

    return step


EMBEDDING = (10_000, 128)


def plain_embedding(ids: Array, dy: Array, layer: nnkit.Module) -> Step:
    weight = np.random.default_rng(0).standard_normal(EMBEDDING, dtype=np.float32)
    grad = np.zeros_like(weight)

    def step() -> None:
        _y = weight[ids]
        np.add.at(grad, ids.reshape(-1), dy.reshape(-1, EMBEDDING[1]))

    return step


def _tn(name: str, *args: Any, **kwargs: Any) -> Callable[[], Any] | None:
    if torch is None:
        return None
    return lambda: getattr(torch.nn, name)(*args, **kwargs)


CASES = [
    Case("BatchNorm1d (256, 512)", (256, 512), lambda: nnkit.BatchNorm1d(512), plain_batchnorm,
         _tn("BatchNorm1d", 512)),
    Case("BatchNorm1d (32, 64, 128)", (32, 64, 128), lambda: nnkit.BatchNorm1d(64),
         plain_batchnorm, _tn("BatchNorm1d", 64)),
    Case("BatchNorm2d (32, 64, 16, 16)", (32, 64, 16, 16), lambda: nnkit.BatchNorm2d(64),
         plain_batchnorm, _tn("BatchNorm2d", 64)),
    Case("BatchNorm2d eval", (32, 64, 16, 16), lambda: nnkit.BatchNorm2d(64).eval(),
         plain_batchnorm, _tn("BatchNorm2d", 64)),
    Case("LayerNorm (32, 128, 256)", (32, 128, 256), lambda: nnkit.LayerNorm(256),
         plain_layernorm, _tn("LayerNorm", 256)),
    Case("LayerNorm (64, 64)", (64, 64), lambda: nnkit.LayerNorm(64), plain_layernorm,
         _tn("LayerNorm", 64)),
    Case("GroupNorm(8, 64) (32, 64, 16, 16)", (32, 64, 16, 16), lambda: nnkit.GroupNorm(8, 64),
         plain_groupnorm, _tn("GroupNorm", 8, 64)),
    Case("Dropout(0.5) (256, 1024)", (256, 1024),
         lambda: nnkit.Dropout(0.5, rng=np.random.default_rng(0)), plain_dropout,
         _tn("Dropout", 0.5)),
    Case("Embedding(10000, 128) (32, 128)", (32, 128), lambda: nnkit.Embedding(*EMBEDDING),
         plain_embedding, _tn("Embedding", *EMBEDDING)),
]  # fmt: skip


def inputs(case: Case, rng: np.random.Generator) -> tuple[Array, Array]:
    if case.name.startswith("Embedding"):
        ids = rng.integers(0, EMBEDDING[0], size=case.shape)
        return ids, rng.standard_normal((*case.shape, EMBEDDING[1]), dtype=np.float32)
    x = rng.standard_normal(case.shape, dtype=np.float32)
    return x, rng.standard_normal(case.shape, dtype=np.float32)


def ours_step(layer: nnkit.Module, x: Array, dy: Array) -> Step:
    def step() -> None:
        layer.zero_grad()
        layer(x)
        layer.backward(dy)

    return step


def theirs_step(case: Case, x: Array, dy: Array) -> Step:
    assert case.theirs is not None and torch is not None
    module = case.theirs()
    if "eval" in case.name:
        module.eval()
    tx = torch.from_numpy(x)
    if x.dtype.kind == "f":
        tx.requires_grad_(True)
    tdy = torch.from_numpy(dy)

    def step() -> None:
        module.zero_grad()
        if tx.grad is not None:
            tx.grad = None
        module(tx).backward(tdy)

    return step


def time_block(step: Step, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - start) / number


def measure(steps: dict[str, Step], number: int, repeats: int) -> dict[str, float]:
    for step in steps.values():  # warm-up
        time_block(step, max(1, number // 4))
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name].append(time_block(steps[name], number))
    return {name: statistics.median(values) for name, values in times.items()}


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return f"{'-':>10}"
    return f"{seconds * 1e6:7.0f} us" if seconds < 1e-2 else f"{seconds * 1e3:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description="normalisation/dropout/embedding benchmark")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    args = parser.parse_args()
    use_torch = torch is not None and not args.no_torch
    if use_torch:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    repeats = 2 if args.quick else args.repeats
    print(f"nnkit {nnkit.__version__}, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    print(f"torch {torch.__version__}" if use_torch else "torch: not used")
    print("float32, forward + backward (dx and parameter gradients), median block\n")
    columns = f"{'nnkit':>10} {'plain':>10} {'torch':>10} {'/plain':>7} {'/torch':>7}"
    header = f"{'layer and input':34} {columns}"
    print(header)
    print("-" * len(header))
    for case in CASES:
        rng = np.random.default_rng(0)
        x, dy = inputs(case, rng)
        layer = case.ours()
        steps = {"plain": case.plain(x, dy, layer), "nnkit": ours_step(layer, x, dy)}
        if use_torch and case.theirs is not None:
            steps["torch"] = theirs_step(case, x, dy)
        size = int(np.prod(case.shape))
        number = 2 if args.quick else max(5, min(500, int(2e7 / (size + 1e4))))
        result = measure(steps, number, repeats)
        t = result.get("torch")
        print(
            f"{case.name:34} {fmt(result['nnkit'])} {fmt(result['plain'])} {fmt(t)} "
            f"{result['nnkit'] / result['plain']:7.2f} "
            f"{result['nnkit'] / t if t else float('nan'):7.2f}"
        )


if __name__ == "__main__":
    main()
