"""The Transformer encoder: PyTorch's ``nn.TransformerEncoderLayer`` and
``nn.TransformerEncoder``, with their arguments, equations and parameter names.

One layer, with ``SA(x) = dropout1(self_attn(x, x, x)[0])`` and
``FF(x) = dropout2(linear2(dropout(act(linear1(x)))))``::

    norm_first=False (PyTorch's default, post-norm):   x = norm1(x + SA(x));  y = norm2(x + FF(x))
    norm_first=True  (pre-norm):                       x = x + SA(norm1(x));  y = x + FF(norm2(x))

Backward follows the same lines in reverse; at each residual sum the gradient goes to both
terms (post-norm: ``d = norm2.backward(dy); dx1 = d + FF.backward(d)``, and so on).

A decoder-only (GPT-style) model is this encoder with a causal mask: ``is_causal=True``
(or ``src_mask=nnkit.causal_mask(L)``) lets position i attend to positions <= i only.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nnkit._checks import as_generator, check_int, check_real
from nnkit.containers import Container
from nnkit.layers._options import bind_options
from nnkit.layers.activations import GELU, ReLU
from nnkit.layers.attention import MultiheadAttention, causal_mask
from nnkit.layers.dropout import Dropout
from nnkit.layers.normalization import LayerNorm
from nnkit.module import Array, Module, as_float_array
from nnkit.parameter import Parameter

__all__ = ["TransformerEncoder", "TransformerEncoderLayer"]

_LAYER_OPTIONS = {"src_mask": None, "src_key_padding_mask": None, "is_causal": False}
_ENCODER_OPTIONS = {"mask": None, "src_key_padding_mask": None, "is_causal": False}


def _linear(
    in_features: int, out_features: int, bias: bool, dtype: DTypeLike, rng: np.random.Generator
) -> dict[str, Parameter]:
    """A fully connected map in PyTorch's ``nn.Linear`` layout and initialisation: weight
    (out, in), bias (out,), both from U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / math.sqrt(in_features)
    params = {
        "weight": Parameter(rng.uniform(-bound, bound, (out_features, in_features)), dtype=dtype)
    }
    if bias:
        params["bias"] = Parameter(rng.uniform(-bound, bound, out_features), dtype=dtype)
    return params


