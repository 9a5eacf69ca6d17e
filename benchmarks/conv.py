"""Time forward + backward of Conv2d, Conv1d and MaxPool2d: nnkit, a plain-NumPy floor, PyTorch.

One step is a float32 forward pass and the backward pass that gives the input gradient and
(for the convolutions) the weight and bias gradients. The floor is the fastest im2col + GEMM
we could write straight in NumPy, without nnkit: preallocated buffers, no checks, the same
tricks (a zero-padded im2col buffer whose padding is written once, taps clipped to where
they land, col2im as a loop over the kernel taps, pooling as the max of strided slices).
PyTorch (CPU, eager, same thread count) runs when it is installed.

    python benchmarks/conv.py                      # the full table at 1 and 2 threads
    python benchmarks/conv.py --threads 2          # one thread count
    python benchmarks/conv.py --quick --no-torch   # a smoke run with tiny batches

Each thread count runs in a fresh subprocess with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS set before NumPy loads (and torch.set_num_threads), so no threadpoolctl is
needed; when it is installed it reports the BLAS thread count actually in use. The three
implementations alternate within one run: each timed block runs one of them for a fixed
number of steps, the order rotates every round, and the table reports the median block.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# see benchmarks/mlp.py: PyTorch's busy-waiting OpenMP threads slow down whatever runs next
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

Array = Any
Step = Callable[[], Any]  # returns the gradients it computed, which build() checks


@dataclass(frozen=True)
class Case:
    name: str
    layer: str  # "Conv2d", "Conv1d" or "MaxPool2d"
    batch: int
    channels: int
    out_channels: int  # = channels for pooling
    size: tuple[int, ...]
    kernel: int
    stride: int = 1
    padding: int = 0

    def describe(self) -> str:
        size = "x".join(map(str, self.size))
        chans = (f"{self.channels}->{self.out_channels}" if self.layer != "MaxPool2d"
                 else f"{self.channels}ch")
        extra = f" s{self.stride}" if self.stride != 1 and self.layer != "MaxPool2d" else ""
        if self.layer == "MaxPool2d":
            extra = f" s{self.stride}"
        return f"{self.layer} N={self.batch} {chans} {size} k{self.kernel}{extra} p{self.padding}"


CASES = [
    Case("c1", "Conv2d", 64, 1, 16, (28, 28), 3, 1, 1),
    Case("c2", "Conv2d", 64, 16, 32, (14, 14), 3, 1, 1),
    Case("c3", "Conv2d", 32, 64, 64, (32, 32), 3, 1, 1),
    Case("c4", "Conv2d", 128, 1, 16, (8, 8), 3, 1, 1),
    Case("c5", "Conv2d", 64, 16, 32, (28, 28), 3, 2, 1),  # 28 + 2 - 3 is odd: not divisible
    Case("c6", "Conv1d", 100, 1, 32, (40,), 5, 1, 2),
    Case("p1", "MaxPool2d", 64, 16, 16, (28, 28), 2, 2, 0),
    Case("p2", "MaxPool2d", 32, 64, 64, (32, 32), 2, 2, 0),
    Case("p3", "MaxPool2d", 64, 32, 32, (14, 14), 3, 2, 1),  # overlapping windows, padding
]


# -- the plain-NumPy floor ---------------------------------------------------------------------


def floor_taps(
    size: tuple[int, ...], out: tuple[int, ...], kernel: int, stride: int, pad: int
) -> list[tuple[tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]]:
    """(kernel offset, input slices, output slices) of every tap that lands in the input."""
    per_axis = []
    for n, o in zip(size, out, strict=True):
        axis = []
        for i in range(kernel):
            first = max(0, -((i - pad) // stride))
            last = min(o - 1, (n - 1 - i + pad) // stride)
            if last >= first:
                start = first * stride + i - pad
                axis.append((i, slice(start, last * stride + i - pad + 1, stride),
                             slice(first, last + 1)))
        per_axis.append(axis)
    taps = []
    for combo in itertools.product(*per_axis):
        taps.append((tuple(c[0] for c in combo), tuple(c[1] for c in combo),
                     tuple(c[2] for c in combo)))
    return taps


def floor_conv_step(np: Any, x: Array, w: Array, b: Array, dy: Array, case: Case) -> Step:
    n, c = x.shape[:2]
    o, k, pad = w.shape[0], case.kernel, case.padding
    out = dy.shape[2:]
    rank = len(out)
    every = (slice(None), slice(None))
    taps = [((*every, *idx, *dst), (*every, *src)) for idx, src, dst in
            floor_taps(x.shape[2:], out, k, case.stride, pad)]
    # a tap that covers the whole input initialises dx by a copy instead of zeros + add
    full = [t for t in taps if all(s.indices(m) == (0, m, 1)
                                   for s, m in zip(t[1][2:], x.shape[2:], strict=True))]
    first = full[0] if full else None
    rest = [t for t in taps if t is not first]
    window, positions = c * k**rank, int(np.prod(out))
    cols = np.zeros((n, c, *(k,) * rank, *out), np.float32)  # padding stays zero
    dcols = np.empty_like(cols)
    cols3, dcols3 = cols.reshape(n, window, positions), dcols.reshape(n, window, positions)
    w2 = w.reshape(o, window)
    dy3 = dy.reshape(n, o, positions)
    dy_rows, ones = dy.reshape(n * o, positions), np.ones(positions, np.float32)
    bias = b.reshape(o, 1)

    def step() -> None:
        for col, src in taps:
            cols[col] = x[src]
        y = np.matmul(w2, cols3)
        y += bias
        dw = np.matmul(dy3, cols3.transpose(0, 2, 1)).sum(axis=0)
        db = (dy_rows @ ones).reshape(n, o).sum(axis=0)  # by GEMV: faster than .sum
        np.matmul(w2.T, dy3, out=dcols3)
        if first is not None:
            dx = np.empty(x.shape, np.float32)
            dx[first[1]] = dcols[first[0]]
        else:
            dx = np.zeros(x.shape, np.float32)
        for col, src in rest:
            dx[src] += dcols[col]
        return dx, dw, db

    return step


def floor_pool_step(np: Any, x: Array, dy: Array, case: Case) -> Step:
    every = (slice(None), slice(None))
    taps = [((*every, *src), (*every, *dst)) for _, src, dst in
            floor_taps(x.shape[2:], dy.shape[2:], case.kernel, case.stride, case.padding)]
    full = [t for t in taps if all(s.indices(m) == (0, m, 1)
                                   for s, m in zip(t[1][2:], dy.shape[2:], strict=True))]
    first = full[0] if full else None  # a tap that fills the output starts y by a copy
    others = [t for t in taps if t is not first]
    overlapping = case.kernel > case.stride

    def step() -> None:
        y = x[first[0]].copy() if first else np.full(dy.shape, -np.inf, np.float32)
        for src, dst in others:
            view = y[dst]
            np.maximum(view, x[src], out=view)
        dx = np.zeros(x.shape, np.float32)
        remaining = dy.copy()  # ties: only the first maximal element of a window gets dy
        for src, dst in taps[:-1]:
            hit = x[src] == y[dst]
            if overlapping:
                taken = remaining[dst] * hit
                dx[src] += taken
            else:
                taken = dx[src]
                np.multiply(remaining[dst], hit, out=taken)
            view = remaining[dst]
            view -= taken
        src, dst = taps[-1]
        if overlapping:
            dx[src] += remaining[dst] * (x[src] == y[dst])
        else:
            np.multiply(remaining[dst], x[src] == y[dst], out=dx[src])
        return (dx,)

    return step


# -- nnkit and PyTorch -------------------------------------------------------------------------


def nnkit_step(layer: Any, x: Array, dy: Array) -> Step:
    params = list(layer.parameters())

    def step() -> tuple[Array, ...]:
        for param in params:  # as optimizer.zero_grad() does
            param.zero_grad()
        layer(x)
        return (layer.backward(dy), *(p.grad for p in params))

    return step


def torch_step(torch: Any, case: Case, x: Array, w: Array | None, b: Array | None,
               dy: Array) -> Step:
    tx = torch.from_numpy(x).requires_grad_(True)
    tdy = torch.from_numpy(dy)
    if case.layer == "MaxPool2d":
        module = torch.nn.MaxPool2d(case.kernel, case.stride, case.padding)
    else:
        cls = torch.nn.Conv2d if case.layer == "Conv2d" else torch.nn.Conv1d
        module = cls(case.channels, case.out_channels, case.kernel, case.stride, case.padding)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(w))
            module.bias.copy_(torch.from_numpy(b))

    def step() -> tuple[Array, ...]:
        tx.grad = None
        module.zero_grad(set_to_none=True)
        module(tx).backward(tdy)
        return (tx.grad, *(p.grad for p in module.parameters()))

    return step


def build(case: Case, use_torch: bool) -> tuple[dict[str, Step], Callable[[], None]]:
    """The three steps of a case, and a check that they compute the same gradients."""
    import numpy as np

    import nnkit

    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.batch, case.channels, *case.size), dtype=np.float32)
    if case.layer == "MaxPool2d":
        layer: Any = nnkit.MaxPool2d(case.kernel, case.stride, case.padding)
        w = b = None
    else:
        cls = nnkit.Conv2d if case.layer == "Conv2d" else nnkit.Conv1d
        layer = cls(case.channels, case.out_channels, case.kernel, case.stride, case.padding,
                    rng=rng)
        w, b = layer.weight.data, layer.bias.data
    dy = rng.standard_normal(layer(x).shape, dtype=np.float32)
    steps = {"nnkit": nnkit_step(layer, x, dy)}
    steps["floor"] = (floor_pool_step(np, x, dy, case) if w is None
                      else floor_conv_step(np, x, w, b, dy, case))
    if use_torch:
        import torch

        steps["torch"] = torch_step(torch, case, x, w, b, dy)

    def check() -> None:
        """Every implementation computes the same dx, dweight and dbias as nnkit: the timed
        work is the right work."""
        expected = steps["nnkit"]()
        assert expected[0].shape == x.shape and expected[0].dtype == np.float32
        for name, step in steps.items():
            for ours, theirs in zip(expected, step(), strict=True):
                got = theirs.numpy() if hasattr(theirs, "numpy") else theirs
                np.testing.assert_allclose(got.reshape(ours.shape), ours, rtol=1e-3, atol=1e-3,
                                           err_msg=name)

    return steps, check


# -- timing ----------------------------------------------------------------------------------


def time_block(step: Step, number: int) -> tuple[float, float]:
    """Seconds and minor page faults per step over ``number`` steps."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(number):
        step()
    elapsed = time.perf_counter() - start
    return elapsed / number, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / number


