"""Time one float32 training step of an MLP: nnkit against a plain-NumPy floor and PyTorch.

A step is forward, loss, backward and an optimizer step. The floor is a hand-written NumPy
step with the fewest operations (no checks, no abstractions): the fastest anything built on
NumPy can be. PyTorch (CPU, eager, same thread count) runs when it is installed.

    python benchmarks/mlp.py                    # the full table (about a minute)
    python benchmarks/mlp.py --quick            # a smoke run with tiny counts
    python benchmarks/mlp.py --profile small    # where nnkit's step spends its time

The three implementations alternate inside one run: each timed block runs one of them for
``--number`` steps, blocks rotate between them ``--repeats`` times after a warm-up, and the
table reports the median block. Ratios are nnkit/floor and nnkit/PyTorch (below 1: nnkit is
faster). Peak memory is measured with tracemalloc (NumPy reports its buffers to it) for
step of the large configuration, counting everything the step needs (weights, gradients,
optimizer state, temporaries) but not the data. A second table times SGD with momentum and
Adam against plain SGD on the large configuration.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Two thread pools (OpenBLAS under NumPy, OpenMP under PyTorch) share two cores here; with
# OpenMP's default busy-waiting, whichever runs right after PyTorch loses cores to its spinning
# threads. Passive waiting is faster for PyTorch too on this machine. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

import nnkit
from nnkit.optim import SGD, Adam

try:  # optional
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

Array = Any
LR = 0.01


@dataclass(frozen=True)
class Config:
    name: str
    sizes: tuple[int, ...]
    activation: str  # "sigmoid" (after every layer, MSE) or "relu" (hidden, cross-entropy)
    batch: int


CONFIGS = [
    Config("tiny", (2, 3, 2, 1), "sigmoid", 4),
    Config("small", (64, 128, 10), "relu", 32),
    Config("mid", (784, 256, 128, 10), "relu", 128),
    Config("large", (784, 1024, 1024, 10), "relu", 256),
]


def make_data(config: Config, rng: np.random.Generator) -> tuple[Array, Array]:
    x = rng.standard_normal((config.batch, config.sizes[0]), dtype=np.float32)
    if config.activation == "sigmoid":
        y = rng.integers(0, 2, size=(config.batch, 1)).astype(np.float32)
    else:
        y = rng.integers(0, config.sizes[-1], size=config.batch)
    return x, y


# -- nnkit ---------------------------------------------------------------------------------


def nnkit_model(config: Config, rng: np.random.Generator) -> nnkit.Sequential:
    layers: list[nnkit.Module] = []
    pairs = list(zip(config.sizes[:-1], config.sizes[1:], strict=True))
    for i, (n_in, n_out) in enumerate(pairs):
        layers.append(nnkit.Dense(n_in, n_out, rng=rng))
        if config.activation == "sigmoid":
            layers.append(nnkit.Sigmoid())
        elif i < len(pairs) - 1:
            layers.append(nnkit.ReLU())
    return nnkit.Sequential(*layers)


def nnkit_step(
    config: Config, model: nnkit.Sequential, optimizer: Any, x: Array, y: Array
) -> Callable[[], None]:
    loss_fn = nnkit.MSELoss() if config.activation == "sigmoid" else nnkit.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(model(x), y)
        model.accumulate_grad(loss_fn.backward())  # what fit() does: no dL/dx for the data
        optimizer.step()

    return step


# -- the plain-NumPy floor -------------------------------------------------------------------


def floor_update(rule: str, params: list[Array]) -> Callable[[int, Array], None]:
    """``update(i, grad)``: the fewest in-place NumPy operations of an optimizer rule."""
    if rule == "sgd":

        def sgd(i: int, grad: Array) -> None:
            params[i] -= LR * grad

        return sgd
    bufs = [np.zeros_like(p) for p in params]
    if rule == "momentum":

        def momentum(i: int, grad: Array) -> None:
            bufs[i] *= 0.9
            bufs[i] += grad
            params[i] -= LR * bufs[i]

        return momentum
    squares = [np.zeros_like(p) for p in params]
    work = np.empty(max(p.size for p in params), dtype=np.float32)
    t = [0] * len(params)
    lr, beta1, beta2, eps = 1e-4, 0.9, 0.999, 1e-8

    def adam(i: int, grad: Array) -> None:
        t[i] += 1
        tmp = work[: grad.size].reshape(grad.shape)
        m, v = bufs[i], squares[i]
        m *= beta1
        np.multiply(grad, 1 - beta1, out=tmp)
        m += tmp
        v *= beta2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp *= 1 / math.sqrt(1 - beta2 ** t[i])
        tmp += eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr / (1 - beta1 ** t[i])
        params[i] -= tmp

    return adam


def floor_step(
    config: Config, model: nnkit.Sequential, x: Array, y: Array, rule: str = "sgd"
) -> Callable[[], None]:
    """A hand-written step on copies of the nnkit model's initial weights."""
    weights = [p.data.copy() for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p.data.copy() for name, p in model.named_parameters() if name.endswith("bias")]
    update_weight = floor_update(rule, weights)
    update_bias = floor_update(rule, biases)
    last = len(weights) - 1
    sigmoid = config.activation == "sigmoid"
    n = x.shape[0]
    one_hot = None if sigmoid else np.eye(config.sizes[-1], dtype=np.float32)[y]
    scale = np.float32(2.0 / y.size) if sigmoid else np.float32(1.0 / n)

    def step() -> None:
        hs = [x]
        h = x
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = h @ w
            h += b
            if sigmoid:
                h = 1 / (1 + np.exp(-h))
            elif i < last:
                np.maximum(h, 0, out=h)
            hs.append(h)
        if sigmoid:  # MSE: the loss value, then its gradient
            d = h - y
            float((d * d).mean())
            g = d * scale
        else:  # softmax cross-entropy from logits
            z = h - h.max(axis=1, keepdims=True)
            e = np.exp(z)
            s = e.sum(axis=1, keepdims=True)
            float(np.log(s).sum() - (z * one_hot).sum()) / n
            e /= s
            g = (e - one_hot) * scale
        for i in range(last, -1, -1):
            if sigmoid:
                g = g * hs[i + 1] * (1 - hs[i + 1])
            elif i < last:
                g *= hs[i + 1] > 0
            gw = hs[i].T @ g
            gb = g.sum(axis=0)
            if i:
                g = g @ weights[i].T
            update_weight(i, gw)
            update_bias(i, gb)

    return step


