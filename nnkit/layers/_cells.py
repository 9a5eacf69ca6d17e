"""The per-step math of the recurrent cells, for one layer and one direction of a sequence.

``nnkit.layers.recurrent`` states the equations; this file is where NumPy runs them. The
tricks, all in one place:

- **One input projection for all time steps**: ``x.reshape(T*N, I) @ W_ih.T`` into a kept
  workspace, which each step then turns into its gate activations in place.
- **Gate-major activations** (LSTM and GRU): gate k of step t is the contiguous block
  ``acts[k, t]`` of shape (N, H). The weights are used as (gates, K, H) stacks, so each
  product is a batched matmul (one small GEMM per gate) that writes the gates already
  apart. Elementwise work on a contiguous (N, H) block costs about a third of the same work
  on the column slice ``a[:, k*H:(k+1)*H]`` of an (N, G*H) array. This took a forward and
  backward of a 64-unit LSTM on 64 sequences of 40 steps from 6.3 to 5.2 ms, and of the GRU
  from 5.8 to 4.4 ms (one BLAS thread).
- **Sigmoid as a tanh**: ``sigmoid(a) = 0.5 + 0.5 * tanh(a / 2)``. It never overflows, and
  NumPy's tanh is about 30 times faster than the ``exp(-softplus(-a))`` of
  ``nnkit.functional.sigmoid``. That function's extra care buys relative accuracy in the far
  tail, which a gate does not need: the absolute error here is below one float epsilon. The
  halving is folded into the weights: the sigmoid gates' blocks of ``W_ih``, ``W_hh`` and the
  biases are scaled by 0.5 (exactly, in binary) once per forward, so one ``tanh`` call
  covers every gate of a step.
- **LSTM gates regrouped** inside: the activations are kept in the order i, f, o, g, so the
  three sigmoid gates are one block. Parameters, gradients and every array a user sees keep
  PyTorch's i, f, g, o.
- **Workspaces**: the gate activations, the LSTM cell states, the GRU hidden projections and
  the per-step temporaries are kept between calls and reused while their shape repeats
  (multi-MB buffers are otherwise handed back to the kernel and faulted in again every step).
  Only arrays a user never receives live there. The hidden states, of which the output is a
  view, are allocated by every forward.
- **Weight gradients of all steps in one product** after the BPTT loop, per weight:
  ``dW_ih += da.T @ x`` over all T*N rows (per gate for the gate-major cells), and likewise
  for ``W_hh``.

Measured and not kept: the gate derivatives for all steps at once before the BPTT loop,
and a feature-major (H, N) layout. Both were slower, because the bulk passes and transposes
they need leave the cache, and the per-step blocks do not.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from nnkit.layers._windows import Workspace
from nnkit.module import Array
from nnkit.parameter import Parameter

Weights = tuple[Parameter, Parameter, Parameter | None, Parameter | None]
"""weight_ih, weight_hh, bias_ih, bias_hh of one layer and direction."""


class Direction:
    """The cache of one layer and direction from one forward.

    ``hs`` has T + 1 hidden states in time order: for the forward direction ``hs[0]`` is the
    initial state and ``hs[t + 1]`` the state after step t; for the reverse direction
    ``hs[T]`` is the initial state and ``hs[t]`` the state after it has read step t.
    """

    __slots__ = ("acts", "extra", "hs", "reverse", "x")

    def __init__(
        self, x: Array, hs: Array, acts: Array, extra: tuple[Array, ...], reverse: bool
    ) -> None:
        self.x = x
        self.hs = hs
        self.acts = acts
        self.extra = extra
        self.reverse = reverse

    def outputs(self) -> Array:
        """The hidden state at every time step, (T, N, H)."""
        return self.hs[:-1] if self.reverse else self.hs[1:]

    def previous(self) -> Array:
        """The hidden state each step started from, (T, N, H), in time order."""
        return self.hs[1:] if self.reverse else self.hs[:-1]

    def last_h(self) -> Array:
        """The final hidden state, (N, H)."""
        h: Array = self.hs[0] if self.reverse else self.hs[-1]
        return h

    def last_c(self) -> Array:
        """The final cell state of an LSTM, (N, H)."""
        cs = self.extra[0]
        c: Array = cs[0] if self.reverse else cs[-1]
        return c


def _order(t_count: int, reverse: bool) -> range:
    return range(t_count - 1, -1, -1) if reverse else range(t_count)


class Cell:
    """One layer and direction of a recurrent layer: ``forward`` over a whole sequence, and
    ``backward``, which runs BPTT, adds the parameter gradients and returns dx, dh0, dc0."""

    gates = 1

    def __init__(self, weights: Weights, workspace: Workspace, key: int) -> None:
        self.w_ih, self.w_hh, self.b_ih, self.b_hh = weights
        self.ws = workspace
        self.key = key
        self.hidden = self.w_hh.shape[1]

    # -- shared steps ---------------------------------------------------------------------
    def _project(self, x: Array, w_ih_t: Array, bias: Array | None) -> Array:
        """``x @ W.T + b`` for all steps at once, into this cell's (T, N, G) workspace."""
        t, n, features = x.shape
        acts = self.ws.empty(f"{self.key}.acts", (t, n, w_ih_t.shape[1]), x.dtype)
        np.matmul(x.reshape(t * n, features), w_ih_t, out=acts.reshape(t * n, acts.shape[2]))
        if bias is not None:
            acts += bias
        return acts

    def _states(self, x: Array, h0: Array | None, reverse: bool) -> Array:
        t, n, _ = x.shape
        hs = np.empty((t + 1, n, self.hidden), x.dtype)
        start = t if reverse else 0
        if h0 is None:
            hs[start] = 0
        else:
            hs[start] = h0
        return hs

    def _add_grads(
        self, d: Direction, da_x: Array, da_h: Array, need_dx: bool, same: bool
    ) -> Array | None:
        """Add the weight and bias gradients of every step; return dx (T, N, I) if wanted.

        ``da_x`` is the gradient of the input projection's pre-activations, ``da_h`` that of
        the hidden projection's (the same array for RNN and LSTM, ``same``).
        """
        t, n, features = d.x.shape
        g = da_x.shape[2]
        dx2 = da_x.reshape(t * n, g)
        dh2 = da_h.reshape(t * n, g)
        self.w_ih.add_grad_matmul(dx2.T, d.x.reshape(t * n, features))
        self.w_hh.add_grad_matmul(dh2.T, d.previous().reshape(t * n, self.hidden))
        if self.b_ih is not None and self.b_hh is not None:
            if same:
                total = np.add.reduce(dx2, axis=0)
                self.b_ih.add_grad(total)
                self.b_hh.add_grad(total)
            else:
                self.b_ih.add_grad_sum(dx2, axis=0)
                self.b_hh.add_grad_sum(dh2, axis=0)
        if not need_dx:
            return None
        dx: Array = (dx2 @ self.w_ih.data).reshape(t, n, features)
        return dx

    def _add_gate_grads(
        self, d: Direction, da_x: Array, da_h: Array, need_dx: bool, same: bool
    ) -> Array | None:
        """:meth:`_add_grads` for gate-major gradients (G, T, N, H), gates in PyTorch's order:
        one batched product per weight (a product per gate), and dx as their sum."""
        gates, t_count, n, h = da_x.shape
        rows, features = t_count * n, d.x.shape[2]
        dx_rows, dh_rows = da_x.reshape(gates, rows, h), da_h.reshape(gates, rows, h)
        x_rows = d.x.reshape(rows, features)
        self.w_ih.add_grad(
            np.matmul(dx_rows.transpose(0, 2, 1), x_rows).reshape(gates * h, features)
        )
        previous = d.previous().reshape(rows, h)
        self.w_hh.add_grad(np.matmul(dh_rows.transpose(0, 2, 1), previous).reshape(gates * h, h))
        if self.b_ih is not None and self.b_hh is not None:
            total = np.add.reduce(dx_rows, axis=1).reshape(gates * h)
            self.b_ih.add_grad(total)
            self.b_hh.add_grad(total if same else np.add.reduce(dh_rows, axis=1).reshape(-1))
        if not need_dx:
            return None
        per_gate = np.matmul(dx_rows, self.w_ih.data.reshape(gates, h, features))
        dx: Array = np.add.reduce(per_gate, axis=0).reshape(t_count, n, features)
        return dx

    def _start(self, grad: Array | None, n: int, dtype: np.dtype[Any], name: str) -> Array:
        """A buffer holding the incoming gradient of the final state (zeros for None)."""
        buf = self.ws.empty(name, (n, self.hidden), dtype)
        if grad is None:
            buf[...] = 0
        else:
            np.copyto(buf, grad)
        return buf

    # -- the interface ----------------------------------------------------------------------
    def forward(
        self, x: Array, h0: Array | None, c0: Array | None, reverse: bool
    ) -> Direction:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(
        self,
        d: Direction,
        d_hs: Array | None,
        d_h_last: Array | None,
        d_c_last: Array | None,
        need_dx: bool,
        need_dh0: bool,
    ) -> tuple[Array | None, Array | None, Array | None]:  # pragma: no cover - abstract
        raise NotImplementedError


