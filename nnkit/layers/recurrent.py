"""Recurrent layers: RNN, LSTM and GRU, with PyTorch's arguments, equations and parameters.

Every layer unrolls explicitly (docs/sequences.md): for each layer and direction, one matrix
product projects the inputs of all time steps at once, one Python loop over time runs the
recurrence and keeps a cache per step, and backward runs backpropagation through time (BPTT)
in the reverse loop, then adds the weight gradients of all steps with one matrix product per
weight. The per-step math of each cell lives in ``nnkit/layers/_cells.py``.

Shapes (``T`` time steps, ``N`` samples, ``D = 2`` if bidirectional else 1, ``L`` layers)::

    x:      (T, N, input_size), or (N, T, input_size) with batch_first=True
    h0:     (L * D, N, hidden_size)            (always batch second, as in PyTorch)
    output: (T, N, D * hidden_size), or (N, T, D * hidden_size) with batch_first=True
    h_n:    (L * D, N, hidden_size)            (LSTM: also c_n, of the same shape)

Parameters of layer ``k`` (suffix ``_reverse`` for the backward direction), in PyTorch's order,
names and shapes, so a PyTorch state dict loads unchanged::

    weight_ih_l{k}  (G * hidden_size, input_size if k == 0 else D * hidden_size)
    weight_hh_l{k}  (G * hidden_size, hidden_size)
    bias_ih_l{k}, bias_hh_l{k}  (G * hidden_size,)       (bias=True)

with ``G = 1`` (RNN), ``4`` (LSTM: gates i, f, g, o) or ``3`` (GRU: gates r, z, n). All are
initialised from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), PyTorch's default.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
from numpy.typing import DTypeLike

from nnkit._checks import as_generator, check_int, check_real
from nnkit.layers import _cells
from nnkit.layers._cells import Direction
from nnkit.layers._windows import Workspace
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = ["GRU", "LSTM", "RNN"]

_Grad = Array | None


class _RNNBase(Module):
    """The machinery shared by RNN, LSTM and GRU: parameters, layers, directions, dropout
    between layers, shape checks, and the weight gradients of BPTT.

    A subclass names its cell (``_cell``, in ``nnkit.layers._cells``) and its gate count.
    """

    _gates: int = 1
    _cell: type[_cells.Cell]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        rng: np.random.Generator | None,
        dtype: DTypeLike,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.input_size = check_int(f"{name} input_size", input_size, 1)
        self.hidden_size = check_int(f"{name} hidden_size", hidden_size, 1)
        self.num_layers = check_int(f"{name} num_layers", num_layers, 1)
        for flag, value in (("bias", bias), ("batch_first", batch_first)):
            if type(value) is not bool:
                raise TypeError(f"{name} {flag} must be True or False, got {value!r}")
        if type(bidirectional) is not bool:
            raise TypeError(f"{name} bidirectional must be True or False, got {bidirectional!r}")
        self.dropout = check_real(f"{name} dropout", dropout, 0.0)
        if self.dropout >= 1.0:
            raise ValueError(f"{name} dropout must be in [0, 1), got {dropout}")
        self.bias = bias
        self.batch_first = batch_first
        self.bidirectional = bidirectional
        generator = as_generator(rng)
        if np.dtype(dtype).kind != "f":
            raise TypeError(f"{name} dtype must be floating, got {np.dtype(dtype)}")
        gates = self._gates * self.hidden_size
        self._weights: list[tuple[Parameter, Parameter, Parameter | None, Parameter | None]] = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * self.directions
            for direction in range(self.directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                w_ih = Parameter(np.zeros((gates, layer_input)), dtype=dtype)
                w_hh = Parameter(np.zeros((gates, self.hidden_size)), dtype=dtype)
                setattr(self, f"weight_ih{suffix}", w_ih)
                setattr(self, f"weight_hh{suffix}", w_hh)
                b_ih = b_hh = None
                if bias:
                    b_ih = Parameter(np.zeros(gates), dtype=dtype)
                    b_hh = Parameter(np.zeros(gates), dtype=dtype)
                    setattr(self, f"bias_ih{suffix}", b_ih)
                    setattr(self, f"bias_hh{suffix}", b_hh)
                self._weights.append((w_ih, w_hh, b_ih, b_hh))
        if self.dropout > 0:
            # Inter-layer dropout draws from this generator, which saving and checkpoints keep.
            self.rng = generator
        self._workspace = Workspace()
        self._cache: _Cache | None = None
        self.reset_parameters(generator)

    @property
    def directions(self) -> int:
        """2 for a bidirectional layer, else 1."""
        return 2 if self.bidirectional else 1

    def reset_parameters(self, rng: np.random.Generator | None = None) -> None:
        """Draw every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        rng = as_generator(rng)
        bound = 1.0 / math.sqrt(self.hidden_size)
        for params in self._weights:
            for param in params:
                if param is not None:
                    param.data[...] = rng.uniform(-bound, bound, size=param.shape)

    # -- forward ---------------------------------------------------------------------------
    def _describe(self) -> str:
        name = type(self).__name__
        return f"{name}(input_size={self.input_size}, hidden_size={self.hidden_size})"

    def _state_shape(self, n: int) -> tuple[int, int, int]:
        return (self.num_layers * self.directions, n, self.hidden_size)

    def _check_input(self, x: Any) -> Array:
        dtype = self._weights[0][0].data.dtype
        array = as_float_array(x, dtype)
        if array.ndim != 3 or array.shape[2] != self.input_size:
            layout = "(N, T, {})" if self.batch_first else "(T, N, {})"
            raise ValueError(
                f"{self._describe()} expected input of shape "
                f"{layout.format(self.input_size)} (batch_first={self.batch_first}), got "
                f"{array.shape}"
                + (
                    "; unbatched 2-D sequences are not supported: add a batch axis"
                    if array.ndim == 2 and array.shape[-1] == self.input_size
                    else ""
                )
            )
        return array

    def _check_state(self, value: Any, what: str, n: int, x_shape: tuple[int, ...]) -> Array:
        dtype = self._weights[0][0].data.dtype
        state = as_float_array(value, dtype)
        expected = self._state_shape(n)
        if state.shape != expected:
            raise ValueError(
                f"{self._describe()} expected {what} of shape (num_layers * num_directions, N, "
                f"hidden_size) = {expected} for input of shape {x_shape}, got {state.shape}"
            )
        return state

    def _forward(self, x: Any, h0: Any, c0: Any) -> tuple[Array, Array, Array | None]:
        """Run every layer and direction; returns (output, h_n, c_n or None)."""
        x = self._check_input(x)
        n = x.shape[0] if self.batch_first else x.shape[1]
        h0_ = None if h0 is None else self._check_state(h0, "h0", n, x.shape)
        c0_ = None if c0 is None else self._check_state(c0, "c0", n, x.shape)
        # Time-major and contiguous inside, so each step is a slice and each
        # (T*N, features) view a free reshape.
        layer_input = np.ascontiguousarray(x.transpose(1, 0, 2) if self.batch_first else x)
        directions: list[Direction] = []
        masks: list[Array | None] = []
        output = layer_input
        for layer in range(self.num_layers):
            passes = []
            for direction in range(self.directions):
                k = layer * self.directions + direction
                cell = self._cell(self._weights[k], self._workspace, k)
                passes.append(
                    cell.forward(
                        layer_input,
                        None if h0_ is None else h0_[k],
                        None if c0_ is None else c0_[k],
                        reverse=direction == 1,
                    )
                )
            directions.extend(passes)
            output = (
                passes[0].outputs()
                if len(passes) == 1
                else np.concatenate([p.outputs() for p in passes], axis=2)
            )
            mask = None
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                keep = self.rng.random(output.shape) >= self.dropout
                mask = keep.astype(output.dtype)
                mask *= 1.0 / (1.0 - self.dropout)
                layer_input = output * mask
            else:
                layer_input = output
            masks.append(mask)
        h_n = np.stack([p.last_h() for p in directions])
        c_n = np.stack([p.last_c() for p in directions]) if self._gates == 4 else None
        self._cache = _Cache(x.shape, x.dtype, directions, masks, h0 is not None, c0 is not None)
        if self.batch_first:
            output = output.transpose(1, 0, 2)
        return output, h_n, c_n

    # -- backward --------------------------------------------------------------------------
    def _backward(
        self, grad_output: Any, grad_h: Any, grad_c: Any, need_dx: bool
    ) -> tuple[Array | None, Array | None, Array | None]:
        """BPTT through every layer and direction; adds the parameter gradients and returns
        (dx or None, dh0 or None, dc0 or None): dh0 and dc0 only when the forward got them."""
        cache = self._cache
        if cache is None:
            raise self._no_cache_error()
        t, n = (cache.shape[1], cache.shape[0]) if self.batch_first else cache.shape[:2]
        dtype = cache.dtype
        width = self.directions * self.hidden_size
        d_out: Array | None = None
        if grad_output is not None:
            shape = (n, t, width) if self.batch_first else (t, n, width)
            d_out = self.grad_like(grad_output, shape, dtype)
            if self.batch_first:
                d_out = d_out.transpose(1, 0, 2)
        state_shape = self._state_shape(n)
        d_h = None if grad_h is None else self._grad_state(grad_h, state_shape, dtype, "h_n")
        d_c = None if grad_c is None else self._grad_state(grad_c, state_shape, dtype, "c_n")
        dh0 = np.zeros(state_shape, dtype) if cache.has_h0 else None
        dc0 = np.zeros(state_shape, dtype) if cache.has_c0 else None
        h = self.hidden_size
        for layer in range(self.num_layers - 1, -1, -1):
            d_in: Array | None = None
            want_d_in = layer > 0 or need_dx
            for direction in range(self.directions):
                k = layer * self.directions + direction
                pass_ = cache.directions[k]
                cell = self._cell(self._weights[k], self._workspace, k)
                d_h_seq = (
                    None if d_out is None else d_out[:, :, direction * h : (direction + 1) * h]
                )
                d_x, d_h0, d_c0 = cell.backward(
                    pass_,
                    d_h_seq,
                    None if d_h is None else d_h[k],
                    None if d_c is None else d_c[k],
                    need_dx=want_d_in,
                    need_dh0=cache.has_h0,
                )
                if dh0 is not None and d_h0 is not None:
                    dh0[k] = d_h0
                if dc0 is not None and d_c0 is not None:
                    dc0[k] = d_c0
                if d_x is not None:
                    if d_in is None:
                        d_in = d_x
                    else:
                        d_in += d_x
            if layer > 0:
                mask = cache.masks[layer - 1]
                if mask is not None and d_in is not None:
                    d_in *= mask
                d_out = d_in
            else:
                d_out = d_in
        dx = d_out
        if dx is not None and self.batch_first:
            dx = dx.transpose(1, 0, 2)
        return dx, dh0, dc0

    def _grad_state(
        self, grad: Any, shape: tuple[int, ...], dtype: np.dtype[Any], what: str
    ) -> Array:
        g = as_float_array(grad, dtype)
        if g.shape != shape:
            raise ValueError(
                f"{type(self).__name__}.backward() expected the gradient of {what} of shape "
                f"{shape} (the shape of the last forward's {what}), got {g.shape}"
            )
        return g

    def get_config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "dtype": self._weights[0][0].data.dtype.name,
        }