# -- PyTorch ---------------------------------------------------------------------------------


def torch_step(config: Config, model: nnkit.Sequential, x: Array, y: Array) -> Callable[[], None]:
    assert torch is not None
    layers: list[Any] = []
    for layer in model:
        if isinstance(layer, nnkit.Dense):
            linear = torch.nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weight.data.T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.bias.data.copy()))  # type: ignore[union-attr]
            layers.append(linear)
        else:
            layers.append(torch.nn.Sigmoid() if config.activation == "sigmoid" else torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    loss_fn = torch.nn.MSELoss() if config.activation == "sigmoid" else torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(net(tx), ty).backward()
        optimizer.step()

    return step


# -- timing ----------------------------------------------------------------------------------


def time_block(step: Callable[[], None], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - start) / number


def measure(steps: dict[str, Callable[[], None]], number: int, repeats: int) -> dict[str, float]:
    for step in steps.values():  # warm-up
        time_block(step, max(1, number // 4))
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(repeats):  # rotate the order so no one always follows the same rival
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name].append(time_block(steps[name], number))
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory(make_step: Callable[[], Callable[[], None]]) -> int:
    """Peak traced bytes from building a step (weights, gradients, optimizer state, scratch)
    through two training steps: persistent and transient memory together."""
    tracemalloc.start()
    step = make_step()
    step()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        pools = [f"{p['internal_api']} {p.get('version')} ({p['num_threads']} threads)"
                 for p in threadpool_info()]
        return ", ".join(pools) or "unknown"
    except ImportError:
        config = np.show_config(mode="dicts")  # type: ignore[func-returns-value]
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} (thread count: install threadpoolctl)"


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:9.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description="MLP training-step benchmark")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per implementation")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--configs", nargs="*", default=[c.name for c in CONFIGS])
    parser.add_argument(
        "--profile", choices=[c.name for c in CONFIGS],
        help="profile nnkit's step on this configuration with pyinstrument",
    )
    args = parser.parse_args()
    if args.profile:
        profile(next(c for c in CONFIGS if c.name == args.profile))
        return
    repeats = 2 if args.quick else args.repeats
    use_torch = torch is not None and not args.no_torch
    if use_torch:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))

    print(f"nnkit {nnkit.__version__}, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; BLAS: {blas_info()}")
    if use_torch:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    else:
        print("torch: not installed (or --no-torch); the PyTorch column is empty")
    print()
    columns = ("nnkit", "floor", "torch", "nnkit/floor", "nnkit/torch")
    header = f"{'config':6} " + " ".join(f"{c:>12}" for c in columns)
    print(header)
    print("-" * len(header))
    selected = [c for c in CONFIGS if c.name in args.configs]
    for config in selected:
        rng = np.random.default_rng(0)
        x, y = make_data(config, rng)
        model = nnkit_model(config, rng)
        steps = {"floor": floor_step(config, model, x, y)}
        if use_torch:
            steps["torch"] = torch_step(config, model, x, y)
        steps["nnkit"] = nnkit_step(config, model, SGD(model.parameters(), lr=LR), x, y)
        size = sum(config.sizes[i] * config.sizes[i + 1] for i in range(len(config.sizes) - 1))
        number = 3 if args.quick else max(5, min(2000, int(4e7 / (size * config.batch + 4e4))))
        result = measure(steps, number, repeats)
        t_torch = result.get("torch")
        print(
            f"{config.name:6} {fmt(result['nnkit'])} {fmt(result['floor'])} "
            f"{fmt(t_torch) if t_torch else '           -'} "
            f"{result['nnkit'] / result['floor']:12.2f} "
            f"{result['nnkit'] / t_torch if t_torch else float('nan'):12.2f}"
        )
        if config.name == "large":
            report_large(config, model, x, y, number, repeats)