class TanhCell(Cell):
    """``h_t = tanh(x_t W_ih.T + b_ih + h_{t-1} W_hh.T + b_hh)``."""

    def _activate(self, h: Array) -> None:
        np.tanh(h, out=h)

    def _derivative(self, h: Array, out: Array) -> None:
        """``d *= act'(h)`` for the cached output h (``1 - h^2``)."""
        tmp = self.ws.empty("tmp_h", h.shape, h.dtype)
        np.multiply(h, h, out=tmp)
        np.subtract(1, tmp, out=tmp)
        out *= tmp

    def forward(self, x: Array, h0: Array | None, c0: Array | None, reverse: bool) -> Direction:
        bias = None
        if self.b_ih is not None and self.b_hh is not None:
            bias = self.b_ih.data + self.b_hh.data
        xp = self._project(x, self.w_ih.data.T, bias)
        hs = self._states(x, h0, reverse)
        w_hh_t = np.ascontiguousarray(self.w_hh.data.T)
        matmul, activate = np.matmul, self._activate
        for t in _order(x.shape[0], reverse):
            prev, cur = (hs[t + 1], hs[t]) if reverse else (hs[t], hs[t + 1])
            matmul(prev, w_hh_t, out=cur)
            cur += xp[t]
            activate(cur)
        return Direction(x, hs, xp, (), reverse)

    def backward(
        self,
        d: Direction,
        d_hs: Array | None,
        d_h_last: Array | None,
        d_c_last: Array | None,
        need_dx: bool,
        need_dh0: bool,
    ) -> tuple[Array | None, Array | None, Array | None]:
        t_count, n, _ = d.x.shape
        dtype = d.x.dtype
        da = self.ws.empty("da", (t_count, n, self.hidden), dtype)
        dh_next = self._start(d_h_last, n, dtype, "dh_next")
        outputs, w_hh = d.outputs(), self.w_hh.data
        order = _order(t_count, not d.reverse)  # BPTT runs against the direction of time
        last = order[-1] if len(order) else -1
        for t in order:
            g = da[t]
            if d_hs is None:
                np.copyto(g, dh_next)
            else:
                np.add(d_hs[t], dh_next, out=g)
            self._derivative(outputs[t], g)
            if t != last or need_dh0:
                np.matmul(g, w_hh, out=dh_next)
        dx = self._add_grads(d, da, da, need_dx, same=True)
        return dx, (dh_next.copy() if need_dh0 else None), None