class TransformerEncoderLayer(Module):
    """One Transformer encoder layer (PyTorch's ``nn.TransformerEncoderLayer``); the
    equations are in this module's docstring.

    Shapes: src and the output (S, N, d_model), or (N, S, d_model) with ``batch_first=True``.

    Parameters, with PyTorch's names and shapes so a PyTorch state dict loads unchanged:
    ``self_attn.in_proj_weight`` (3 d_model, d_model), ``self_attn.in_proj_bias``,
    ``self_attn.out_proj.weight`` / ``.bias``, ``linear1.weight`` (dim_feedforward, d_model),
    ``linear1.bias``, ``linear2.weight`` (d_model, dim_feedforward), ``linear2.bias``,
    ``norm1.weight`` / ``.bias``, ``norm2.weight`` / ``.bias``. ``linear1`` and ``linear2``
    are in ``nn.Linear``'s (out, in) layout, kept as dicts of two Parameters (nnkit's
    ``Dense`` stores (in, out)), with ``nn.Linear``'s initialisation.

    ``activation``: ``"relu"``, or ``"gelu"``, which is nnkit's GELU, the tanh form (PyTorch's
    ``"gelu"`` is the exact erf form; the two differ by less than 1e-3, and
    ``activation=lambda x: F.gelu(x, approximate="tanh")`` in PyTorch matches nnkit exactly).

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``: the masks
    as :class:`MultiheadAttention`'s ``attn_mask`` and ``key_padding_mask``; ``is_causal=True``
    without a mask uses :func:`nnkit.causal_mask`. ``causal=True`` (an nnkit addition, keyword
    only) does so on every forward, so a causal layer works inside ``Sequential`` and ``fit``,
    which pass the input alone. ``backward(dy)`` returns ``dsrc``, then,
    for each further positional argument, the gradient of a float mask (None for a bool mask
    or the flag).

    Dropout (attention weights, after the activation, on both residual branches) draws from
    four generators spawned from ``rng``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        *,
        causal: bool = False,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.d_model = check_int("TransformerEncoderLayer d_model", d_model, 1)
        self.nhead = check_int("TransformerEncoderLayer nhead", nhead, 1)
        self.dim_feedforward = check_int(
            "TransformerEncoderLayer dim_feedforward", dim_feedforward, 1
        )
        self.dropout_p = check_real("TransformerEncoderLayer dropout", dropout, 0.0)
        if activation not in ("relu", "gelu"):
            raise ValueError(
                f"TransformerEncoderLayer activation must be 'relu' or 'gelu', got {activation!r}"
            )
        for flag, value in (
            ("batch_first", batch_first),
            ("norm_first", norm_first),
            ("bias", bias),
            ("causal", causal),
        ):
            if type(value) is not bool:
                raise TypeError(
                    f"TransformerEncoderLayer {flag} must be True or False, got {value!r}"
                )
        self.activation_name = activation
        self.layer_norm_eps = float(layer_norm_eps)
        self.batch_first = batch_first
        self.norm_first = norm_first
        self.bias = bias
        self.causal = causal
        generator = as_generator(rng)
        streams = generator.spawn(4)
        # Attribute order gives PyTorch's state-dict order.
        self.self_attn = MultiheadAttention(
            d_model,
            nhead,
            dropout=self.dropout_p,
            bias=bias,
            batch_first=batch_first,
            rng=streams[0],
            dtype=dtype,
        )
        self.linear1 = _linear(self.d_model, self.dim_feedforward, bias, dtype, generator)
        self.dropout = Dropout(self.dropout_p, rng=streams[1])
        self.linear2 = _linear(self.dim_feedforward, self.d_model, bias, dtype, generator)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(self.dropout_p, rng=streams[2])
        self.dropout2 = Dropout(self.dropout_p, rng=streams[3])
        self.activation: Module = ReLU() if activation == "relu" else GELU()
        self._cache: tuple[tuple[int, ...], int] | None = None  # src shape, positional count
        self._ff: tuple[Array, Array] | None = None  # linear1's input, linear2's input

    def _describe(self) -> str:
        return f"TransformerEncoderLayer(d_model={self.d_model}, nhead={self.nhead})"

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.linear1["weight"].dtype

    def forward(self, src: Any, *options: Any, **keywords: Any) -> Array:  # type: ignore[override]
        """``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``."""
        settings = bind_options(self._describe(), _LAYER_OPTIONS, 1, options, keywords)
        return self.encode(
            src,
            settings["src_mask"],
            settings["src_key_padding_mask"],
            settings["is_causal"],
            len(options),
        )

    def encode(
        self, src: Any, mask: Any, key_padding_mask: Any, is_causal: bool, positional: int = 0
    ) -> Array:
        """The forward computation; ``positional`` is how many of the options backward must
        return gradients for."""
        x = as_float_array(src, self.dtype)
        if x.ndim != 3 or x.shape[2] != self.d_model:
            layout = "(N, S, {})" if self.batch_first else "(S, N, {})"
            raise ValueError(
                f"{self._describe()} expected src of shape {layout.format(self.d_model)} "
                f"(batch_first={self.batch_first}), got {x.shape}"
            )
        if (is_causal or self.causal) and mask is None:
            mask = causal_mask(x.shape[1] if self.batch_first else x.shape[0])
        masks = (key_padding_mask, mask)
        if self.norm_first:
            x1 = x + self._self_attention(self.norm1(x), masks)
            y: Array = x1 + self._feed_forward(self.norm2(x1))
        else:
            x1 = self.norm1(x + self._self_attention(x, masks))
            y = self.norm2(x1 + self._feed_forward(x1))
        self._cache = (x.shape, positional)
        return y

    def _self_attention(self, x: Array, masks: tuple[Any, Any]) -> Array:
        out, _ = self.self_attn.attend(
            x, x, x, key_padding_mask=masks[0], need_weights=False, attn_mask=masks[1]
        )
        dropped: Array = self.dropout1(out)
        return dropped

    def _feed_forward(self, x: Array) -> Array:
        x2 = x.reshape(-1, self.d_model)
        h = x2 @ self.linear1["weight"].data.T
        if "bias" in self.linear1:
            h += self.linear1["bias"].data
        h = self.dropout(self.activation(h))
        y = h @ self.linear2["weight"].data.T
        if "bias" in self.linear2:
            y += self.linear2["bias"].data
        self._ff = (x2, h)
        out: Array = self.dropout2(y.reshape(x.shape))
        return out

    # -- backward --------------------------------------------------------------------------
    def backward(self, grad_out: Any) -> Any:
        dx, mask_grads = self.backward_masks(grad_out)
        _, positional = self._checked_cache()
        rest = [mask_grads[1], mask_grads[0], None][:positional]
        return dx if not rest else (dx, *rest)

    def _checked_cache(self) -> tuple[tuple[int, ...], int]:
        if self._cache is None:
            raise self._no_cache_error()
        return self._cache

    def backward_masks(self, grad_out: Any) -> tuple[Array, list[Array | None]]:
        """dsrc and the gradients of [key_padding_mask, src_mask] (None unless float)."""
        shape, _ = self._checked_cache()
        dy = self.grad_like(grad_out, shape, self.dtype)
        if self.norm_first:
            d_ff = self.norm2.backward(self._feed_forward_backward(dy))
            dx1 = dy + d_ff
            d_sa, mask_grads = self._self_attention_backward(dx1)
            dx = dx1 + self.norm1.backward(d_sa)
        else:
            d = self.norm2.backward(dy)
            dx1 = d + self._feed_forward_backward(d)
            d = self.norm1.backward(dx1)
            d_sa, mask_grads = self._self_attention_backward(d)
            dx = d + d_sa
        return dx, mask_grads

    def _self_attention_backward(self, d: Array) -> tuple[Array, list[Array | None]]:
        return self.self_attn.backward_self(self.dropout1.backward(d))

    def _feed_forward_backward(self, d: Array) -> Array:
        if self._ff is None:
            raise self._no_cache_error()
        x2, h = self._ff
        dy2 = self.dropout2.backward(d).reshape(-1, self.d_model)
        w1, w2 = self.linear1["weight"], self.linear2["weight"]
        w2.add_grad_matmul(dy2.T, h)
        if "bias" in self.linear2:
            self.linear2["bias"].add_grad_sum(dy2, axis=0)
        dh = self.activation.backward(self.dropout.backward(dy2 @ w2.data))
        w1.add_grad_matmul(dh.T, x2)
        if "bias" in self.linear1:
            self.linear1["bias"].add_grad_sum(dh, axis=0)
        dx: Array = (dh @ w1.data).reshape(d.shape)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {
            "d_model": self.d_model,
            "nhead": self.nhead,
            "dim_feedforward": self.dim_feedforward,
            "dropout": self.dropout_p,
            "activation": self.activation_name,
            "layer_norm_eps": self.layer_norm_eps,
            "batch_first": self.batch_first,
            "norm_first": self.norm_first,
            "bias": self.bias,
            "causal": self.causal,
            "dtype": self.dtype.name,
        }


class TransformerEncoder(Container):
    """A stack of ``num_layers`` copies of ``encoder_layer`` (PyTorch's
    ``nn.TransformerEncoder``), then ``norm`` if given.

    Each copy is a deep copy, as in PyTorch, so parameters are named ``layers.0.self_attn.
    in_proj_weight``, ``layers.1.linear1.weight``, ... (and ``norm.weight``). Copy i's
    dropout generators are the template's jumped i times (or reseeded from it, for a bit
    generator that cannot jump), so the layers draw independent masks.

    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=False)`` runs every layer
    with the same masks; ``backward(dy)`` returns ``dsrc``, then one entry per further
    positional argument (a float mask's gradient, summed over the layers, or None).

    Args:
        encoder_layer: a :class:`TransformerEncoderLayer` (copied, not used itself).
        num_layers: the number of layers.
        norm: a final normalisation (a LayerNorm), or None.
        causal: apply :func:`nnkit.causal_mask` on every forward without a mask, as
            ``is_causal=True`` does (an nnkit addition: a decoder-only model then works
            inside ``Sequential`` and ``fit``).
    """

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm: Module | None = None,
        *,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(encoder_layer, TransformerEncoderLayer):
            raise TypeError(
                "TransformerEncoder takes a TransformerEncoderLayer instance, got "
                f"{type(encoder_layer).__name__}"
            )
        count = check_int("TransformerEncoder num_layers", num_layers, 1)
        if type(causal) is not bool:
            raise TypeError(f"TransformerEncoder causal must be True or False, got {causal!r}")
        self.causal = causal
        self.layers: list[TransformerEncoderLayer] = []
        for i in range(count):
            layer = copy.deepcopy(encoder_layer)
            for _, generator in layer.named_generators():
                _jump(generator, i)
            self._adopt(layer, f"layer {i}")
            self.layers.append(layer)
        self.norm = None if norm is None else self._adopt(norm, "norm")
        self._positional = 0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TransformerEncoder:
        """Rebuild from ``get_config()``: the saved first layer is kept as layer 0 (loading
        passes it in, and checks that it is kept), the others are its copies."""
        first = config["encoder_layer"]
        encoder = cls(
            first, config["num_layers"], config.get("norm"), causal=config.get("causal", False)
        )
        encoder.layers[0] = first
        return encoder

    def forward(self, src: Any, *options: Any, **keywords: Any) -> Array:  # type: ignore[override]
        """``forward(src, mask=None, src_key_padding_mask=None, is_causal=False)``."""
        settings = bind_options("TransformerEncoder", _ENCODER_OPTIONS, 1, options, keywords)
        mask, padding = settings["mask"], settings["src_key_padding_mask"]
        x = src
        for i, layer in enumerate(self.layers):
            try:
                x = layer.encode(x, mask, padding, settings["is_causal"] or self.causal)
            except Exception as exc:
                self._note(exc, "forward", f"layers.{i}", layer)
                raise
        if self.norm is not None:
            x = self._forward_child("norm", self.norm, x)
        self._positional = len(options)
        out: Array = x
        return out

    def backward(self, grad_out: Any) -> Any:
        if not self.layers or self.layers[-1]._cache is None:
            raise self._no_cache_error()
        d = grad_out if self.norm is None else self._backward_child("norm", self.norm, grad_out)
        totals: list[Array | None] = [None, None]
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            try:
                d, mask_grads = layer.backward_masks(d)
            except Exception as exc:
                self._note(exc, "backward", f"layers.{i}", layer)
                raise
            for slot, g in enumerate(mask_grads):
                if g is not None:
                    current = totals[slot]
                    totals[slot] = g if current is None else current + g
        rest = [totals[1], totals[0], None][: self._positional]
        return d if not rest else (d, *rest)

    def get_config(self) -> dict[str, Any]:
        return {
            "encoder_layer": self.layers[0],
            "num_layers": len(self.layers),
            "norm": self.norm,
            "causal": self.causal,
        }


def _jump(generator: np.random.Generator, times: int) -> None:
    """Move ``generator`` to an independent stream: its bit generator jumped ``times`` times,
    or, for one that cannot jump, reseeded from its own draws."""
    if times == 0:
        return
    bit_generator = generator.bit_generator
    jumped = getattr(bit_generator, "jumped", None)
    if callable(jumped):
        bit_generator.state = jumped(times).state
    else:
        seed = generator.integers(2**63, size=4)
        bit_generator.state = type(bit_generator)(seed).state
