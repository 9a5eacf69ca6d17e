"""Recurrent layers, attention and the Transformer encoder against PyTorch, in float64:
outputs, final states, input and state gradients and every parameter gradient, after loading
the torch module's state dict (converted to NumPy) unchanged with load_state_dict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import nnkit

torch = pytest.importorskip("torch")
F = torch.nn.functional

ATOL = 1e-10


def t(a: Any, grad: bool = False) -> Any:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def numpy_state(module: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def load_from_torch(ours: nnkit.Module, theirs: Any) -> None:
    state = numpy_state(theirs)
    assert list(state) == [name for name, _ in ours.named_parameters()]  # names and order
    ours.load_state_dict(state)


def close(ours: Any, theirs: Any) -> None:
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=ATOL)


def check_param_grads(ours: nnkit.Module, theirs: Any) -> None:
    grads = {name: p.grad for name, p in ours.named_parameters()}
    for name, param in theirs.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=ATOL)


# -- recurrent layers ----------------------------------------------------------------------------

RECURRENT = [
    (kind, layers, bidirectional, batch_first, h0)
    for kind in ("RNN", "LSTM", "GRU")
    for layers in (1, 2)
    for bidirectional in (False, True)
    for batch_first in (False, True)
    for h0 in (False, True)
]


def run_recurrent(
    kind: str,
    layers: int,
    bidirectional: bool,
    batch_first: bool,
    h0: bool,
    training: bool = True,
    **options: Any,
) -> None:
    rng = np.random.default_rng(0)
    t_len, n, features, hidden = 5, 3, 4, 6
    kwargs = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    kwargs.update(options)
    theirs = getattr(torch.nn, kind)(features, hidden, **kwargs).double().train(training)
    ours = getattr(nnkit, kind)(features, hidden, **kwargs, dtype=np.float64).train(training)
    load_from_torch(ours, theirs)
    x = rng.normal(size=(n, t_len, features) if batch_first else (t_len, n, features))
    state_shape = (layers * (2 if bidirectional else 1), n, hidden)
    h_init, c_init = rng.normal(size=state_shape), rng.normal(size=state_shape)
    tx, th, tc = t(x, True), t(h_init, True), t(c_init, True)
    lstm = kind == "LSTM"
    if lstm:
        t_out, (t_h, t_c) = theirs(tx, (th, tc)) if h0 else theirs(tx)
        out, (h_n, c_n) = ours(x, (h_init, c_init)) if h0 else ours(x)
    else:
        t_out, t_h = theirs(tx, th) if h0 else theirs(tx)
        out, h_n = ours(x, h_init) if h0 else ours(x)
    close(out, t_out)
    close(h_n, t_h)
    g_out, g_h, g_c = (rng.normal(size=a.shape) for a in (out, h_n, h_n))
    loss = (t_out * t(g_out)).sum() + (t_h * t(g_h)).sum()
    if lstm:
        close(c_n, t_c)
        loss = loss + (t_c * t(g_c)).sum()
    loss.backward()
    grads = ours.backward(g_out, (g_h, g_c)) if lstm else ours.backward(g_out, g_h)
    if not h0:
        close(grads, tx.grad)  # one input, one gradient
    elif lstm:
        dx, (dh0, dc0) = grads
        close(dx, tx.grad)
        close(dh0, th.grad)
        close(dc0, tc.grad)
    else:
        dx, dh0 = grads
        close(dx, tx.grad)
        close(dh0, th.grad)
    check_param_grads(ours, theirs)


@pytest.mark.parametrize(
    "kind, layers, bidirectional, batch_first, h0",
    RECURRENT,
    ids=[
        f"{k}-L{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tm'}-{'h0' if h else 'none'}"
        for k, n, b, f, h in RECURRENT
    ],
)
def test_recurrent_matches_torch(
    kind: str, layers: int, bidirectional: bool, batch_first: bool, h0: bool
) -> None:
    run_recurrent(kind, layers, bidirectional, batch_first, h0)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_without_bias_matches_torch(kind: str) -> None:
    run_recurrent(kind, 2, True, False, True, bias=False)


def test_relu_rnn_matches_torch() -> None:
    run_recurrent("RNN", 2, True, True, True, nonlinearity="relu")


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_inter_layer_dropout_is_off_in_eval_mode(kind: str) -> None:
    run_recurrent(kind, 2, True, False, True, training=False, dropout=0.5)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_gradients_of_the_final_state_alone(kind: str) -> None:
    """Only h_n used (a classifier on the final state): d_output is None."""
    rng = np.random.default_rng(1)
    theirs = getattr(torch.nn, kind)(3, 4, num_layers=2).double()
    ours = getattr(nnkit, kind)(3, 4, num_layers=2, dtype=np.float64)
    load_from_torch(ours, theirs)
    x = rng.normal(size=(6, 2, 3))
    tx = t(x, True)
    t_result = theirs(tx)
    ours(x)
    t_h = t_result[1][0] if kind == "LSTM" else t_result[1]
    g = rng.normal(size=t_h.shape)
    (t_h * t(g)).sum().backward()
    dx = ours.backward(None, (g, None)) if kind == "LSTM" else ours.backward(None, g)
    close(dx, tx.grad)
    check_param_grads(ours, theirs)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_final_state_classifier_matches_torch(kind: str) -> None:
    """Sequential(rnn, FinalState(), Dense) against torch.cat([h_n[-2], h_n[-1]], 1)."""
    rng = np.random.default_rng(5)
    theirs = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    theirs = theirs.double()
    head = torch.nn.Linear(8, 2).double()
    ours = nnkit.Sequential(
        getattr(nnkit, kind)(3, 4, 2, bidirectional=True, batch_first=True, dtype=np.float64),
        nnkit.FinalState(),
        nnkit.Dense(8, 2, dtype=np.float64),
    )
    load_from_torch(ours[0], theirs)
    ours[2].weight.data[...] = head.weight.detach().numpy().T
    ours[2].bias.data[...] = head.bias.detach().numpy()  # type: ignore[union-attr]
    x = rng.normal(size=(5, 6, 3))
    tx = t(x, True)
    state = theirs(tx)[1]
    h_n = state[0] if kind == "LSTM" else state
    t_y = head(torch.cat([h_n[-2], h_n[-1]], dim=1))
    y = ours(x)
    close(y, t_y)
    g = rng.normal(size=y.shape)
    (t_y * t(g)).sum().backward()
    close(ours.backward(g), tx.grad)
    check_param_grads(ours[0], theirs)


@pytest.mark.parametrize("kind, gates", [("RNN", 1), ("LSTM", 4), ("GRU", 3)])
def test_recurrent_parameters_have_torch_names_shapes_and_init(kind: str, gates: int) -> None:
    theirs = getattr(torch.nn, kind)(5, 16, num_layers=2, bidirectional=True)
    ours = getattr(nnkit, kind)(
        5, 16, num_layers=2, bidirectional=True, rng=np.random.default_rng(0)
    )
    expected = [(name, tuple(p.shape)) for name, p in theirs.named_parameters()]
    assert [(name, p.shape) for name, p in ours.named_parameters()] == expected
    assert ours.weight_ih_l1_reverse.shape == (gates * 16, 32)
    bound = 1 / math.sqrt(16)
    values = np.concatenate([p.data.ravel() for p in ours.parameters()])
    assert values.dtype == np.float32
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.95 * bound
    assert abs(values.mean()) < 0.02 and abs(values.std() - bound / math.sqrt(3)) < 0.01


# -- multi-head attention ------------------------------------------------------------------------


def padding(n: int, s: int) -> np.ndarray:
    mask = np.zeros((n, s), dtype=bool)
    mask[1, -2:] = True
    return mask


ATTENTION = {
    "plain": {},
    "batch_first": {"batch_first": True},
    "self": {"same": True},
    "self-batch_first-causal-padding": {
        "same": True,
        "batch_first": True,
        "attn_mask": "causal",
        "key_padding_mask": "bool",
    },
    "kdim-vdim": {"kdim": 3, "vdim": 6},
    "kdim-vdim-batch_first": {"kdim": 3, "vdim": 6, "batch_first": True},
    "bool-padding": {"key_padding_mask": "bool"},
    "float-padding-no-weights-no-bias": {
        "key_padding_mask": "float",
        "need_weights": False,
        "bias": False,
    },
    "float-mask": {"attn_mask": "float"},
    "bool-mask": {"attn_mask": "bool"},
    "per-head-float-mask": {"attn_mask": "float3d", "average_attn_weights": False},
    "dropout-in-eval": {"dropout": 0.5, "eval": True},
}


def key_padding(kind: str | None, rng: np.random.Generator, n: int, s: int) -> Any:
    if kind is None:
        return None
    return padding(n, s) if kind == "bool" else rng.normal(size=(n, s))


def attn_mask(
    kind: str | None, rng: np.random.Generator, n: int, h: int, length: int, s: int
) -> Any:
    if kind is None:
        return None
    return {
        "float": lambda: rng.normal(size=(length, s)),
        "float3d": lambda: rng.normal(size=(n * h, length, s)),
        "bool": lambda: rng.random((length, s)) < 0.3,
        "causal": lambda: nnkit.causal_mask(length, s),
    }[kind]()


@pytest.mark.parametrize("config", ATTENTION.values(), ids=list(ATTENTION))
def test_attention_matches_torch(config: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    e, h, length, s, n = 8, 2, 4, 5, 3
    batch_first, same = config.get("batch_first", False), config.get("same", False)
    kdim, vdim = config.get("kdim"), config.get("vdim")
    kwargs = dict(bias=config.get("bias", True), kdim=kdim, vdim=vdim, batch_first=batch_first)
    theirs = torch.nn.MultiheadAttention(e, h, dropout=config.get("dropout", 0.0), **kwargs)
    theirs = theirs.double()
    ours = nnkit.MultiheadAttention(
        e, h, dropout=config.get("dropout", 0.0), **kwargs, dtype=np.float64
    )
    if config.get("eval"):
        theirs.eval()
        ours.eval()
    load_from_torch(ours, theirs)
    if same:
        s = length

    def seq(length: int, dim: int | None) -> np.ndarray:
        dim = dim or e
        return rng.normal(size=(n, length, dim) if batch_first else (length, n, dim))

    q = seq(length, e)
    k, v = (q, q) if same else (seq(s, kdim), seq(s, vdim))
    tq = t(q, True)
    tk, tv = (tq, tq) if same else (t(k, True), t(v, True))
    kpm = key_padding(config.get("key_padding_mask"), rng, n, s)
    mask = attn_mask(config.get("attn_mask"), rng, n, h, length, s)
    options = dict(
        need_weights=config.get("need_weights", True),
        average_attn_weights=config.get("average_attn_weights", True),
    )
    t_out, t_w = theirs(
        tq,
        tk,
        tv,
        key_padding_mask=None if kpm is None else torch.tensor(kpm),
        attn_mask=None if mask is None else torch.tensor(mask),
        **options,
    )
    out, w = ours(q, k, v, key_padding_mask=kpm, attn_mask=mask, **options)
    close(out, t_out)
    g_out = rng.normal(size=out.shape)
    loss = (t_out * t(g_out)).sum()
    g_w = None
    if options["need_weights"]:
        close(w, t_w)
        g_w = rng.normal(size=w.shape)
        loss = loss + (t_w * t(g_w)).sum()
    else:
        assert w is None and t_w is None
    loss.backward()
    dq, dk, dv = ours.backward(g_out, g_w)
    if same:
        close(dq + dk + dv, tq.grad)
    else:
        close(dq, tq.grad)
        close(dk, tk.grad)
        close(dv, tv.grad)
    check_param_grads(ours, theirs)


def test_float_mask_gradients_match_torch() -> None:
    """Masks given positionally get gradients, as torch's autograd gives a float mask."""
    rng = np.random.default_rng(3)
    theirs = torch.nn.MultiheadAttention(4, 2, batch_first=True).double()
    ours = nnkit.MultiheadAttention(4, 2, batch_first=True, dtype=np.float64)
    load_from_torch(ours, theirs)
    q, k = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    kpm, mask = rng.normal(size=(2, 5)), rng.normal(size=(3, 5))
    t_kpm, t_mask = t(kpm, True), t(mask, True)
    t_out, _ = theirs(t(q), t(k), t(k), key_padding_mask=t_kpm, attn_mask=t_mask)
    g = rng.normal(size=t_out.shape)
    (t_out * t(g)).sum().backward()
    ours(q, k, k, kpm, True, mask)
    grads = ours.backward(g, None)
    assert len(grads) == 6 and grads[4] is None
    close(grads[3], t_kpm.grad)
    close(grads[5], t_mask.grad)


