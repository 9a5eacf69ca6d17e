"""Time forward + backpropagation of sequence layers: nnkit against a plain-NumPy floor and
PyTorch.

A step is the forward pass over a whole batch of sequences and the backward pass from a fixed
gradient of the output sequence, adding every parameter gradient (not the gradient of the
input data, which training never needs: nnkit's ``accumulate_grad``, as ``fit`` calls it, and
a PyTorch input without ``requires_grad``). float32, training mode, dropout 0.

Configurations: LSTM and GRU on batch 64, length 40, input 1 -> hidden 64 and input 32 ->
hidden 128, time-major; one TransformerEncoderLayer (post-norm, ReLU) on batch 32, length 64,
d_model 128, 4 heads, dim_feedforward 512, batch-first.

The floor is written out below: the same algorithm as nnkit's (one input projection,
gate-major activations with the sigmoid as a tanh, one loop over time, weight gradients in
one batched product each), with buffers allocated once, no checks and no objects. It is the
fastest this algorithm gets in NumPy; nnkit/floor is nnkit's overhead.

    python benchmarks/rnn.py                 # the full table (a minute or two)
    python benchmarks/rnn.py --quick         # a smoke run with tiny counts
    python benchmarks/rnn.py --no-torch      # without the PyTorch column
    python benchmarks/rnn.py --threads 1     # one BLAS and one PyTorch thread

``--threads`` sets OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS before NumPy and
PyTorch load (PyTorch gets the same count either way). On a 2-core machine shared with other
work, a second BLAS thread makes the small per-step products of a recurrence several times
slower, for the floor and for nnkit alike: waking a busy thread costs more than the product.

As in benchmarks/mlp.py the implementations take turns: each timed block runs one of them for
``--number`` steps, the order rotates every round, and the table reports the median block.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/mlp.py
if "--threads" in sys.argv[:-1]:  # before NumPy loads its BLAS
    for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_variable] = sys.argv[sys.argv.index("--threads") + 1]

import numpy as np

import nnkit

try:  # optional
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

Array = Any
Step = Callable[[], None]


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # "LSTM", "GRU" or "Transformer"
    batch: int
    length: int
    features: int  # input size, or d_model
    hidden: int  # hidden size, or dim_feedforward
    heads: int = 0


CONFIGS = [
    Config("lstm-1-64", "LSTM", 64, 40, 1, 64),
    Config("lstm-32-128", "LSTM", 64, 40, 32, 128),
    Config("gru-1-64", "GRU", 64, 40, 1, 64),
    Config("gru-32-128", "GRU", 64, 40, 32, 128),
    Config("encoder-128", "Transformer", 32, 64, 128, 512, heads=4),
]


# -- nnkit ---------------------------------------------------------------------------------


def make_nnkit(config: Config, rng: np.random.Generator) -> nnkit.Module:
    if config.kind == "Transformer":
        return nnkit.TransformerEncoderLayer(
            config.features, config.heads, config.hidden, dropout=0.0, batch_first=True, rng=rng
        )
    return getattr(nnkit, config.kind)(config.features, config.hidden, rng=rng)


def data(config: Config, rng: np.random.Generator) -> tuple[Array, Array]:
    if config.kind == "Transformer":
        shape = (config.batch, config.length, config.features)
        out_shape = shape
    else:
        shape = (config.length, config.batch, config.features)
        out_shape = (config.length, config.batch, config.hidden)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(out_shape, dtype=np.float32)
    return x, g


def nnkit_step(config: Config, model: nnkit.Module, x: Array, g: Array) -> Step:
    recurrent = config.kind != "Transformer"

    def step() -> None:
        model.zero_grad()
        model(x)
        if recurrent:
            model.accumulate_grad(g, None)
        else:
            model.accumulate_grad(g)

    return step


# -- the plain-NumPy floor: recurrent layers -------------------------------------------------


def floor_recurrent(
    config: Config, model: nnkit.Module, x: Array, g: Array
) -> tuple[Step, list[Array]]:
    """LSTM or GRU forward and BPTT on copies of the nnkit layer's weights (gate-major, as
    nnkit's cells); returns the step and the gradients it writes (in the order of the layer's
    parameters)."""
    w_ih, w_hh, b_ih, b_hh = (p.data.copy() for p in model.parameters())
    t_len, n, features = x.shape
    h = config.hidden
    lstm = config.kind == "LSTM"
    gates = 4 if lstm else 3
    f32 = np.float32
    grads = [np.zeros_like(p) for p in (w_ih, w_hh, b_ih, b_hh)]
    acts = np.empty((gates, t_len, n, h), f32)
    da = np.empty((gates, t_len, n, h), f32)
    hs = np.empty((t_len + 1, n, h), f32)
    tmp_g = np.empty((gates, n, h), f32)
    buf_tmp, tmp2, dh, dh_next, dh_other = (np.empty((n, h), f32) for _ in range(5))
    x2 = x.reshape(t_len * n, features)
    rows = t_len * n
    if lstm:
        order = [0, 1, 3, 2]  # i, f, o, g
        scale = np.array([0.5, 0.5, 0.5, 1.0], f32)[:, None, None]
        cs = np.empty((t_len + 1, n, h), f32)
        tcs = np.empty((t_len, n, h), f32)
        buf_dc = np.empty((n, h), f32)
        buf_sd = np.empty((3, n, h), f32)
    else:
        order = [0, 1, 2]
        scale = np.array([0.5, 0.5, 1.0], f32)[:, None, None]
        ghs = np.empty((t_len, 3, n, h), f32)
        da_h = np.empty((3, t_len, n, h), f32)
        buf_sd = np.empty((2, n, h), f32)

    def blocks(w: Array) -> Array:  # (G*H, K) -> (G, K, H), nnkit's order, sigmoid rows halved
        return np.ascontiguousarray((w.reshape(gates, h, -1)[order] * scale).transpose(0, 2, 1))

    def weight_grads(dx4: Array, dh4: Array) -> None:
        dxr, dhr = dx4.reshape(gates, rows, h), dh4.reshape(gates, rows, h)
        grads[0][...] = np.matmul(dxr.transpose(0, 2, 1), x2).reshape(gates * h, features)
        grads[1][...] = np.matmul(dhr.transpose(0, 2, 1), hs[:-1].reshape(rows, h)).reshape(
            gates * h, h
        )
        np.add.reduce(dxr, axis=1, out=grads[2].reshape(gates, h))
        np.add.reduce(dhr, axis=1, out=grads[3].reshape(gates, h))

    def lstm_step() -> None:
        tmp, dc, sd = buf_tmp, buf_dc, buf_sd  # locals: the loops update them in place
        wh = blocks(w_hh)
        np.matmul(x2, blocks(w_ih), out=acts.reshape(gates, rows, h))
        bias = (b_ih + b_hh).reshape(gates, h)[order] * scale[:, 0]
        acts.__iadd__(bias[:, None, None, :])
        hs[0] = 0
        cs[0] = 0
        for t in range(t_len):
            a = acts[:, t]
            np.matmul(hs[t], wh, out=tmp_g)
            a += tmp_g
            np.tanh(a, out=a)
            s = a[:3]
            s *= 0.5
            s += 0.5
            c = cs[t + 1]
            np.multiply(a[1], cs[t], out=c)
            np.multiply(a[0], a[3], out=tmp)
            c += tmp
            np.tanh(c, out=tcs[t])
            np.multiply(a[2], tcs[t], out=hs[t + 1])
        dh_next[...] = 0
        dc[...] = 0
        w4 = w_hh.reshape(gates, h, h)
        for t in range(t_len - 1, -1, -1):
            a, d, tc = acts[:, t], da[:, t], tcs[t]
            i, f, o, gg = a[0], a[1], a[2], a[3]
            np.add(g[t], dh_next, out=dh)
            s = a[:3]
            np.subtract(1, s, out=sd)
            sd *= s
            np.multiply(tc, tc, out=tmp)
            np.subtract(1, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            dc += tmp
            np.multiply(dh, tc, out=d[3])
            d[3] *= sd[2]
            np.multiply(dc, gg, out=d[0])
            d[0] *= sd[0]
            np.multiply(dc, cs[t], out=d[1])
            d[1] *= sd[1]
            np.multiply(gg, gg, out=tmp)
            np.subtract(1, tmp, out=tmp)
            tmp *= i
            np.multiply(dc, tmp, out=d[2])
            dc *= f
            if t:
                np.matmul(d, w4, out=tmp_g)
                np.add.reduce(tmp_g, axis=0, out=dh_next)
        weight_grads(da, da)

    def gru_step() -> None:
        tmp, sd = buf_tmp, buf_sd
        wh = blocks(w_hh)
        np.matmul(x2, blocks(w_ih), out=acts.reshape(gates, rows, h))
        bias = b_ih.reshape(3, h).copy()
        bias[:2] += b_hh.reshape(3, h)[:2]
        bias *= scale[:, 0]
        acts.__iadd__(bias[:, None, None, :])
        b_hn = b_hh[2 * h :]
        hs[0] = 0
        for t in range(t_len):
            a, gh = acts[:, t], ghs[t]
            np.matmul(hs[t], wh, out=gh)
            gh[2] += b_hn
            rz = a[:2]
            rz += gh[:2]
            np.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            n_t = a[2]
            np.multiply(a[0], gh[2], out=tmp)
            n_t += tmp
            np.tanh(n_t, out=n_t)
            cur = hs[t + 1]
            np.subtract(hs[t], n_t, out=cur)
            cur *= a[1]
            cur += n_t
        buffers = (dh_next, dh_other)
        dh_next[...] = 0
        current = dh_next
        w3 = w_hh.reshape(3, h, h)
        for step_index, t in enumerate(range(t_len - 1, -1, -1)):
            a, gx, gh = acts[:, t], da[:, t], da_h[:, t]
            r, z, n_t = a[0], a[1], a[2]
            np.add(g[t], current, out=dh)
            s = a[:2]
            np.subtract(1, s, out=sd)
            sd *= s
            np.multiply(n_t, n_t, out=tmp)
            np.subtract(1, tmp, out=tmp)
            np.subtract(1, z, out=tmp2)
            tmp *= tmp2
            np.multiply(dh, tmp, out=gx[2])
            np.multiply(gx[2], r, out=gh[2])
            np.multiply(gx[2], ghs[t, 2], out=gh[0])
            gh[0] *= sd[0]
            np.subtract(hs[t], n_t, out=gh[1])
            gh[1] *= dh
            gh[1] *= sd[1]
            if t:
                new = buffers[(step_index + 1) % 2]
                np.matmul(gh, w3, out=tmp_g)
                np.add.reduce(tmp_g, axis=0, out=new)
                np.multiply(dh, z, out=tmp)
                new += tmp
                current = new
        da[:2] = da_h[:2]
        weight_grads(da, da_h)

    return (lstm_step if lstm else gru_step), grads


# -- the plain-NumPy floor: one Transformer encoder layer -------------------------------------


def floor_encoder(
    config: Config, model: nnkit.Module, x: Array, g: Array
) -> tuple[Step, list[Array]]:
    """Post-norm encoder layer (ReLU, no dropout), forward and backward, batch-first; returns
    the step and the gradients it writes (in the order of the layer's parameters)."""
    params = {name: p.data.copy() for name, p in model.named_parameters()}
    grads = {name: np.zeros_like(v) for name, v in params.items()}
    n, length, e = x.shape
    heads = config.heads
    d = e // heads
    scale = np.float32(1 / math.sqrt(d))
    eps = np.float32(1e-5)
    x2 = x.reshape(n * length, e)
    g2 = g.reshape(n * length, e)

    def layer_norm(z: Array, w: Array, b: Array) -> tuple[Array, Array, Array]:
        mean = z.mean(axis=1, keepdims=True)
        zc = z - mean
        inv = 1 / np.sqrt((zc * zc).mean(axis=1, keepdims=True) + eps)
        zc *= inv
        return zc * w + b, zc, inv

    def layer_norm_backward(dy: Array, xhat: Array, inv: Array, name: str) -> Array:
        grads[f"{name}.weight"] += (dy * xhat).sum(axis=0)
        grads[f"{name}.bias"] += dy.sum(axis=0)
        gw = dy * params[f"{name}.weight"]
        dz = gw - gw.mean(axis=1, keepdims=True)
        dz -= xhat * (gw * xhat).mean(axis=1, keepdims=True)
        dz *= inv
        return dz

    def heads_of(z: Array) -> Array:
        return np.ascontiguousarray(z.reshape(n, length, heads, d).transpose(0, 2, 1, 3))

    def merged(z: Array) -> Array:
        return z.transpose(0, 2, 1, 3).reshape(n * length, e)

    def step() -> None:
        for grad in grads.values():
            grad[...] = 0
        w_in, b_in = params["self_attn.in_proj_weight"], params["self_attn.in_proj_bias"]
        w_o, b_o = params["self_attn.out_proj.weight"], params["self_attn.out_proj.bias"]
        w1, b1 = params["linear1.weight"], params["linear1.bias"]
        w2, b2 = params["linear2.weight"], params["linear2.bias"]
        qkv = x2 @ w_in.T
        qkv += b_in
        p5 = np.ascontiguousarray(qkv.reshape(n, length, 3, heads, d).transpose(2, 0, 3, 1, 4))
        q, k, v = p5[0] * scale, p5[1], p5[2]
        scores = q @ k.transpose(0, 1, 3, 2)
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        a = scores
        o2 = merged(a @ v)
        sa = o2 @ w_o.T
        sa += b_o
        sa += x2
        x1, xhat1, inv1 = layer_norm(sa, params["norm1.weight"], params["norm1.bias"])
        hid = x1 @ w1.T
        hid += b1
        np.maximum(hid, 0, out=hid)
        ff = hid @ w2.T
        ff += b2
        ff += x1
        _, xhat2, inv2 = layer_norm(ff, params["norm2.weight"], params["norm2.bias"])
        # backward
        d2 = layer_norm_backward(g2, xhat2, inv2, "norm2")
        grads["linear2.weight"] += d2.T @ hid
        grads["linear2.bias"] += d2.sum(axis=0)
        dh = d2 @ w2
        dh *= hid > 0
        grads["linear1.weight"] += dh.T @ x1
        grads["linear1.bias"] += dh.sum(axis=0)
        dx1 = dh @ w1
        dx1 += d2
        d1 = layer_norm_backward(dx1, xhat1, inv1, "norm1")
        grads["self_attn.out_proj.weight"] += d1.T @ o2
        grads["self_attn.out_proj.bias"] += d1.sum(axis=0)
        do = heads_of(d1 @ w_o)
        da = do @ v.transpose(0, 1, 3, 2)
        dv = a.transpose(0, 1, 3, 2) @ do
        da -= (da * a).sum(axis=-1, keepdims=True)
        da *= a
        dq = da @ k
        dq *= scale
        dk = da.transpose(0, 1, 3, 2) @ q
        dqkv = np.stack([merged(z) for z in (dq, dk, dv)], axis=1).reshape(n * length, 3 * e)
        grads["self_attn.in_proj_weight"] += dqkv.T @ x2
        grads["self_attn.in_proj_bias"] += dqkv.sum(axis=0)

    return step, list(grads.values())


# -- PyTorch ---------------------------------------------------------------------------------


def torch_step(config: Config, model: nnkit.Module, x: Array, g: Array) -> Step:
    assert torch is not None
    if config.kind == "Transformer":
        net = torch.nn.TransformerEncoderLayer(
            config.features, config.heads, config.hidden, dropout=0.0, batch_first=True
        )
    else:
        net = getattr(torch.nn, config.kind)(config.features, config.hidden)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    net.train()
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    recurrent = config.kind != "Transformer"

    def step() -> None:
        net.zero_grad()
        out = net(tx)
        (out[0] if recurrent else out).backward(tg)

    return step


# -- timing ----------------------------------------------------------------------------------


def time_block(step: Step, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        step()
    return (time.perf_counter() - start) / number


def measure(steps: dict[str, Step], number: int, repeats: int) -> dict[str, float]:
    for step in steps.values():  # warm-up
        time_block(step, max(1, number // 3))
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name].append(time_block(steps[name], number))
    return {name: statistics.median(values) for name, values in times.items()}


def floor_matches(config: Config, model: nnkit.Module, x: Array, g: Array) -> float:
    """The largest relative difference between the floor's parameter gradients and nnkit's:
    the floor must compute the same thing."""
    make_floor = floor_encoder if config.kind == "Transformer" else floor_recurrent
    step, floor_grads = make_floor(config, model, x, g)
    step()
    nnkit_step(config, model, x, g)()
    return max(
        float(np.abs(a - p.grad).max() / (np.abs(p.grad).max() + 1e-12))
        for a, p in zip(floor_grads, model.parameters(), strict=True)
    )


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms"


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(
            f"{p['internal_api']} {p.get('version')} ({p['num_threads']} threads)"
            for p in threadpool_info()
        )
    except ImportError:
        return "unknown (install threadpoolctl)"


def main() -> None:
    parser = argparse.ArgumentParser(description="RNN and Transformer benchmark")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per implementation")
    parser.add_argument("--number", type=int, default=10, help="steps per timed block")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--configs", nargs="*", default=[c.name for c in CONFIGS])
    parser.add_argument("--threads", type=int, help="BLAS and PyTorch threads (default: theirs)")
    args = parser.parse_args()
    repeats, number = (2, 1) if args.quick else (args.repeats, args.number)
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
    header = f"{'config':12} " + " ".join(f"{c:>11}" for c in columns)
    print(header)
    print("-" * len(header))
    for config in (c for c in CONFIGS if c.name in args.configs):
        rng = np.random.default_rng(0)
        model = make_nnkit(config, rng)
        x, g = data(config, rng)
        make_floor = floor_encoder if config.kind == "Transformer" else floor_recurrent
        difference = floor_matches(config, model, x, g)
        if difference > 1e-4:
            raise RuntimeError(
                f"{config.name}: the floor's gradients differ from nnkit's by {difference:.2g}"
            )
        steps = {"floor": make_floor(config, model, x, g)[0]}
        if use_torch:
            steps["torch"] = torch_step(config, model, x, g)
        steps["nnkit"] = nnkit_step(config, model, x, g)
        result = measure(steps, number, repeats)
        t_torch = result.get("torch")
        print(
            f"{config.name:12} {fmt(result['nnkit'])} {fmt(result['floor'])} "
            f"{fmt(t_torch) if t_torch else '          -'} "
            f"{result['nnkit'] / result['floor']:11.2f} "
            f"{result['nnkit'] / t_torch if t_torch else float('nan'):11.2f}"
        )


if __name__ == "__main__":
    main()