def profile(config: Config, seconds: float = 3.0) -> None:
    """Print where nnkit's training step spends its time (needs pyinstrument, a dev extra)."""
    from pyinstrument import Profiler

    rng = np.random.default_rng(0)
    x, y = make_data(config, rng)
    model = nnkit_model(config, rng)
    step = nnkit_step(config, model, SGD(model.parameters(), lr=LR), x, y)
    step()
    profiler = Profiler(interval=0.0001)
    profiler.start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step()
    profiler.stop()
    print(profiler.output_text(show_all=False))


def report_large(
    config: Config, model: nnkit.Sequential, x: Array, y: Array, number: int, repeats: int
) -> None:
    """Peak memory, and the cost of each optimizer against its own plain-NumPy floor."""

    def make_nnkit() -> Callable[[], None]:
        fresh = nnkit_model(config, np.random.default_rng(0))
        return nnkit_step(config, fresh, SGD(fresh.parameters(), lr=LR), x, y)

    mem_nnkit = peak_memory(make_nnkit)
    mem_floor = peak_memory(lambda: floor_step(config, model, x, y))
    print(
        f"\npeak memory of large (model, gradients, optimizer and two SGD steps; data "
        f"excluded): nnkit {mem_nnkit / 2**20:.1f} MiB, floor {mem_floor / 2**20:.1f} MiB, "
        f"ratio {mem_nnkit / mem_floor:.2f}"
    )
    optimizers: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "SGD": ("sgd", lambda params: SGD(params, lr=LR)),
        "SGD(momentum=0.9)": ("momentum", lambda params: SGD(params, lr=LR, momentum=0.9)),
        "Adam": ("adam", lambda params: Adam(params, lr=1e-4)),
    }
    steps = {}
    for name, (rule, make) in optimizers.items():
        fresh = nnkit_model(config, np.random.default_rng(0))
        steps[name] = nnkit_step(config, fresh, make(fresh.parameters()), x, y)
        steps[f"floor {name}"] = floor_step(config, fresh, x, y, rule)
    times = measure(steps, number, repeats)
    print("\nwhole large training step by optimizer (ratio to the same implementation's SGD):")
    print(f"  {'optimizer':18} {'nnkit':>12} {'ratio':>7} {'floor':>12} {'ratio':>7}")
    for name in optimizers:
        nn, fl = times[name], times[f"floor {name}"]
        print(
            f"  {name:18} {fmt(nn)} {nn / times['SGD']:7.3f} {fmt(fl)} "
            f"{fl / times['floor SGD']:7.3f}"
        )

if __name__ == "__main__":
    main()