class _Cache:
    """What backward needs from the last forward."""

    __slots__ = ("directions", "dtype", "has_c0", "has_h0", "masks", "shape")

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        directions: list[Direction],
        masks: list[Array | None],
        has_h0: bool,
        has_c0: bool,
    ) -> None:
        self.shape = shape
        self.dtype = dtype
        self.directions = directions
        self.masks = masks
        self.has_h0 = has_h0
        self.has_c0 = has_c0


class RNN(_RNNBase):
    """An Elman RNN (PyTorch's ``nn.RNN``), for each layer and direction::

        h_t = act(x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh),   act = tanh or relu

    BPTT, from ``dh_t`` (the output's gradient plus the gradient from step t + 1)::

        da_t      = dh_t * act'(h_t)          (1 - h_t^2 for tanh, [h_t > 0] for relu)
        dh_{t-1} += da_t @ W_hh
        dW_ih    += sum_t da_t.T @ x_t        dW_hh += sum_t da_t.T @ h_{t-1}
        db_ih    += sum_t da_t                db_hh += sum_t da_t
        dx_t      = da_t @ W_ih

    ``forward(x, h0=None)`` returns ``(output, h_n)``; ``backward(d_output, d_h_n=None)``
    returns ``dx``, or ``(dx, dh0)`` when the forward was given ``h0`` (either gradient may
    be None, meaning zeros). Shapes and parameters: see ``nnkit.layers.recurrent``. With
    ``dropout > 0``, the outputs of every layer but the last are dropped with probability
    ``dropout`` in training (inverted dropout, from the layer's own generator ``rng``).

    Args:
        input_size, hidden_size, num_layers, nonlinearity ("tanh" or "relu"), bias,
        batch_first, dropout, bidirectional: as PyTorch's.
        rng: the generator for the initial weights, then for dropout (None: a fresh one).
        dtype: floating dtype of the parameters and of the computation.
    """

    _gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._cell = _cells.TanhCell if nonlinearity == "tanh" else _cells.ReLUCell
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            rng,
            dtype,
        )

    def forward(self, x: Any, h0: Any = None) -> tuple[Array, Array]:
        output, h_n, _ = self._forward(x, h0, None)
        return output, h_n

    def backward(self, grad_output: _Grad = None, grad_h_n: _Grad = None) -> Any:
        dx, dh0, _ = self._backward(grad_output, grad_h_n, None, need_dx=True)
        return dx if dh0 is None else (dx, dh0)

    def accumulate_grad(self, grad_output: _Grad = None, grad_h_n: _Grad = None) -> None:
        self._backward(grad_output, grad_h_n, None, need_dx=False)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        return {
            "input_size": config.pop("input_size"),
            "hidden_size": config.pop("hidden_size"),
            "num_layers": config.pop("num_layers"),
            "nonlinearity": self.nonlinearity,
            **config,
        }