def test_fully_masked_row_gives_zeros_where_torch_gives_nan() -> None:
    rng = np.random.default_rng(4)
    theirs = torch.nn.MultiheadAttention(4, 2, batch_first=True).double()
    ours = nnkit.MultiheadAttention(4, 2, batch_first=True, dtype=np.float64)
    state = numpy_state(theirs)
    state["out_proj.bias"] = rng.normal(size=4)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    ours.load_state_dict(state)
    x = rng.normal(size=(2, 3, 4))
    kpm = np.zeros((2, 3), dtype=bool)
    kpm[1] = True  # sample 1 may attend to no key at all
    t_out, t_w = theirs(t(x), t(x), t(x), key_padding_mask=torch.tensor(kpm))
    out, w = ours(x, x, x, key_padding_mask=kpm)
    assert torch.isnan(t_out[1]).all()  # PyTorch's result; nnkit documents zeros instead
    close(out[0], t_out[0])
    close(w[0], t_w[0])
    np.testing.assert_array_equal(w[1], 0)
    np.testing.assert_allclose(out[1], np.broadcast_to(state["out_proj.bias"], (3, 4)))
    dq, dk, dv = ours.backward(np.ones_like(out), None)
    assert np.isfinite(dq).all() and np.isfinite(dk).all() and np.isfinite(dv).all()
    np.testing.assert_array_equal(dq[1], 0)  # no key, no gradient through the scores
    np.testing.assert_array_equal(dv[1], 0)