class ReLUCell(TanhCell):
    """``h_t = relu(x_t W_ih.T + b_ih + h_{t-1} W_hh.T + b_hh)``."""

    def _activate(self, h: Array) -> None:
        np.maximum(h, 0, out=h)

    def _derivative(self, h: Array, out: Array) -> None:
        dead = self.ws.empty("dead", h.shape, np.dtype(bool))
        np.less_equal(h, 0, out=dead)
        np.copyto(out, 0, where=dead)


class LSTMCell(Cell):
    """The LSTM cell, gate-major: gate k's activations at step t are the contiguous block
    ``acts[k, t]`` (N, H), kept in the order i, f, o, g so that the sigmoid gates are
    ``acts[:3]``. The gradients ``da[k, t]`` keep PyTorch's order i, f, g, o."""

    gates = 4
    _ORDER: ClassVar[list[int]] = [0, 1, 3, 2]  # acts block k holds PyTorch's gate _ORDER[k]

    def _blocks(self, weight: Array) -> Array:
        """(4H, K) in PyTorch's order -> (4, K, H): each gate's W.T in the order i, f, o, g,
        the sigmoid gates halved."""
        h = self.hidden
        blocks = weight.reshape(4, h, -1)[self._ORDER]
        blocks[:3] *= 0.5
        return np.ascontiguousarray(blocks.transpose(0, 2, 1))

    def forward(self, x: Array, h0: Array | None, c0: Array | None, reverse: bool) -> Direction:
        t_count, n, features = x.shape
        h = self.hidden
        dtype = x.dtype
        w_hh4 = self._blocks(self.w_hh.data)  # (4, H, H)
        acts = self.ws.empty(f"{self.key}.acts", (4, t_count, n, h), dtype)
        np.matmul(
            x.reshape(t_count * n, features),
            self._blocks(self.w_ih.data),
            out=acts.reshape(4, t_count * n, h),
        )
        if self.b_ih is not None and self.b_hh is not None:
            bias = (self.b_ih.data + self.b_hh.data).reshape(4, h)[self._ORDER]
            bias[:3] *= 0.5
            acts += bias[:, None, None, :]
        hs = self._states(x, h0, reverse)
        cs = self.ws.empty(f"{self.key}.c", (t_count + 1, n, h), dtype)
        tcs = self.ws.empty(f"{self.key}.tanh_c", (t_count, n, h), dtype)
        start = t_count if reverse else 0
        if c0 is None:
            cs[start] = 0
        else:
            cs[start] = c0
        tmp = self.ws.empty("tmp_4", (4, n, h), dtype)
        tmp_h = self.ws.empty("tmp_h", (n, h), dtype)
        matmul, tanh, multiply = np.matmul, np.tanh, np.multiply
        for t in _order(t_count, reverse):
            prev, cur = (t + 1, t) if reverse else (t, t + 1)
            a = acts[:, t]
            matmul(hs[prev], w_hh4, out=tmp)
            a += tmp
            tanh(a, out=a)
            s = a[:3]
            s *= 0.5
            s += 0.5  # i, f, o = sigmoid; g = tanh
            c = cs[cur]
            multiply(a[1], cs[prev], out=c)
            multiply(a[0], a[3], out=tmp_h)
            c += tmp_h
            tanh(c, out=tcs[t])
            multiply(a[2], tcs[t], out=hs[cur])
        return Direction(x, hs, acts, (cs, tcs), reverse)

    def backward(
        self,
        d: Direction,
        d_hs: Array | None,
        d_h_last: Array | None,
        d_c_last: Array | None,
        need_dx: bool,
        need_dh0: bool,
    ) -> tuple[Array | None, Array | None, Array | None]:
        t_count, n, _ = d.x.shape
        h = self.hidden
        dtype = d.x.dtype
        cs, tcs = d.extra
        da = self.ws.empty("da_4", (4, t_count, n, h), dtype)  # PyTorch's order i, f, g, o
        dh_next = self._start(d_h_last, n, dtype, "dh_next")
        dc = self._start(d_c_last, n, dtype, "dc")
        dh_sum = self.ws.empty("dh", (n, h), dtype)
        sd = self.ws.empty("sig_d", (3, n, h), dtype)
        tmp = self.ws.empty("tmp_h", (n, h), dtype)
        tmp4 = self.ws.empty("tmp_4", (4, n, h), dtype)
        w_hh4 = self.w_hh.data.reshape(4, h, h)  # gate k: dh += da_k @ W_hh[k]
        multiply, subtract = np.multiply, np.subtract
        order = _order(t_count, not d.reverse)  # BPTT runs against the direction of time
        last = order[-1] if len(order) else -1
        for t in order:
            prev = t + 1 if d.reverse else t
            a, g_t, tc = d.acts[:, t], da[:, t], tcs[t]
            i, f, o, g = a[0], a[1], a[2], a[3]
            if d_hs is None:
                dh = dh_next
            else:
                np.add(d_hs[t], dh_next, out=dh_sum)
                dh = dh_sum
            s = a[:3]
            subtract(1, s, out=sd)
            sd *= s  # sigmoid'(pre) = s (1 - s) for i, f, o
            multiply(tc, tc, out=tmp)
            subtract(1, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            dc += tmp  # dc_t = dc from step t+1 + dh * o * (1 - tanh(c)^2)
            d_o = g_t[3]
            multiply(dh, tc, out=d_o)
            d_o *= sd[2]
            d_i = g_t[0]
            multiply(dc, g, out=d_i)
            d_i *= sd[0]
            d_f = g_t[1]
            multiply(dc, cs[prev], out=d_f)
            d_f *= sd[1]
            multiply(g, g, out=tmp)
            subtract(1, tmp, out=tmp)
            tmp *= i
            multiply(dc, tmp, out=g_t[2])
            dc *= f  # dc_{t-1}
            if t != last or need_dh0:
                np.matmul(g_t, w_hh4, out=tmp4)
                np.add.reduce(tmp4, axis=0, out=dh_next)  # dh_{t-1} = sum_k da_k @ W_hh[k]
        dx = self._add_gate_grads(d, da, da, need_dx, same=True)
        if not need_dh0:
            return dx, None, None
        return dx, dh_next.copy(), dc.copy()


class GRUCell(Cell):
    """The GRU cell, gate-major as the LSTM's: gate k's activations at step t are the block
    ``acts[k, t]`` (N, H), in PyTorch's order r, z, n (the sigmoid gates are ``acts[:2]``)."""

    gates = 3

    def forward(self, x: Array, h0: Array | None, c0: Array | None, reverse: bool) -> Direction:
        t_count, n, features = x.shape
        h = self.hidden
        dtype = x.dtype
        scale = np.array([0.5, 0.5, 1.0], dtype)[:, None, None]  # r, z halved
        w_ih3 = self.w_ih.data.reshape(3, h, features) * scale
        w_hh3 = np.ascontiguousarray((self.w_hh.data.reshape(3, h, h) * scale).transpose(0, 2, 1))
        acts = self.ws.empty(f"{self.key}.acts", (3, t_count, n, h), dtype)
        np.matmul(
            x.reshape(t_count * n, features),
            w_ih3.transpose(0, 2, 1),
            out=acts.reshape(3, t_count * n, h),
        )
        b_hn = None
        if self.b_ih is not None and self.b_hh is not None:
            bias = self.b_ih.data.reshape(3, h).copy()
            bias[:2] += self.b_hh.data.reshape(3, h)[:2]  # b_hr and b_hz fold into the projection
            bias *= scale[:, 0]
            acts += bias[:, None, None, :]
            b_hn = self.b_hh.data[2 * h :]
        hs = self._states(x, h0, reverse)
        ghs = self.ws.empty(
            f"{self.key}.gh", (t_count, 3, n, h), dtype
        )  # ghs[t, 2] = W_hn h + b_hn
        tmp = self.ws.empty("tmp_h", (n, h), dtype)
        matmul, tanh, multiply = np.matmul, np.tanh, np.multiply
        for t in _order(t_count, reverse):
            prev, cur = (hs[t + 1], hs[t]) if reverse else (hs[t], hs[t + 1])
            a, gh = acts[:, t], ghs[t]
            matmul(prev, w_hh3, out=gh)
            gh_n = gh[2]
            if b_hn is not None:
                gh_n += b_hn
            rz = a[:2]
            rz += gh[:2]
            tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5  # r, z = sigmoid
            n_t = a[2]
            multiply(a[0], gh_n, out=tmp)
            n_t += tmp
            tanh(n_t, out=n_t)
            np.subtract(prev, n_t, out=cur)
            cur *= a[1]
            cur += n_t  # h = n + z (h_prev - n)
        return Direction(x, hs, acts, (ghs,), reverse)

    def backward(
        self,
        d: Direction,
        d_hs: Array | None,
        d_h_last: Array | None,
        d_c_last: Array | None,
        need_dx: bool,
        need_dh0: bool,
    ) -> tuple[Array | None, Array | None, Array | None]:
        t_count, n, _ = d.x.shape
        h = self.hidden
        dtype = d.x.dtype
        (ghs,) = d.extra
        da_x = self.ws.empty("da_3", (3, t_count, n, h), dtype)  # input projection's, r, z, n
        da_h = self.ws.empty("da_h3", (3, t_count, n, h), dtype)  # hidden projection's
        buffers = (
            self._start(d_h_last, n, dtype, "dh_next"),
            self.ws.empty("dh_other", (n, h), dtype),
        )
        dh_sum = self.ws.empty("dh", (n, h), dtype)
        sd = self.ws.empty("sig_d", (2, n, h), dtype)
        t1 = self.ws.empty("tmp_h", (n, h), dtype)
        t2 = self.ws.empty("tmp_h2", (n, h), dtype)
        tmp3 = self.ws.empty("tmp_3", (3, n, h), dtype)
        previous, w_hh3 = d.previous(), self.w_hh.data.reshape(3, h, h)
        multiply, subtract = np.multiply, np.subtract
        order = _order(t_count, not d.reverse)  # BPTT runs against the direction of time
        last = order[-1] if len(order) else -1
        dh_next = buffers[0]
        for step, t in enumerate(order):
            a, gx, gh = d.acts[:, t], da_x[:, t], da_h[:, t]
            r, z, n_t = a[0], a[1], a[2]
            if d_hs is None:
                dh = dh_next
            else:
                np.add(d_hs[t], dh_next, out=dh_sum)
                dh = dh_sum
            s = a[:2]
            subtract(1, s, out=sd)
            sd *= s  # sigmoid'(pre) for r, z
            d_n = gx[2]
            multiply(n_t, n_t, out=t1)
            subtract(1, t1, out=t1)
            subtract(1, z, out=t2)
            t1 *= t2
            multiply(dh, t1, out=d_n)  # dn_pre = dh (1 - z) (1 - n^2)
            multiply(d_n, r, out=gh[2])
            multiply(d_n, ghs[t, 2], out=gh[0])
            gh[0] *= sd[0]
            subtract(previous[t], n_t, out=gh[1])
            gh[1] *= dh
            gh[1] *= sd[1]
            if t != last or need_dh0:
                new = buffers[(step + 1) % 2]
                np.matmul(gh, w_hh3, out=tmp3)
                np.add.reduce(tmp3, axis=0, out=new)
                multiply(dh, z, out=t1)
                new += t1  # dh_{t-1} = dh z + sum_k da_h[k] @ W_hh[k]
                dh_next = new
        da_x[:2] = da_h[:2]
        dx = self._add_gate_grads(d, da_x, da_h, need_dx, same=False)
        return dx, (dh_next.copy() if need_dh0 else None), None
