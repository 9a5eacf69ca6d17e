"""Small layers around sequence models: picking what a recurrent layer returns, and adding
positions to a sequence of embeddings.

The classification idiom (docs/sequences.md)::

    model = nnkit.Sequential(
        nnkit.LSTM(input_size, hidden, batch_first=True),   # returns (output, (h_n, c_n))
        nnkit.LastTimeStep(batch_first=True),               # takes both, returns output[:, -1]
        nnkit.Dense(hidden, classes),
    )

``Sequential`` passes a child's tuple to the next child as separate arguments, so
``SequenceOutput``, ``LastTimeStep`` and ``FinalState`` take ``(output, state)`` and hand back
one array; their backward returns gradients for both (zeros where nothing was used).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit._checks import as_generator, check_int
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = [
    "FinalState",
    "LastTimeStep",
    "PositionalEmbedding",
    "SequenceOutput",
    "SinusoidalPositionalEncoding",
]


def _zeros_like(value: Any) -> Any:
    """Zeros of the structure of ``value`` (an array, or nested tuples of arrays)."""
    if isinstance(value, (tuple, list)):
        return tuple(_zeros_like(v) for v in value)
    if value is None:
        return None
    array = np.asarray(value)
    return np.zeros(array.shape, array.dtype if array.dtype.kind == "f" else np.float32)


class _TakesState(Module):
    """Takes ``(output, *state)``; remembers the output's shape and dtype and the state."""

    def __init__(self) -> None:
        super().__init__()
        self._like: tuple[tuple[int, ...], np.dtype[Any]] | None = None
        self._state: tuple[Any, ...] = ()

    def _take(self, output: Any, state: tuple[Any, ...]) -> Array:
        x = as_float_array(output)
        self._like = (x.shape, x.dtype)
        self._state = tuple(_zeros_like(s) for s in state)
        return x

    def _with_state(self, dx: Array) -> Any:
        return dx if not self._state else (dx, *self._state)


class SequenceOutput(_TakesState):
    """Keeps the output sequence of a recurrent layer and drops its final state.

    ``forward(output, state)`` returns ``output`` (any shape); ``forward(output)`` passes it
    through. ``backward(d_output)`` returns ``d_output``, and zeros of the state's structure
    (arrays, or the LSTM's pair) when a state was given.
    """

    def forward(self, output: Any, *state: Any) -> Array:
        return self._take(output, state)

    def backward(self, grad_out: Any) -> Any:
        if self._like is None:
            raise self._no_cache_error()
        return self._with_state(self.grad_like(grad_out, *self._like))


class LastTimeStep(_TakesState):
    """The last time step of a sequence: ``output[-1]`` (time-major) or ``output[:, -1]``
    (``batch_first=True``), a (N, features) array for a Dense layer.

    ``forward(output, state=...)`` drops the state, as :class:`SequenceOutput` does. Backward
    puts ``dy`` at the last step and zeros everywhere else. For a bidirectional layer the
    last step holds the forward direction's final state but the reverse direction's state after
    one step only; :class:`FinalState` gives both directions' final states.

    Args:
        batch_first: whether the sequence is (N, T, features) rather than (T, N, features).
    """

    def __init__(self, batch_first: bool = False) -> None:
        super().__init__()
        if type(batch_first) is not bool:
            raise TypeError(f"LastTimeStep batch_first must be True or False, got {batch_first!r}")
        self.batch_first = batch_first

    def forward(self, output: Any, *state: Any) -> Array:
        x = self._take(output, state)
        axis = 1 if self.batch_first else 0
        if x.ndim < 2 or x.shape[axis] == 0:
            layout = "(N, T, ...)" if self.batch_first else "(T, N, ...)"
            raise ValueError(
                f"LastTimeStep(batch_first={self.batch_first}) expected a sequence of shape "
                f"{layout} with at least one step, got {x.shape}"
            )
        return np.ascontiguousarray(x[:, -1] if self.batch_first else x[-1])

    def backward(self, grad_out: Any) -> Any:
        if self._like is None:
            raise self._no_cache_error()
        shape, dtype = self._like
        axis = 1 if self.batch_first else 0
        step_shape = shape[:axis] + shape[axis + 1 :]
        dy = self.grad_like(grad_out, step_shape, dtype)
        dx = np.zeros(shape, dtype)
        if self.batch_first:
            dx[:, -1] = dy
        else:
            dx[-1] = dy
        return self._with_state(dx)

    def get_config(self) -> dict[str, Any]:
        return {"batch_first": self.batch_first}