def test_attention_parameters_have_torch_names_shapes_and_init() -> None:
    for kdim in (None, 3):
        theirs = torch.nn.MultiheadAttention(16, 4, kdim=kdim, vdim=kdim)
        ours = nnkit.MultiheadAttention(16, 4, kdim=kdim, vdim=kdim, rng=np.random.default_rng(0))
        expected = [(name, tuple(p.shape)) for name, p in theirs.named_parameters()]
        assert [(name, p.shape) for name, p in ours.named_parameters()] == expected
    ours = nnkit.MultiheadAttention(16, 4, rng=np.random.default_rng(0))
    xavier = math.sqrt(6 / (16 + 48))  # the packed (48, 16) matrix as one
    assert 0.9 * xavier < np.abs(ours.in_proj_weight.data).max() <= xavier
    assert 0.9 / 4 < np.abs(ours.out_proj["weight"].data).max() <= 1 / 4
    np.testing.assert_array_equal(ours.in_proj_bias.data, 0)  # type: ignore[union-attr]
    np.testing.assert_array_equal(ours.out_proj["bias"].data, 0)


# -- Transformer encoder ---------------------------------------------------------------------

ENCODER = {
    "post-norm": {},
    "batch_first": {"batch_first": True},
    "pre-norm": {"norm_first": True},
    "gelu-tanh": {"activation": "gelu"},
    "causal-padding": {"causal": True, "padding": True},
    "no-bias-pre-norm-batch_first": {"bias": False, "norm_first": True, "batch_first": True},
    "stack-2-norm": {"layers": 2},
    "stack-3-pre-norm-causal-padding": {
        "layers": 3,
        "norm_first": True,
        "causal": True,
        "padding": True,
        "batch_first": True,
    },
}


