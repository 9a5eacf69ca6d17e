"""Multi-head scaled dot-product attention, with PyTorch's parameters, masks and results.

For queries ``q`` (L of them), keys ``k`` and values ``v`` (S of them), and each head
``j`` of ``num_heads``, with ``d = embed_dim / num_heads``::

    Q = q @ W_q.T + b_q,   K = k @ W_k.T + b_k,   V = v @ W_v.T + b_v      (split into heads)
    S_j = Q_j @ K_j.T / sqrt(d) + M          M: the masks, additive (-inf where not allowed)
    A_j = softmax(S_j, over the keys)        A'_j = dropout(A_j)     (training only)
    O   = concat_j(A'_j @ V_j)
    y   = O @ W_o.T + b_o

Backward, from ``dy`` (and ``dA'``, the gradient of the returned weights, if any)::

    dW_o += dy.T @ O;  db_o += sum(dy);  dO = dy @ W_o
    dA'_j = dO_j @ V_j.T (+ dA'_j from the weights);  dV_j = A'_j.T @ dO_j
    dA_j = dA'_j * dropout mask
    dS_j = A_j * (dA_j - sum(dA_j * A_j, over the keys))       (the softmax's Jacobian)
    dQ_j = dS_j @ K_j / sqrt(d);  dK_j = dS_j.T @ Q_j / sqrt(d)
    then through each projection as a Dense layer: dW_q += dQ.T @ q, dq = dQ @ W_q, ...

**A query whose keys are all masked** (a row of M that is -inf everywhere) attends to
nothing: its attention weights are zeros, so its output is ``b_o`` and no gradient flows
through that row. PyTorch returns NaN there; nnkit never does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit import functional, init
from nnkit._checks import as_generator, check_int, check_real
from nnkit.layers._options import bind_options
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = ["MultiheadAttention", "causal_mask"]


def causal_mask(length: int, source_length: int | None = None) -> Array:
    """The causal attention mask: a bool (length, source_length) array, True above the
    diagonal (position i may not attend to keys j > i), PyTorch's
    ``nn.Transformer.generate_square_subsequent_mask`` as a bool mask.

    ``source_length`` defaults to ``length``.
    """
    length = check_int("causal_mask length", length, 0)
    source = (
        length
        if source_length is None
        else check_int("causal_mask source_length", source_length, 0)
    )
    return np.triu(np.ones((length, source), dtype=bool), k=1)


class MultiheadAttention(Module):
    """Multi-head attention (PyTorch's ``nn.MultiheadAttention``); equations in this module's
    docstring.

    Shapes (``batch_first=False``, PyTorch's default; with ``batch_first=True`` swap the first
    two axes of query, key, value and the output)::

        query (L, N, embed_dim), key (S, N, kdim), value (S, N, vdim)
        attn_output (L, N, embed_dim)
        attn_weights (N, L, S), or (N, num_heads, L, S) with average_attn_weights=False

    Parameters, with PyTorch's names and shapes, so a PyTorch state dict loads unchanged:
    ``in_proj_weight`` (3 * embed_dim, embed_dim) packing W_q, W_k, W_v when kdim and vdim
    equal embed_dim, else ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim) and
    ``v_proj_weight`` (E, vdim); ``in_proj_bias`` (3E,); ``out_proj.weight`` (E, E) and
    ``out_proj.bias`` (E,). The output projection is PyTorch's ``nn.Linear`` layout,
    (out, in), unlike nnkit's ``Dense`` (in, out): it is kept as a dict of two Parameters named
    ``out_proj``, so the names are PyTorch's without a torch-layout layer class.
    Initialisation as PyTorch: Xavier-uniform input projections (the packed matrix as one),
    out_proj.weight from U(-1/sqrt(E), 1/sqrt(E)), biases zero.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights)``, the
    weights None when ``need_weights`` is False. They are the weights after dropout, as
    PyTorch's. Masks, as PyTorch's: ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or
    (N * num_heads, L, S); a bool mask is True where attention is **not** allowed, a float mask
    is added to the scores. ``is_causal=True`` without an ``attn_mask`` uses
    :func:`causal_mask` (PyTorch requires the mask itself).

    ``backward(d_attn_output, d_attn_weights=None)`` returns ``(dq, dk, dv)``, then one entry
    per further positional argument of the forward: the gradient of a float mask, None for a
    bool mask or an option.

    Args:
        embed_dim: E, the query and output feature size; divisible by num_heads.
        num_heads: the number of heads.
        dropout: the probability of dropping an attention weight in training.
        bias: learn the projection biases.
        kdim, vdim: the key and value feature sizes (None: embed_dim).
        batch_first: whether inputs and output are (N, L, E).
        rng: the generator for the initial weights, then for dropout (None: a fresh one).
        dtype: floating dtype of the parameters and of the computation.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.embed_dim = check_int("MultiheadAttention embed_dim", embed_dim, 1)
        self.num_heads = check_int("MultiheadAttention num_heads", num_heads, 1)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"MultiheadAttention embed_dim ({embed_dim}) must be divisible by num_heads "
                f"({num_heads})"
            )
        self.kdim = self.embed_dim if kdim is None else check_int("kdim", kdim, 1)
        self.vdim = self.embed_dim if vdim is None else check_int("vdim", vdim, 1)
        self.dropout = check_real("MultiheadAttention dropout", dropout, 0.0)
        if self.dropout >= 1.0:
            raise ValueError(f"MultiheadAttention dropout must be in [0, 1), got {dropout}")
        for flag, value in (("bias", bias), ("batch_first", batch_first)):
            if type(value) is not bool:
                raise TypeError(f"MultiheadAttention {flag} must be True or False, got {value!r}")
        self.batch_first = batch_first
        self.head_dim = self.embed_dim // self.num_heads
        e = self.embed_dim
        self.packed = self.kdim == e and self.vdim == e
        if self.packed:
            self.in_proj_weight = Parameter(np.zeros((3 * e, e)), dtype=dtype)
        else:
            self.q_proj_weight = Parameter(np.zeros((e, e)), dtype=dtype)
            self.k_proj_weight = Parameter(np.zeros((e, self.kdim)), dtype=dtype)
            self.v_proj_weight = Parameter(np.zeros((e, self.vdim)), dtype=dtype)
        self.in_proj_bias = Parameter(np.zeros(3 * e), dtype=dtype) if bias else None
        self.out_proj: dict[str, Parameter] = {"weight": Parameter(np.zeros((e, e)), dtype=dtype)}
        if bias:
            self.out_proj["bias"] = Parameter(np.zeros(e), dtype=dtype)
        generator = as_generator(rng)
        if self.dropout > 0:
            self.rng = generator  # attention dropout; saved and restored with the model
        self._cache: _AttentionCache | None = None
        self.reset_parameters(generator)

    def reset_parameters(self, rng: np.random.Generator | None = None) -> None:
        """PyTorch's initialisation (see the class docstring)."""
        rng = as_generator(rng)
        for weight in self._input_weights():
            weight.data[...] = init.xavier_uniform(weight.shape, rng)
        if self.in_proj_bias is not None:
            self.in_proj_bias.data[...] = 0
        bound = 1.0 / math.sqrt(self.embed_dim)
        self.out_proj["weight"].data[...] = rng.uniform(-bound, bound, (self.embed_dim,) * 2)
        if "bias" in self.out_proj:
            self.out_proj["bias"].data[...] = 0

    def _input_weights(self) -> list[Parameter]:
        if self.packed:
            return [self.in_proj_weight]
        return [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight]

    def _projection(self, which: int) -> tuple[Array, Array | None]:
        """W and b of the query (0), key (1) or value (2) projection, as views."""
        e = self.embed_dim
        weight = (
            self.in_proj_weight.data[which * e : (which + 1) * e]
            if self.packed
            else self._input_weights()[which].data
        )
        bias = self.in_proj_bias
        return weight, None if bias is None else bias.data[which * e : (which + 1) * e]

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.out_proj["weight"].dtype

    def _describe(self) -> str:
        return f"MultiheadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads})"

    # -- forward ---------------------------------------------------------------------------
    def forward(  # type: ignore[override]  # PyTorch's keyword arguments
        self, query: Any, key: Any, value: Any, *options: Any, **keywords: Any
    ) -> Any:
        """``forward(query, key, value, key_padding_mask=None, need_weights=True,
        attn_mask=None, average_attn_weights=True, is_causal=False)``, PyTorch's arguments,
        positional or by keyword; returns ``(attn_output, attn_weights or None)``."""
        settings = bind_options(self._describe(), _OPTIONS, 3, options, keywords)
        y, weights = self.attend(query, key, value, **settings)
        if self._cache is not None:
            self._cache.positional = len(options)
        return y, weights

    def attend(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Array, Array | None]:
        """The forward computation (``forward`` is this plus bookkeeping of the arguments).

        Self-attention on one array (``query is key is value``) projects it with one matrix
        product; :meth:`backward_self` then returns the summed input gradient.
        """
        same = query is key and key is value
        q_in = self._check("query", query, self.embed_dim)
        k_in = q_in if same else self._check("key", key, self.kdim)
        v_in = q_in if same else self._check("value", value, self.vdim)
        n_axis = 0 if self.batch_first else 1
        n, length = q_in.shape[n_axis], q_in.shape[1 - n_axis]
        source = k_in.shape[1 - n_axis]
        if not same and (
            k_in.shape[n_axis] != n or v_in.shape[n_axis] != n or v_in.shape[1 - n_axis] != source
        ):
            raise ValueError(
                f"{self._describe()} got query {q_in.shape}, key {k_in.shape} and value "
                f"{v_in.shape}: the batch sizes must agree, and key and value must have the "
                f"same length (batch_first={self.batch_first})"
            )
        if is_causal and attn_mask is None:
            attn_mask = causal_mask(length, source)
        mask, mask_info = self._masks(key_padding_mask, attn_mask, n, length, source)
        if self.packed and same:
            q, k, v = self._project_packed(q_in)
        else:
            q, k, v = (self._project(x, i) for i, x in enumerate((q_in, k_in, v_in)))
        scale = 1.0 / math.sqrt(self.head_dim)
        q *= scale
        scores = q @ k.transpose(0, 1, 3, 2)  # (N, h, L, S)
        dead = None
        if mask is not None:
            scores += mask
            if scores.size:
                top = np.maximum.reduce(scores, axis=-1, keepdims=True)
                dead_rows = np.isneginf(top)
                if dead_rows.any():
                    dead = dead_rows
                    np.copyto(scores, 0, where=dead)
        weights = functional.softmax(scores, axis=-1)
        if dead is not None:
            np.copyto(weights, 0, where=dead)
        keep = None
        dropped = weights
        if self.training and self.dropout > 0:
            keep = (self.rng.random(weights.shape) >= self.dropout).astype(weights.dtype)
            keep *= 1.0 / (1.0 - self.dropout)
            dropped = weights * keep
        o = dropped @ v  # (N, h, L, d)
        o2 = self._merge_heads(o)
        w_o = self.out_proj["weight"].data
        y2 = o2 @ w_o.T
        if "bias" in self.out_proj:
            y2 += self.out_proj["bias"].data
        rows_shape = (n, length) if self.batch_first else (length, n)
        y = y2.reshape(*rows_shape, self.embed_dim)
        self._cache = _AttentionCache(
            (q_in, k_in, v_in),
            same,
            q,
            k,
            v,
            weights,
            dropped,
            keep,
            o2,
            mask_info,
            (n, length, source),
            need_weights,
            average_attn_weights,
        )
        if not need_weights:
            return y, None
        out_weights = dropped.mean(axis=1) if average_attn_weights else dropped
        return y, out_weights

    def _check(self, what: str, x: Any, features: int) -> Array:
        array = as_float_array(x, self.dtype)
        if array.ndim != 3 or array.shape[2] != features:
            layout = "(N, {0}, {1})" if self.batch_first else "({0}, N, {1})"
            length = "L" if what == "query" else "S"
            raise ValueError(
                f"{self._describe()} expected {what} of shape {layout.format(length, features)}"
                f" (batch_first={self.batch_first}), got {array.shape}"
                + ("; unbatched 2-D inputs are not supported" if array.ndim == 2 else "")
            )
        return array

    def _split_heads(self, x2: Array, rows: tuple[int, int]) -> Array:
        """(rows, E) in the input layout -> (N, h, length, d), contiguous."""
        h, d = self.num_heads, self.head_dim
        x = x2.reshape(*rows, h, d)
        axes = (0, 2, 1, 3) if self.batch_first else (1, 2, 0, 3)
        return np.ascontiguousarray(x.transpose(axes))

    def _merge_heads(self, x: Array) -> Array:
        """(N, h, length, d) -> (rows, E) in the input layout."""
        axes = (0, 2, 1, 3) if self.batch_first else (2, 0, 1, 3)
        merged: Array = x.transpose(axes).reshape(-1, self.embed_dim)
        return merged

    def _rows(self, x: Array) -> tuple[int, int]:
        return (x.shape[0], x.shape[1])

    def _project(self, x: Array, which: int) -> Array:
        weight, bias = self._projection(which)
        x2 = x.reshape(-1, x.shape[2])
        p = x2 @ weight.T
        if bias is not None:
            p += bias
        return self._split_heads(p, self._rows(x))

    def _project_packed(self, x: Array) -> tuple[Array, Array, Array]:
        x2 = x.reshape(-1, self.embed_dim)
        p = x2 @ self.in_proj_weight.data.T
        if self.in_proj_bias is not None:
            p += self.in_proj_bias.data
        h, d = self.num_heads, self.head_dim
        p5 = p.reshape(*self._rows(x), 3, h, d)
        axes = (2, 0, 3, 1, 4) if self.batch_first else (2, 1, 3, 0, 4)
        qkv = np.ascontiguousarray(p5.transpose(axes))  # (3, N, h, L, d)
        return qkv[0], qkv[1], qkv[2]

    def _masks(
        self, key_padding_mask: Any, attn_mask: Any, n: int, length: int, source: int
    ) -> tuple[Array | None, list[tuple[str, tuple[int, ...]] | None]]:
        """The masks as one additive array broadcastable to (N, h, L, S), and, for each given
        float mask, its name and shape (so backward can return its gradient)."""
        h = self.num_heads
        total: Array | None = None
        info: list[tuple[str, tuple[int, ...]] | None] = [None, None]
        specs: tuple[tuple[str, Any, list[tuple[int, ...]]], ...] = (
            ("key_padding_mask", key_padding_mask, [(n, source)]),
            ("attn_mask", attn_mask, [(length, source), (n * h, length, source)]),
        )
        for slot, (name, mask, shapes) in enumerate(specs):
            if mask is None:
                continue
            array = np.asarray(mask)
            if array.dtype.kind not in "bf":
                raise TypeError(
                    f"{self._describe()} {name} must be bool (True: not allowed) or floating "
                    f"(added to the scores), got dtype {array.dtype}"
                )
            if array.shape not in shapes:
                raise ValueError(
                    f"{self._describe()} expected {name} of shape "
                    f"{' or '.join(str(s) for s in shapes)} for query length {length}, key "
                    f"length {source} and batch {n}, got {array.shape}"
                )
            if array.dtype.kind == "b":
                additive = np.where(array, -np.inf, 0.0).astype(self.dtype)
            else:
                additive = as_float_array(array, self.dtype)
                info[slot] = (name, array.shape)
            if slot == 0:
                additive = additive[:, None, None, :]
            elif additive.ndim == 3:
                additive = additive.reshape(n, h, length, source)
            total = additive if total is None else total + additive
        return total, info

    # -- backward --------------------------------------------------------------------------
    def backward(self, grad_attn_output: Any, grad_attn_weights: Any = None) -> Any:
        cache = self._cache
        if cache is None:
            raise self._no_cache_error()
        dq, dk, dv, mask_grads = self._backward(grad_attn_output, grad_attn_weights, False)
        # one gradient per positional input: the float masks' gradients, None for the rest
        rest = [mask_grads[0], None, mask_grads[1], None, None][: cache.positional]
        return (dq, dk, dv, *rest)

    def backward_self(self, grad_attn_output: Any) -> tuple[Array, list[Array | None]]:
        """Backward of a self-attention :meth:`attend` call (query, key and value one array):
        the summed input gradient, and the gradients of the float masks (or None)."""
        dx, _, _, mask_grads = self._backward(grad_attn_output, None, True)
        return dx, mask_grads

    def _backward(
        self, grad_out: Any, grad_weights: Any, combine: bool
    ) -> tuple[Array, Array, Array, list[Array | None]]:
        cache = self._cache
        if cache is None:
            raise self._no_cache_error()
        n, length, source = cache.sizes
        h, e = self.num_heads, self.embed_dim
        dtype = cache.q.dtype
        rows_shape = (n, length) if self.batch_first else (length, n)
        dy = self.grad_like(grad_out, (*rows_shape, e), dtype).reshape(-1, e)
        w_o = self.out_proj["weight"]
        w_o.add_grad_matmul(dy.T, cache.o2)
        if "bias" in self.out_proj:
            self.out_proj["bias"].add_grad_sum(dy, axis=0)
        do = self._split_heads(dy @ w_o.data, rows_shape)  # (N, h, L, d)
        d_dropped = do @ cache.v.transpose(0, 1, 3, 2)  # (N, h, L, S)
        if grad_weights is not None:
            if not cache.need_weights:
                raise ValueError(
                    f"{self._describe()}.backward() got a gradient for the attention weights, "
                    "but the forward had need_weights=False and returned None"
                )
            shape: tuple[int, ...] = (
                (n, length, source) if cache.average else (n, h, length, source)
            )
            dw = self.grad_like(grad_weights, shape, dtype)
            d_dropped += dw[:, None] * (1.0 / h) if cache.average else dw
        dv = cache.dropped.transpose(0, 1, 3, 2) @ do  # (N, h, S, d)
        da = d_dropped if cache.keep is None else d_dropped * cache.keep
        a = cache.weights
        ds = da
        ds -= np.sum(da * a, axis=-1, keepdims=True)
        ds *= a  # dS = A * (dA - sum(dA * A))
        scale = 1.0 / math.sqrt(self.head_dim)
        dq = ds @ cache.k
        dq *= scale
        dk = ds.transpose(0, 1, 3, 2) @ cache.q  # q is already scaled
        mask_grads: list[Array | None] = [None, None]
        for slot, spec in enumerate(cache.mask_info):
            if spec is None:
                continue
            _, shape = spec
            if slot == 0:
                mask_grads[0] = ds.sum(axis=(1, 2))
            elif len(shape) == 2:
                mask_grads[1] = ds.sum(axis=(0, 1))
            else:
                mask_grads[1] = ds.reshape(shape).copy()
        q_in, k_in, v_in = cache.inputs
        if cache.same and self.packed:
            dqkv = np.stack([self._merge_heads(g) for g in (dq, dk, dv)], axis=1)
            dqkv2 = dqkv.reshape(-1, 3 * e)
            x2 = q_in.reshape(-1, e)
            self.in_proj_weight.add_grad_matmul(dqkv2.T, x2)
            if self.in_proj_bias is not None:
                self.in_proj_bias.add_grad_sum(dqkv2, axis=0)
            w = self.in_proj_weight.data
            if combine:
                dx: Array = (dqkv2 @ w).reshape(q_in.shape)
                return dx, dx, dx, mask_grads
            dxs = [
                (dqkv2[:, i * e : (i + 1) * e] @ w[i * e : (i + 1) * e]).reshape(q_in.shape)
                for i in range(3)
            ]
            return dxs[0], dxs[1], dxs[2], mask_grads
        grads = []
        for which, (g, x) in enumerate(zip((dq, dk, dv), (q_in, k_in, v_in), strict=True)):
            g2 = self._merge_heads(g)
            x2 = x.reshape(-1, x.shape[2])
            self._add_projection_grad(which, g2, x2)
            weight, _ = self._projection(which)
            grads.append((g2 @ weight).reshape(x.shape))
        if combine:
            total: Array = grads[0] + grads[1] + grads[2]
            return total, total, total, mask_grads
        return grads[0], grads[1], grads[2], mask_grads

    def _add_projection_grad(self, which: int, g2: Array, x2: Array) -> None:
        e = self.embed_dim
        if self.packed:
            self.in_proj_weight.grad[which * e : (which + 1) * e] += g2.T @ x2
        else:
            self._input_weights()[which].add_grad_matmul(g2.T, x2)
        if self.in_proj_bias is not None:
            self.in_proj_bias.grad[which * e : (which + 1) * e] += g2.sum(axis=0)

    def get_config(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "bias": self.in_proj_bias is not None,
            "kdim": self.kdim,
            "vdim": self.vdim,
            "batch_first": self.batch_first,
            "dtype": self.dtype.name,
        }


class _AttentionCache:
    """What backward needs from the last forward."""

    def __init__(
        self,
        inputs: tuple[Array, Array, Array],
        same: bool,
        q: Array,
        k: Array,
        v: Array,
        weights: Array,
        dropped: Array,
        keep: Array | None,
        o2: Array,
        mask_info: list[tuple[str, tuple[int, ...]] | None],
        sizes: tuple[int, int, int],
        need_weights: bool,
        average: bool,
    ) -> None:
        self.inputs = inputs
        self.same = same
        self.q, self.k, self.v = q, k, v
        self.weights = weights
        self.dropped = dropped
        self.keep = keep
        self.o2 = o2
        self.mask_info = mask_info
        self.sizes = sizes
        self.need_weights = need_weights
        self.average = average
        self.positional = 0


_OPTIONS = {
    "key_padding_mask": None,
    "need_weights": True,
    "attn_mask": None,
    "average_attn_weights": True,
    "is_causal": False,
}
"""The arguments of MultiheadAttention.forward after (query, key, value), with defaults."""
