"""The per-step math of the recurrent cells, for one layer and one direction of a sequence.

``nnkit.layers.recurrent`` states the equations; this file is where NumPy runs them. The
tricks, all in one place:

- **One input projection for all time steps**: ``x.reshape(T*N, I) @ W_ih.T`` into a kept
  (T, N, G) workspace, which each step then turns into its gate activations in place.
- **Sigmoid as a tanh**: ``sigmoid(a) = 0.5 + 0.5 * tanh(a / 2)``. It never overflows, and
  NumPy's tanh is about 30 times faster than the ``exp(-softplus(-a))`` of
  ``nnkit.functional.sigmoid`` (whose extra care is for relative accuracy in the far tail,
  which a gate does not need: the absolute error here is below one float epsilon). The
  halving is folded into the weights: the rows of the sigmoid gates of ``W_ih``, ``W_hh`` and
  the biases are scaled by 0.5 (exactly, in binary) once per forward, so one ``tanh`` call
  covers every gate of a step. The effective ``W_hh.T`` is made C-contiguous once per forward
  (its per-step product is a few percent faster than through the transposed view).
- **LSTM gates regrouped** inside: the effective weights hold the rows in the order
  i, f, o, g, so the three sigmoid gates are one contiguous block. Parameters, gradients
  and every array a user sees keep PyTorch's i, f, g, o.
- **Workspaces**: the gate activations, the LSTM cell states, the GRU hidden projections and
  the per-step temporaries are kept between calls and reused while their shape repeats
  (multi-MB buffers are otherwise handed back to the kernel and faulted in again every step).
  Only arrays a user never receives live there; the hidden states, which the output is a view
  of, are allocated by every forward.
- **Weight gradients of all steps in one product** after the BPTT loop:
  ``dW_ih += da.reshape(T*N, G).T @ x.reshape(T*N, I)``, and likewise for ``W_hh``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnkit.module import Array
from nnkit.parameter import Parameter

Weights = tuple[Parameter, Parameter, Parameter | None, Parameter | None]
"""weight_ih, weight_hh, bias_ih, bias_hh of one layer and direction."""


class Workspace:
    """Arrays kept between calls by key, reallocated only when the shape or dtype changes."""

    def __init__(self) -> None:
        self._arrays: dict[Any, Array] = {}

    def get(self, key: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array:
        """An uninitialised array of ``shape`` and ``dtype``, the same one as last time."""
        array = self._arrays.get(key)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[key] = np.empty(shape, dtype)
        return array


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
        acts = self.ws.get((self.key, "acts"), (t, n, w_ih_t.shape[1]), x.dtype)
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

    def _start(self, grad: Array | None, n: int, dtype: np.dtype[Any], name: str) -> Array:
        """A buffer holding the incoming gradient of the final state (zeros for None)."""
        buf = self.ws.get(name, (n, self.hidden), dtype)
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
        tmp = self.ws.get("tmp_h", h.shape, h.dtype)
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
        da = self.ws.get("da", (t_count, n, self.hidden), dtype)
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
        dead = self.ws.get("dead", h.shape, np.dtype(bool))
        np.less_equal(h, 0, out=dead)
        np.copyto(out, 0, where=dead)


class LSTMCell(Cell):
    """The LSTM cell; activations kept in the order i, f, o, g (see the module docstring)."""

    gates = 4

    def _effective(self) -> tuple[Array, Array, Array | None]:
        """W_ih.T, W_hh.T and the summed bias with rows regrouped to i, f, o, g and the
        sigmoid rows halved."""
        h = self.hidden
        dtype = self.w_ih.data.dtype
        perm = np.r_[0 : 2 * h, 3 * h : 4 * h, 2 * h : 3 * h]
        scale = np.ones(4 * h, dtype)
        scale[: 3 * h] = 0.5
        w_ih = self.w_ih.data[perm]
        w_ih *= scale[:, None]
        w_hh = self.w_hh.data[perm]
        w_hh *= scale[:, None]
        bias = None
        if self.b_ih is not None and self.b_hh is not None:
            bias = (self.b_ih.data + self.b_hh.data)[perm]
            bias *= scale
        return w_ih.T, np.ascontiguousarray(w_hh.T), bias

    def forward(self, x: Array, h0: Array | None, c0: Array | None, reverse: bool) -> Direction:
        t_count, n, _ = x.shape
        h = self.hidden
        w_ih_t, w_hh_t, bias = self._effective()
        acts = self._project(x, w_ih_t, bias)
        hs = self._states(x, h0, reverse)
        cs = self.ws.get((self.key, "c"), (t_count + 1, n, h), x.dtype)
        tcs = self.ws.get((self.key, "tanh_c"), (t_count, n, h), x.dtype)
        start = t_count if reverse else 0
        if c0 is None:
            cs[start] = 0
        else:
            cs[start] = c0
        tmp = self.ws.get("tmp_g", (n, 4 * h), x.dtype)
        tmp_h = self.ws.get("tmp_h", (n, h), x.dtype)
        matmul, tanh, multiply = np.matmul, np.tanh, np.multiply
        for t in _order(t_count, reverse):
            prev, cur = (t + 1, t) if reverse else (t, t + 1)
            a = acts[t]
            matmul(hs[prev], w_hh_t, out=tmp)
            a += tmp
            tanh(a, out=a)
            s = a[:, : 3 * h]
            s *= 0.5
            s += 0.5  # i, f, o = sigmoid; g = tanh
            c = cs[cur]
            multiply(a[:, h : 2 * h], cs[prev], out=c)
            multiply(a[:, :h], a[:, 3 * h :], out=tmp_h)
            c += tmp_h
            tanh(c, out=tcs[t])
            multiply(a[:, 2 * h : 3 * h], tcs[t], out=hs[cur])
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
        da = self.ws.get("da", (t_count, n, 4 * h), dtype)
        dh_next = self._start(d_h_last, n, dtype, "dh_next")
        dc = self._start(d_c_last, n, dtype, "dc")
        dh_sum = self.ws.get("dh", (n, h), dtype)
        sd = self.ws.get("sig_d", (n, 3 * h), dtype)
        tmp = self.ws.get("tmp_h", (n, h), dtype)
        w_hh = self.w_hh.data
        multiply, subtract = np.multiply, np.subtract
        order = _order(t_count, not d.reverse)  # BPTT runs against the direction of time
        last = order[-1] if len(order) else -1
        for t in order:
            prev = t + 1 if d.reverse else t
            a, g_t, tc = d.acts[t], da[t], tcs[t]
            i, f, o, g = a[:, :h], a[:, h : 2 * h], a[:, 2 * h : 3 * h], a[:, 3 * h :]
            if d_hs is None:
                dh = dh_next
            else:
                np.add(d_hs[t], dh_next, out=dh_sum)
                dh = dh_sum
            s = a[:, : 3 * h]
            subtract(1, s, out=sd)
            sd *= s  # sigmoid'(pre) = s (1 - s) for i, f, o
            multiply(tc, tc, out=tmp)
            subtract(1, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            dc += tmp  # dc_t = dc from step t+1 + dh * o * (1 - tanh(c)^2)
            d_o = g_t[:, 3 * h :]
            multiply(dh, tc, out=d_o)
            d_o *= sd[:, 2 * h :]
            d_i = g_t[:, :h]
            multiply(dc, g, out=d_i)
            d_i *= sd[:, :h]
            d_f = g_t[:, h : 2 * h]
            multiply(dc, cs[prev], out=d_f)
            d_f *= sd[:, h : 2 * h]
            multiply(g, g, out=tmp)
            subtract(1, tmp, out=tmp)
            tmp *= i
            multiply(dc, tmp, out=g_t[:, 2 * h : 3 * h])
            dc *= f  # dc_{t-1}
            if t != last or need_dh0:
                np.matmul(g_t, w_hh, out=dh_next)
        dx = self._add_grads(d, da, da, need_dx, same=True)
        if not need_dh0:
            return dx, None, None
        return dx, dh_next.copy(), dc.copy()


class GRUCell(Cell):
    """The GRU cell, activations in the order r, z, n (see the module docstring)."""

    gates = 3

    def forward(self, x: Array, h0: Array | None, c0: Array | None, reverse: bool) -> Direction:
        t_count, n, _ = x.shape
        h = self.hidden
        dtype = x.dtype
        scale = np.ones(3 * h, dtype)
        scale[: 2 * h] = 0.5
        w_ih = self.w_ih.data * scale[:, None]
        w_hh = self.w_hh.data * scale[:, None]
        bias = b_hn = None
        if self.b_ih is not None and self.b_hh is not None:
            bias = self.b_ih.data.copy()
            bias[: 2 * h] += self.b_hh.data[: 2 * h]  # b_hr and b_hz fold into the projection
            bias *= scale
            b_hn = self.b_hh.data[2 * h :]
        acts = self._project(x, w_ih.T, bias)
        hs = self._states(x, h0, reverse)
        ghs = self.ws.get((self.key, "gh"), (t_count, n, 3 * h), dtype)
        tmp = self.ws.get("tmp_h", (n, h), dtype)
        w_hh_t = np.ascontiguousarray(w_hh.T)
        matmul, tanh, multiply = np.matmul, np.tanh, np.multiply
        for t in _order(t_count, reverse):
            prev, cur = (hs[t + 1], hs[t]) if reverse else (hs[t], hs[t + 1])
            a, gh = acts[t], ghs[t]
            matmul(prev, w_hh_t, out=gh)
            gh_n = gh[:, 2 * h :]
            if b_hn is not None:
                gh_n += b_hn
            rz = a[:, : 2 * h]
            rz += gh[:, : 2 * h]
            tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5  # r, z = sigmoid
            n_t = a[:, 2 * h :]
            multiply(a[:, :h], gh_n, out=tmp)
            n_t += tmp
            tanh(n_t, out=n_t)
            np.subtract(prev, n_t, out=cur)
            cur *= a[:, h : 2 * h]
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
        da_x = self.ws.get("da", (t_count, n, 3 * h), dtype)
        da_h = self.ws.get("da_h", (t_count, n, 3 * h), dtype)
        buffers = (
            self._start(d_h_last, n, dtype, "dh_next"),
            self.ws.get("dh_other", (n, h), dtype),
        )
        dh_sum = self.ws.get("dh", (n, h), dtype)
        sd = self.ws.get("sig_d", (n, 2 * h), dtype)
        t1 = self.ws.get("tmp_h", (n, h), dtype)
        t2 = self.ws.get("tmp_h2", (n, h), dtype)
        previous, w_hh = d.previous(), self.w_hh.data
        multiply, subtract = np.multiply, np.subtract
        order = _order(t_count, not d.reverse)  # BPTT runs against the direction of time
        last = order[-1] if len(order) else -1
        dh_next = buffers[0]
        for step, t in enumerate(order):
            a, gx, gh = d.acts[t], da_x[t], da_h[t]
            r, z, n_t = a[:, :h], a[:, h : 2 * h], a[:, 2 * h :]
            if d_hs is None:
                dh = dh_next
            else:
                np.add(d_hs[t], dh_next, out=dh_sum)
                dh = dh_sum
            s = a[:, : 2 * h]
            subtract(1, s, out=sd)
            sd *= s  # sigmoid'(pre) for r, z
            d_n = gx[:, 2 * h :]
            multiply(n_t, n_t, out=t1)
            subtract(1, t1, out=t1)
            subtract(1, z, out=t2)
            t1 *= t2
            multiply(dh, t1, out=d_n)  # dn_pre = dh (1 - z) (1 - n^2)
            multiply(d_n, r, out=gh[:, 2 * h :])
            d_r = gh[:, :h]
            multiply(d_n, ghs[t][:, 2 * h :], out=d_r)
            d_r *= sd[:, :h]
            d_z = gh[:, h : 2 * h]
            subtract(previous[t], n_t, out=d_z)
            d_z *= dh
            d_z *= sd[:, h:]
            if t != last or need_dh0:
                new = buffers[(step + 1) % 2]
                np.matmul(gh, w_hh, out=new)
                multiply(dh, z, out=t1)
                new += t1
                dh_next = new
        da_x[:, :, : 2 * h] = da_h[:, :, : 2 * h]
        dx = self._add_grads(d, da_x, da_h, need_dx, same=False)
        return dx, (dh_next.copy() if need_dh0 else None), None