class FinalState(Module):
    """The final hidden state of a recurrent layer's last layer, every direction side by side:
    ``(N, D * hidden)``, for a Dense layer (PyTorch users write
    ``torch.cat([h_n[-2], h_n[-1]], dim=1)`` for a bidirectional layer).

    ``forward(output, h_n)`` (RNN, GRU) or ``forward(output, (h_n, c_n))`` (LSTM), as a
    recurrent layer returns them. The LSTM pair may also come stacked into one
    (2, layers * D, N, hidden) array, as ``np.asarray`` makes it (the gradient checkers do);
    its gradient then comes back in the same form. ``D = output features // hidden`` is the
    number of directions. Unlike :class:`LastTimeStep`, the reverse direction's part is its
    state after the whole sequence. Backward: zeros for the output, ``dy`` into the last
    layer's rows of the state's gradient, zeros elsewhere (and for ``c_n``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._like: tuple[tuple[int, ...], tuple[int, ...], str, np.dtype[Any]] | None = None

    def forward(self, output: Any, state: Any) -> Array:
        pair = isinstance(state, (tuple, list))
        h_n = as_float_array(state[0] if pair else state)
        stacked = not pair and h_n.ndim == 4 and h_n.shape[0] == 2  # np.asarray((h_n, c_n))
        if stacked:
            h_n = h_n[0]
        out = np.asarray(output)
        if h_n.ndim != 3 or out.ndim != 3 or out.shape[-1] % h_n.shape[2]:
            raise ValueError(
                "FinalState takes a recurrent layer's (output, h_n): output (T, N, D * hidden) "
                f"or (N, T, D * hidden) and h_n (layers * D, N, hidden); got output "
                f"{out.shape} and h_n {h_n.shape}"
            )
        directions = out.shape[-1] // h_n.shape[2]
        self._like = (
            out.shape,
            h_n.shape,
            "pair" if pair else "stacked" if stacked else "",
            h_n.dtype,
        )
        last = h_n[h_n.shape[0] - directions :]  # (D, N, hidden)
        return np.ascontiguousarray(last.transpose(1, 0, 2)).reshape(
            h_n.shape[1], directions * h_n.shape[2]
        )

    def backward(self, grad_out: Any) -> Any:
        if self._like is None:
            raise self._no_cache_error()
        out_shape, state_shape, form, dtype = self._like
        layers_d, n, hidden = state_shape
        directions = out_shape[-1] // hidden
        dy = self.grad_like(grad_out, (n, directions * hidden), dtype)
        d_h = np.zeros(state_shape, dtype)
        d_h[layers_d - directions :] = dy.reshape(n, directions, hidden).transpose(1, 0, 2)
        d_state: Any = d_h
        if form == "pair":
            d_state = (d_h, np.zeros(state_shape, dtype))
        elif form == "stacked":
            d_state = np.stack([d_h, np.zeros(state_shape, dtype)])
        return np.zeros(out_shape, dtype), d_state


def _check_sequence(layer: str, x: Array, d_model: int, max_len: int, batch_first: bool) -> int:
    """The sequence length of ``x``, or ValueError naming the layer and the shapes."""
    layout = "(N, L, {})" if batch_first else "(L, N, {})"
    if x.ndim != 3 or x.shape[2] != d_model:
        raise ValueError(
            f"{layer} expected input of shape {layout.format(d_model)} "
            f"(batch_first={batch_first}), got {x.shape}"
        )
    length = int(x.shape[1] if batch_first else x.shape[0])
    if length > max_len:
        raise ValueError(
            f"{layer} got a sequence of length {length} (input shape {x.shape}), longer than "
            f"its max_len {max_len}"
        )
    return length


class PositionalEmbedding(Module):
    """A learned position embedding added to a sequence: ``y[t] = x[t] + weight[t]``.

    Shapes: x and y (L, N, d_model), or (N, L, d_model) with ``batch_first=True``, for any
    ``L <= max_len``; weight (max_len, d_model), initialised from N(0, 1) as PyTorch's
    ``nn.Embedding``. Backward: ``dx = dy``; ``dweight[t] += sum over the batch of dy[t]``
    (rows past L get nothing).

    Args:
        max_len: the longest sequence.
        d_model: the feature size.
        batch_first: whether the input is (N, L, d_model).
        rng: the generator for the initial weights (None: a fresh unseeded one).
        dtype: floating dtype of the weight and of the computation.
    """

    def __init__(
        self,
        max_len: int,
        d_model: int,
        batch_first: bool = False,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.max_len = check_int("PositionalEmbedding max_len", max_len, 1)
        self.d_model = check_int("PositionalEmbedding d_model", d_model, 1)
        if type(batch_first) is not bool:
            raise TypeError(
                f"PositionalEmbedding batch_first must be True or False, got {batch_first!r}"
            )
        self.batch_first = batch_first
        self.weight = Parameter(np.zeros((self.max_len, self.d_model)), dtype=dtype)
        self._like: tuple[tuple[int, ...], np.dtype[Any]] | None = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng: np.random.Generator | None = None) -> None:
        """Draw the weight from N(0, 1)."""
        self.weight.data[...] = as_generator(rng).standard_normal(self.weight.shape)

    def _positions(self, length: int) -> Array:
        table = self.weight.data[:length]
        return table if self.batch_first else table[:, None, :]

    def forward(self, x: Any) -> Array:
        x = as_float_array(x, self.weight.dtype)
        _check_sequence(
            f"PositionalEmbedding(max_len={self.max_len}, d_model={self.d_model})",
            x,
            self.d_model,
            self.max_len,
            self.batch_first,
        )
        self._like = (x.shape, x.dtype)
        y: Array = x + self._positions(x.shape[1] if self.batch_first else x.shape[0])
        return y

    def backward(self, grad_out: Any) -> Array:
        if self._like is None:
            raise self._no_cache_error()
        shape, dtype = self._like
        dy = self.grad_like(grad_out, shape, dtype)
        length = shape[1] if self.batch_first else shape[0]
        grad = self.weight.grad
        grad[:length] += np.add.reduce(dy, axis=0 if self.batch_first else 1)
        return dy

    def get_config(self) -> dict[str, Any]:
        return {
            "max_len": self.max_len,
            "d_model": self.d_model,
            "batch_first": self.batch_first,
            "dtype": self.weight.dtype.name,
        }


class SinusoidalPositionalEncoding(Module):
    """The fixed sinusoidal positions of "Attention is all you need", added to a sequence::

        PE[t, 2i]     = sin(t / 10000^(2i / d_model))
        PE[t, 2i + 1] = cos(t / 10000^(2i / d_model))
        y[t] = x[t] + PE[t]          dx = dy

    No parameters. Shapes: x and y (L, N, d_model), or (N, L, d_model) with
    ``batch_first=True``, for any ``L <= max_len``. The table is computed once in float64 and
    added in the input's dtype.

    Args:
        d_model: the feature size (odd sizes drop the last cosine column).
        max_len: the longest sequence.
        batch_first: whether the input is (N, L, d_model).
    """

    def __init__(self, d_model: int, max_len: int = 5000, batch_first: bool = False) -> None:
        super().__init__()
        self.d_model = check_int("SinusoidalPositionalEncoding d_model", d_model, 1)
        self.max_len = check_int("SinusoidalPositionalEncoding max_len", max_len, 1)
        if type(batch_first) is not bool:
            raise TypeError(
                "SinusoidalPositionalEncoding batch_first must be True or False, got "
                f"{batch_first!r}"
            )
        self.batch_first = batch_first
        position = np.arange(self.max_len, dtype=np.float64)[:, None]
        rates = np.exp(np.arange(0, self.d_model, 2) * (-math.log(10000.0) / self.d_model))
        table = np.zeros((self.max_len, self.d_model))
        table[:, 0::2] = np.sin(position * rates)
        table[:, 1::2] = np.cos(position * rates[: self.d_model // 2])
        self._table = table
        self._like: tuple[tuple[int, ...], np.dtype[Any]] | None = None

    def forward(self, x: Any) -> Array:
        x = as_float_array(x)
        length = _check_sequence(
            f"SinusoidalPositionalEncoding(d_model={self.d_model}, max_len={self.max_len})",
            x,
            self.d_model,
            self.max_len,
            self.batch_first,
        )
        self._like = (x.shape, x.dtype)
        table = self._table[:length].astype(x.dtype)
        y: Array = x + (table if self.batch_first else table[:, None, :])
        return y

    def backward(self, grad_out: Any) -> Array:
        if self._like is None:
            raise self._no_cache_error()
        return self.grad_like(grad_out, *self._like)

    def get_config(self) -> dict[str, Any]:
        return {"d_model": self.d_model, "max_len": self.max_len, "batch_first": self.batch_first}