@pytest.mark.parametrize("config", ENCODER.values(), ids=list(ENCODER))
@pytest.mark.parametrize("mode", ["eval", "train-dropout-0"])
def test_encoder_matches_torch(config: dict[str, Any], mode: str) -> None:
    rng = np.random.default_rng(0)
    e, h, ff, s, n = 8, 2, 16, 5, 3
    batch_first = config.get("batch_first", False)
    gelu = config.get("activation") == "gelu"
    common = dict(
        dropout=0.0,
        batch_first=batch_first,
        norm_first=config.get("norm_first", False),
        bias=config.get("bias", True),
    )
    theirs = torch.nn.TransformerEncoderLayer(
        e,
        h,
        ff,
        activation=(lambda z: F.gelu(z, approximate="tanh")) if gelu else "relu",
        **common,
    ).double()
    ours: Any = nnkit.TransformerEncoderLayer(
        e, h, ff, activation="gelu" if gelu else "relu", **common, dtype=np.float64
    )
    layers = config.get("layers", 0)
    if layers:
        theirs = torch.nn.TransformerEncoder(
            theirs, layers, norm=torch.nn.LayerNorm(e).double(), enable_nested_tensor=False
        )
        ours = nnkit.TransformerEncoder(ours, layers, norm=nnkit.LayerNorm(e, dtype=np.float64))
    # move the norms away from weight 1, bias 0, so their gradients are checked in general
    state = {k: v + rng.normal(size=v.shape) * 0.1 for k, v in numpy_state(theirs).items()}
    theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    load_from_torch(ours, theirs)
    theirs.train(mode != "eval")
    ours.train(mode != "eval")
    x = rng.normal(size=(n, s, e) if batch_first else (s, n, e))
    tx = t(x, True)
    mask = nnkit.causal_mask(s) if config.get("causal") else None
    kpm = padding(n, s) if config.get("padding") else None
    t_mask = None if mask is None else torch.tensor(mask)
    t_kpm = None if kpm is None else torch.tensor(kpm)
    if layers:
        t_out = theirs(tx, mask=t_mask, src_key_padding_mask=t_kpm)
        out = ours(x, mask=mask, src_key_padding_mask=kpm)
    else:
        t_out = theirs(tx, src_mask=t_mask, src_key_padding_mask=t_kpm)
        out = ours(x, src_mask=mask, src_key_padding_mask=kpm)
    close(out, t_out)
    g = rng.normal(size=out.shape)
    (t_out * t(g)).sum().backward()
    close(ours.backward(g), tx.grad)
    check_param_grads(ours, theirs)


