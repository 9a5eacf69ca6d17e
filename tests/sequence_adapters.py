"""Test adapters that let check_module see a sequence layer's whole result.

check_module takes flat tuples of arrays and slices every output along one batch axis (the
first input's). Two things in sequence layers do not fit that, and these adapters bridge
them without changing what is checked:

- nested results: an LSTM returns ``(output, (h_n, c_n))`` and takes ``(h0, c0)`` as one
  argument; the adapter passes ``(x, h0, c0)`` as three arrays and returns three outputs.
- batch axes that differ between outputs: ``h_n`` is always (layers, N, hidden), but a
  batch-first output is (N, T, hidden); attention weights are (N, L, S) while a time-major
  attention output is (L, N, E). The adapter moves such an output's batch axis to where the
  others have it (and moves its gradient back), so every output is sliced per sample.

Outputs that are None (attention weights with need_weights=False) are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import nnkit


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


def _rebuild(template: Any, leaves: list[Any]) -> Any:
    """``template``'s nested tuple structure filled from ``leaves`` (consumed in order)."""
    if isinstance(template, tuple):
        return tuple(_rebuild(item, leaves) for item in template)
    return leaves.pop(0)


class Harnessed(nnkit.Module):
    """``inner`` with flat inputs and outputs for check_module.

    Args:
        inner: the layer.
        lstm_state: the inputs are ``(x, h0, c0)``, passed as ``inner(x, (h0, c0))``, and the
            input gradients come back flat.
        moves: for each output of the flattened result (None outputs included), ``(source,
            destination)`` of an axis to move, or None.
        self_attention: the one input is passed as query, key and value (the same array), and
            the three input gradients are summed.
    """

    def __init__(
        self,
        inner: nnkit.Module,
        lstm_state: bool = False,
        moves: tuple[tuple[int, int] | None, ...] = (),
        self_attention: bool = False,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.lstm_state = lstm_state
        self.moves = moves
        self.self_attention = self_attention
        self._template: Any = None
        self._kept: list[bool] = []

    def forward(self, *xs: Any) -> Any:
        if self.self_attention:
            args: tuple[Any, ...] = (xs[0], xs[0], xs[0], *xs[1:])
        elif self.lstm_state and len(xs) == 3:
            args = (xs[0], (xs[1], xs[2]))
        else:
            args = xs
        result = self.inner(*args)
        self._template = result
        leaves = _flatten(result)
        self._kept = [leaf is not None for leaf in leaves]
        out = []
        for i, leaf in enumerate(leaves):
            if leaf is None:
                continue
            move = self.moves[i] if i < len(self.moves) else None
            out.append(leaf if move is None else np.moveaxis(leaf, *move))
        return out[0] if len(out) == 1 else tuple(out)

    def _inner_grads(self, grads: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._template is None:
            raise self._no_cache_error()
        given = list(grads)
        leaves = []
        for i, kept in enumerate(self._kept):
            g = given.pop(0) if kept else None
            move = self.moves[i] if i < len(self.moves) else None
            leaves.append(g if g is None or move is None else np.moveaxis(g, move[1], move[0]))
        nested = _rebuild(self._template, leaves)
        return nested if isinstance(nested, tuple) else (nested,)

    def backward(self, *grads: Any) -> Any:
        result = self.inner.backward(*self._inner_grads(grads))
        if self.self_attention:
            dq, dk, dv, *rest = result
            total = dq + dk + dv
            return total if not rest else (total, *rest)
        if self.lstm_state and isinstance(result, tuple) and isinstance(result[1], tuple):
            return (result[0], *result[1])
        return result

    def accumulate_grad(self, *grads: Any) -> None:
        self.inner.accumulate_grad(*self._inner_grads(grads))