class LSTM(_RNNBase):
    """Long short-term memory (PyTorch's ``nn.LSTM``), gates in PyTorch's order i, f, g, o::

        [i, f, g, o] = x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh     (pre-activations)
        i, f, o = sigmoid(.), g = tanh(.)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    BPTT, from ``dh_t`` and ``dc_t`` (each the output's gradient plus step t + 1's)::

        do = dh_t * tanh(c_t)               dc_t += dh_t * o * (1 - tanh(c_t)^2)
        di = dc_t * g    df = dc_t * c_{t-1}    dg = dc_t * i    dc_{t-1} = dc_t * f
        da = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]
        dh_{t-1} += da @ W_hh;  dx_t = da @ W_ih;  dW_ih += sum_t da.T @ x_t;
        dW_hh += sum_t da.T @ h_{t-1};  db_ih, db_hh += sum_t da

    ``forward(x, state=None)`` with ``state = (h0, c0)``, as ``lstm(x, (h0, c0))`` in PyTorch,
    returns ``(output, (h_n, c_n))``. ``backward(d_output, (d_h_n, d_c_n))`` takes gradients in
    the same structure (None anywhere means zeros) and returns ``dx``, or ``(dx, (dh0, dc0))``
    when the forward was given a state. Dropout between layers as in :class:`RNN`.
    ``proj_size`` is not supported.
    """

    _gates = 4
    _cell = _cells.LSTMCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            rng,
            dtype,
        )

    def forward(self, x: Any, state: Any = None) -> tuple[Array, tuple[Array, Array]]:
        h0 = c0 = None
        if state is not None:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(
                    f"{self._describe()} takes the initial state as a pair (h0, c0), as "
                    f"lstm(x, (h0, c0)) in PyTorch; got {type(state).__name__}"
                )
            h0, c0 = state
            if (h0 is None) != (c0 is None):
                raise ValueError(f"{self._describe()}: give both h0 and c0, or neither")
        output, h_n, c_n = self._forward(x, h0, c0)
        return output, (h_n, cast(Array, c_n))  # an LSTM's cells always give c_n

    @staticmethod
    def _split(grad_state: Any) -> tuple[Any, Any]:
        if grad_state is None:
            return None, None
        if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
            raise TypeError(
                "LSTM.backward() takes the state's gradient as a pair (d_h_n, d_c_n) (either "
                f"may be None), the structure of the forward's (h_n, c_n); got "
                f"{type(grad_state).__name__}"
            )
        return grad_state[0], grad_state[1]

    def backward(self, grad_output: _Grad = None, grad_state: Any = None) -> Any:
        d_h, d_c = self._split(grad_state)
        dx, dh0, dc0 = self._backward(grad_output, d_h, d_c, need_dx=True)
        return dx if dh0 is None else (dx, (dh0, dc0))

    def accumulate_grad(self, grad_output: _Grad = None, grad_state: Any = None) -> None:
        d_h, d_c = self._split(grad_state)
        self._backward(grad_output, d_h, d_c, need_dx=False)