def measure(steps: dict[str, Step], repeats: int, seconds: float) -> dict[str, tuple[float, float]]:
    for step in steps.values():  # warm-up, which also sizes the blocks
        step()
    single = min(time_block(step, 1)[0] for step in steps.values())
    number = max(1, int(seconds / max(single, 1e-6)))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(repeats):  # rotate the order so no one always follows the same rival
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name].append(time_block(steps[name], number))
    return {name: (statistics.median(t for t, _ in values),
                   statistics.median(f for _, f in values)) for name, values in times.items()}


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:8.2f} ms"


def load() -> str:
    """The 1-minute load average: near the core count or above it, the times are noisy."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed (threads set by environment variables)"
    pools = [f"{p['internal_api']} {p.get('version')} ({p['num_threads']} threads)"
             for p in threadpool_info()]
    return ", ".join(pools) or "unknown"


def run(args: argparse.Namespace, threads: int) -> None:
    import numpy as np

    import nnkit

    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch
        except ImportError:
            use_torch = False
        else:
            torch.set_num_threads(threads)
    print(f"== {threads} thread{'s' if threads > 1 else ''}: nnkit {nnkit.__version__}, numpy "
          f"{np.__version__}, Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} cores")
    print(f"   BLAS: {blas_info()}; load average at the start: {load()}")
    print(f"   torch: {torch.__version__} ({torch.get_num_threads()} threads)" if use_torch
          else "   torch: not installed (or --no-torch); the PyTorch column is empty")
    header = (f"{'case':42} {'nnkit':>11} {'floor':>11} {'torch':>11} {'nnkit/floor':>11} "
              f"{'nnkit/torch':>11} {'faults/step':>12}")
    print(header)
    print("-" * len(header))
    selected = [c for c in CASES if c.name in args.cases]
    for case in selected:
        if args.quick:
            case = Case(case.name, case.layer, 2, case.channels, case.out_channels, case.size,
                        case.kernel, case.stride, case.padding)
        steps, check = build(case, use_torch)
        check()
        result = measure(steps, 1 if args.quick else args.repeats,
                         0.0 if args.quick else args.block)
        t_nn, f_nn = result["nnkit"]
        t_fl, _ = result["floor"]
        t_torch = result["torch"][0] if "torch" in result else None
        print(
            f"{case.describe():42} {fmt(t_nn)} {fmt(t_fl)} "
            f"{fmt(t_torch) if t_torch else '          -'} {t_nn / t_fl:11.2f} "
            f"{t_nn / t_torch if t_torch else float('nan'):11.2f} {f_nn:12.0f}"
        )
    print(f"load average at the end: {load()} (other processes on a shared machine add noise)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description="conv and pooling benchmark")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per implementation")
    parser.add_argument("--block", type=float, default=0.25, help="seconds per timed block")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2, one block")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(args, args.threads[0])
        return
    for threads in args.threads:
        env = {**os.environ, **{var: str(threads) for var in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
        command = [sys.executable, __file__, "--child", "--threads", str(threads),
                   "--repeats", str(args.repeats), "--block", str(args.block),
                   "--cases", *args.cases]
        command += ["--quick"] * args.quick + ["--no-torch"] * args.no_torch
        sys.stdout.flush()
        subprocess.run(command, env=env, check=True)


if __name__ == "__main__":
    main()