def test_is_causal_equals_the_causal_mask() -> None:
    layer = nnkit.TransformerEncoderLayer(8, 2, 16, dropout=0.0, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(5, 2, 8))
    np.testing.assert_array_equal(layer(x, is_causal=True), layer(x, nnkit.causal_mask(5)))
    # and it is causal: a change at the last position leaves the earlier outputs unchanged
    y = layer(x, is_causal=True)
    x2 = x.copy()
    x2[-1] += 1.0
    np.testing.assert_allclose(layer(x2, is_causal=True)[:-1], y[:-1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(layer(x2)[:-1], layer(x)[:-1], atol=1e-3)  # not causal by default


def test_causal_option_masks_every_forward() -> None:
    layer = nnkit.TransformerEncoderLayer(8, 2, 16, dropout=0.0, rng=np.random.default_rng(0))
    causal_layer = nnkit.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, causal=True, rng=np.random.default_rng(0)
    )
    encoder = nnkit.TransformerEncoder(layer, 2)
    causal = nnkit.TransformerEncoder(layer, 2, causal=True)
    causal.load_state_dict(encoder.state_dict())
    x = np.random.default_rng(1).normal(size=(5, 2, 8))
    np.testing.assert_array_equal(causal(x), encoder(x, is_causal=True))
    np.testing.assert_array_equal(causal_layer(x), layer(x, is_causal=True))
    mask = np.random.default_rng(2).normal(size=(5, 5))
    np.testing.assert_array_equal(causal(x, mask), encoder(x, mask))  # a given mask wins


def test_gelu_differs_from_torch_exact_gelu_by_less_than_1e_3() -> None:
    theirs = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu").double()
    ours = nnkit.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", dtype=np.float64)
    load_from_torch(ours, theirs)
    x = np.random.default_rng(0).normal(size=(5, 2, 8))
    difference = np.abs(ours(x) - theirs(t(x)).detach().numpy()).max()
    assert 0 < difference < 1e-3