class GRU(_RNNBase):
    """Gated recurrent unit (PyTorch's ``nn.GRU``), gates in PyTorch's order r, z, n, with the
    reset gate applied after the hidden matrix product::

        r = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    BPTT, from ``dh_t`` (the output's gradient plus step t + 1's), with ``gh_n = W_hn h + b_hn``::

        dn_pre = dh_t * (1 - z) * (1 - n^2)
        dz_pre = dh_t * (h_{t-1} - n) * z(1-z)
        dr_pre = dn_pre * gh_n * r(1-r)
        da_x = [dr_pre, dz_pre, dn_pre]          (gradient of the input projection)
        da_h = [dr_pre, dz_pre, dn_pre * r]      (gradient of the hidden projection)
        dh_{t-1} = dh_t * z + da_h @ W_hh;  dx_t = da_x @ W_ih
        dW_ih += sum_t da_x.T @ x_t;  db_ih += sum_t da_x
        dW_hh += sum_t da_h.T @ h_{t-1};  db_hh += sum_t da_h

    ``forward(x, h0=None)`` returns ``(output, h_n)``; ``backward`` as :class:`RNN`'s.
    """

    _gates = 3
    _cell = _cells.GRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            rng,
            dtype,
        )

    def forward(self, x: Any, h0: Any = None) -> tuple[Array, Array]:
        output, h_n, _ = self._forward(x, h0, None)
        return output, h_n

    def backward(self, grad_output: _Grad = None, grad_h_n: _Grad = None) -> Any:
        dx, dh0, _ = self._backward(grad_output, grad_h_n, None, need_dx=True)
        return dx if dh0 is None else (dx, dh0)

    def accumulate_grad(self, grad_output: _Grad = None, grad_h_n: _Grad = None) -> None:
        self._backward(grad_output, grad_h_n, None, need_dx=False)
