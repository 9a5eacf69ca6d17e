"""Convolution, pooling and reshaping layers: random geometries against a direct reference.

The references below follow the definitions literally (np.pad, then a loop over output
positions), independently of nnkit's im2col. Backward is checked through the adjoint
identities of linear maps, which hold for any geometry: for y = conv(x, w) without bias,
sum(y * dy) == sum(x * dx) == sum(w * dw). torch is not needed here (test_torch_parity.py
compares with it).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnkit
from nnkit.optim import SGD

Array = Any
SETTINGS = settings(max_examples=60, deadline=None)


# -- references, straight from the definitions -------------------------------------------------


def same_pads(kernel: int, dilation: int) -> tuple[int, int]:
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2  # PyTorch: the odd one goes after


def reference_conv(
    x: Array, w: Array, stride: tuple[int, ...], pads: list[tuple[int, int]],
    dilation: tuple[int, ...], groups: int,
) -> Array:
    """y[n, o, p..] = sum_{c, i..} w[o, c, i..] xp[n, g(o) G + c, p s + i d ..] (1 or 2 axes)."""
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    rank = x.ndim - 2
    kernel = w.shape[2:]
    out = [(xp.shape[2 + a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
           for a in range(rank)]
    n, o = x.shape[0], w.shape[0]
    g_in, g_out = x.shape[1] // groups, o // groups
    y = np.zeros((n, o, *out))
    for position in np.ndindex(*out):
        window = xp[(slice(None), slice(None), *(
            slice(p * stride[a], p * stride[a] + dilation[a] * (kernel[a] - 1) + 1, dilation[a])
            for a, p in enumerate(position)
        ))]
        for group in range(groups):
            part = window[:, group * g_in : (group + 1) * g_in].reshape(n, -1)
            weights = w[group * g_out : (group + 1) * g_out].reshape(g_out, -1)
            y[(slice(None), slice(group * g_out, (group + 1) * g_out), *position)] = (
                part @ weights.T
            )
    return y


def reference_conv_transpose(
    x: Array, w: Array, stride: tuple[int, int], padding: tuple[int, int],
    output_padding: tuple[int, int], dilation: tuple[int, int], groups: int,
) -> Array:
    """Scatter every input value times the kernel into a full output, then crop the padding."""
    n, c_in, h, wd = x.shape
    kh, kw = w.shape[2:]
    g_in, g_out = c_in // groups, w.shape[1]
    full = np.zeros((n, g_out * groups,
                     (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1 + output_padding[0],
                     (wd - 1) * stride[1] + dilation[1] * (kw - 1) + 1 + output_padding[1]))
    for c in range(c_in):
        group = c // g_in
        for i, j, p, q in np.ndindex(kh, kw, h, wd):
            full[:, group * g_out : (group + 1) * g_out,
                 p * stride[0] + i * dilation[0], q * stride[1] + j * dilation[1]] += (
                x[:, c, p, q, None] * w[c, :, i, j]
            )
    out_h = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    out_w = (wd - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    return full[:, :, padding[0] : padding[0] + out_h, padding[1] : padding[1] + out_w]


def reference_pool(x: Array, kernel: tuple[int, ...], stride: tuple[int, ...],
                   padding: tuple[int, ...], kind: str) -> Array:
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, [(0, 0), (0, 0), *((p, p) for p in padding)], constant_values=fill)
    rank = x.ndim - 2
    out = [(xp.shape[2 + a] - kernel[a]) // stride[a] + 1 for a in range(rank)]
    y = np.zeros((*x.shape[:2], *out))
    for position in np.ndindex(*out):
        window = xp[(slice(None), slice(None), *(
            slice(p * stride[a], p * stride[a] + kernel[a]) for a, p in enumerate(position)
        ))].reshape(*x.shape[:2], -1)
        y[(slice(None), slice(None), *position)] = (
            window.max(axis=2) if kind == "max" else window.sum(axis=2) / window.shape[2]
        )
    return y


# -- random geometries -----------------------------------------------------------------------


@st.composite
def conv_geometries(draw: Any, rank: int) -> dict[str, Any]:
    groups = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    choice = draw(st.sampled_from(["int", "tuple", "valid", "same"] if stride == (1,) * rank
                                  else ["int", "tuple", "valid"]))
    if choice == "int":
        padding: Any = draw(st.integers(0, 3))
        pads = [(padding, padding)] * rank
    elif choice == "tuple":
        padding = tuple(draw(st.integers(0, 3)) for _ in range(rank))
        pads = [(p, p) for p in padding]
    else:
        padding = choice
        pads = ([same_pads(k, d) for k, d in zip(kernel, dilation, strict=True)]
                if choice == "same" else [(0, 0)] * rank)
    # the smallest input the dilated kernel fits into, plus up to 6
    size = tuple(
        max(1, (k - 1) * d + 1 - a - b) + draw(st.integers(0, 6))
        for k, d, (a, b) in zip(kernel, dilation, pads, strict=True)
    )
    return {
        "in_channels": groups * draw(st.integers(1, 2)),
        "out_channels": groups * draw(st.integers(1, 2)),
        "kernel_size": kernel, "stride": stride, "padding": padding, "dilation": dilation,
        "groups": groups, "pads": pads, "size": size, "batch": draw(st.integers(1, 3)),
    }


def _conv(geometry: dict[str, Any], rank: int, bias: bool) -> nnkit.Conv1d | nnkit.Conv2d:
    cls = nnkit.Conv2d if rank == 2 else nnkit.Conv1d
    args = {k: geometry[k] for k in ("in_channels", "out_channels", "kernel_size", "stride",
                                     "padding", "dilation", "groups")}
    layer: nnkit.Conv1d | nnkit.Conv2d = cls(**args, bias=bias, rng=np.random.default_rng(0))
    return layer.astype(np.float64)


@pytest.mark.parametrize("rank", [1, 2])
@SETTINGS
@given(data=st.data())
def test_conv_matches_the_definition_for_any_geometry(rank: int, data: Any) -> None:
    geometry = data.draw(conv_geometries(rank))
    layer = _conv(geometry, rank, bias=False)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((geometry["batch"], geometry["in_channels"], *geometry["size"]))
    y = layer(x)
    expected = reference_conv(x, layer.weight.data, geometry["stride"], geometry["pads"],
                              geometry["dilation"], geometry["groups"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)

    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    assert dx.shape == x.shape  # also when the stride does not divide the size
    inner = np.sum(y * dy)
    assert np.sum(x * dx) == pytest.approx(inner, rel=1e-9, abs=1e-9)
    assert np.sum(layer.weight.data * layer.weight.grad) == pytest.approx(inner, rel=1e-9,
                                                                          abs=1e-9)


@SETTINGS
@given(data=st.data())
def test_conv_bias_gradient_is_the_sum_of_dy(data: Any) -> None:
    geometry = data.draw(conv_geometries(2))
    layer = _conv(geometry, 2, bias=True)
    x = np.random.default_rng(2).standard_normal(
        (geometry["batch"], geometry["in_channels"], *geometry["size"]))
    y = layer(x)
    assert layer.bias is not None
    np.testing.assert_allclose(y - layer.bias.data[:, None, None],
                               reference_conv(x, layer.weight.data, geometry["stride"],
                                              geometry["pads"], geometry["dilation"],
                                              geometry["groups"]), rtol=1e-10, atol=1e-12)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    layer.backward(dy)
    np.testing.assert_allclose(layer.bias.grad, dy.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(
    groups=st.integers(1, 2), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    extra=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
)
def test_conv_transpose_matches_the_definition(
    groups: int, kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int], padding: tuple[int, int], extra: tuple[int, int],
    size: tuple[int, int],
) -> None:
    output_padding = tuple(e % max(s, d) for e, s, d in zip(extra, stride, dilation, strict=True))
    out = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
           zip(size, stride, padding, dilation, kernel, output_padding, strict=True)]
    if min(out) < 1:
        with pytest.raises(ValueError, match="gives an output of size"):
            nnkit.ConvTranspose2d(groups, groups, kernel, stride, padding, output_padding,
                                  groups, True, dilation)(np.zeros((1, groups, *size)))
        return
    layer = nnkit.ConvTranspose2d(
        2 * groups, 3 * groups, kernel, stride, padding, output_padding, groups, False,
        dilation, rng=np.random.default_rng(0), dtype=np.float64,
    )
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2 * groups, *size))
    y = layer(x)
    expected = reference_conv_transpose(x, layer.weight.data, stride, padding,
                                        output_padding, dilation, groups)  # type: ignore[arg-type]
    assert y.shape == expected.shape == (2, 3 * groups, *out)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    inner = np.sum(y * dy)
    assert np.sum(x * dx) == pytest.approx(inner, rel=1e-9, abs=1e-9)
    assert np.sum(layer.weight.data * layer.weight.grad) == pytest.approx(inner, rel=1e-9,
                                                                          abs=1e-9)


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("kind", ["max", "avg"])
@SETTINGS
@given(data=st.data())
def test_pooling_matches_the_definition(rank: int, kind: str, data: Any) -> None:
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(data.draw(st.integers(1, 4)) for _ in range(rank))
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    size = tuple(max(1, k - 2 * p) + data.draw(st.integers(0, 5))
                 for k, p in zip(kernel, padding, strict=True))
    names = {("max", 1): nnkit.MaxPool1d, ("max", 2): nnkit.MaxPool2d,
             ("avg", 1): nnkit.AvgPool1d, ("avg", 2): nnkit.AvgPool2d}
    layer = names[kind, rank](kernel, stride, padding)
    ties = data.draw(st.booleans())
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (2, 3, *size)).astype(float) if ties else rng.standard_normal(
        (2, 3, *size))
    y = layer(x)
    expected = reference_pool(x, kernel, stride, padding, kind)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    if kind == "avg":  # linear: the adjoint identity
        assert np.sum(x * dx) == pytest.approx(np.sum(y * dy), rel=1e-9, abs=1e-9)
    else:  # each window passes all of its gradient, to one element holding its maximum
        assert np.sum(dx) == pytest.approx(np.sum(dy), rel=1e-9, abs=1e-9)
        assert np.all(np.isin(x[dx != 0], y))


def test_max_pool_tie_goes_to_the_first_element_of_the_window() -> None:
    x = np.ones((1, 1, 2, 2))
    layer = nnkit.MaxPool2d(2)
    layer(x)
    np.testing.assert_array_equal(layer.backward(np.full((1, 1, 1, 1), 5.0)),
                                  [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_max_pool_padding_is_minus_infinity() -> None:
    x = -np.ones((1, 1, 2, 2))  # all negative: zero padding would win the border windows
    np.testing.assert_array_equal(nnkit.MaxPool2d(2, 1, 1)(x), -np.ones((1, 1, 3, 3)))


def test_avg_pool_counts_padding() -> None:
    y = nnkit.AvgPool2d(2, 1, 1)(np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(y, [[[[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]]])


def test_adaptive_avg_pool_one_is_the_global_mean() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    layer = nnkit.AdaptiveAvgPool2d(1)
    np.testing.assert_allclose(layer(x), x.mean(axis=(2, 3), keepdims=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.backward(np.ones((3, 4, 1, 1))), np.full(x.shape, 1 / 30))


@SETTINGS
@given(size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       out=st.tuples(st.integers(1, 9), st.integers(1, 9)))
def test_adaptive_avg_pool_bins(size: tuple[int, int], out: tuple[int, int]) -> None:
    x = np.random.default_rng(0).standard_normal((2, 2, *size))
    layer = nnkit.AdaptiveAvgPool2d(out)
    y = layer(x)
    assert y.shape == (2, 2, *out)
    for i, j in np.ndindex(*out):
        rows = slice(i * size[0] // out[0], -(-(i + 1) * size[0] // out[0]))
        cols = slice(j * size[1] // out[1], -(-(j + 1) * size[1] // out[1]))
        np.testing.assert_allclose(y[:, :, i, j], x[:, :, rows, cols].mean(axis=(2, 3)),
                                   rtol=1e-10, atol=1e-12)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    assert np.sum(x * layer.backward(dy)) == pytest.approx(np.sum(y * dy), rel=1e-9, abs=1e-9)


# -- workspaces and aliasing -----------------------------------------------------------------


def test_reused_workspace_keeps_padding_zero_across_input_sizes() -> None:
    """27 and 28 rows give the same 14 output rows at stride 2, with different windows that
    reach the padding: a workspace kept for one must not leak values into the other."""
    rng = np.random.default_rng(0)
    layer = nnkit.Conv2d(2, 3, 3, stride=2, padding=1, rng=rng)
    for rows in (28, 27, 28, 27):
        x = rng.standard_normal((2, 2, rows, 9))
        fresh = copy.deepcopy(layer)
        fresh._work = type(layer._work)()  # an empty workspace: computes from scratch
        y = layer(x)
        np.testing.assert_array_equal(y, fresh(x))
        dy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(layer.backward(dy), fresh.backward(dy))


@pytest.mark.parametrize("make", [
    lambda: nnkit.Conv2d(2, 3, 3, padding=1),
    lambda: nnkit.Conv1d(2, 3, 3, stride=2),
    lambda: nnkit.ConvTranspose2d(2, 3, 3, stride=2),
    lambda: nnkit.MaxPool2d(2),
    lambda: nnkit.AvgPool2d(3, 1, 1),
], ids=["Conv2d", "Conv1d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d"])
def test_outputs_and_gradients_are_not_overwritten_by_the_next_call(make: Any) -> None:
    layer = make()
    rng = np.random.default_rng(0)
    shape = (2, 2, 6) if isinstance(layer, nnkit.Conv1d) else (2, 2, 6, 6)
    x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
    y1 = layer(x1)
    dy = rng.standard_normal(y1.shape)
    dx1 = layer.backward(dy)
    y1_copy, dx1_copy = y1.copy(), dx1.copy()
    layer(x2)
    layer.backward(dy * 2)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)


def test_deepcopy_does_not_copy_workspaces() -> None:
    layer = nnkit.Conv2d(1, 4, 3)
    layer(np.zeros((8, 1, 10, 10)))
    assert layer._work._arrays and not copy.deepcopy(layer)._work._arrays


# -- dtype, reshaping, saving ------------------------------------------------------------------


def cnn(rng: np.random.Generator) -> nnkit.Sequential:
    return nnkit.Sequential(
        nnkit.Conv2d(1, 4, 3, padding=1, rng=rng), nnkit.ReLU(), nnkit.MaxPool2d(2),
        nnkit.Conv2d(4, 6, 3, stride=2, padding="valid", groups=2, rng=rng), nnkit.Tanh(),
        nnkit.AvgPool2d(2, 1, 1), nnkit.ConvTranspose2d(6, 2, 2, stride=2, rng=rng),
        nnkit.AdaptiveAvgPool2d((3, 2)), nnkit.Flatten(), nnkit.Unflatten(1, (2, 6)),
        nnkit.Conv1d(2, 3, 3, padding="same", rng=rng), nnkit.MaxPool1d(2),
        nnkit.AvgPool1d(3, 1, 1), nnkit.Reshape(-1), nnkit.Dense(9, 3, rng=rng),
    )


def test_float32_cnn_stays_float32() -> None:
    rng = np.random.default_rng(0)
    model = cnn(rng)
    x = rng.standard_normal((4, 1, 11, 10))  # float64 data into a float32 model
    h = x
    for layer in model:
        h = layer(h)
        assert h.dtype == np.float32, type(layer).__name__
    g = np.ones_like(h, dtype=np.float64)
    for layer in reversed(list(model)):
        g = layer.backward(g)
        assert g.dtype == np.float32, type(layer).__name__
    assert g.shape == x.shape
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_small_cnn_save_load_round_trip_is_bitwise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = cnn(rng)
    x = rng.standard_normal((5, 1, 11, 10)).astype(np.float32)
    labels = rng.integers(0, 3, 5)
    SGD(model.parameters(), lr=0.1).step()  # weights that differ from a fresh init
    nnkit.save(model, tmp_path / "cnn.npz")
    loaded = nnkit.load(tmp_path / "cnn.npz")
    assert repr(loaded) == repr(model)
    assert loaded(x).tobytes() == model(x).tobytes()
    for net in (model, loaded):
        net.zero_grad()
        loss = nnkit.CrossEntropyLoss()
        loss(net(x), labels)
        net.backward(loss.backward())
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters(),
                                 strict=True):
        assert a.grad.tobytes() == b.grad.tobytes(), name


def test_cnn_learns_a_toy_task() -> None:
    """Which half of the image is bright: a few epochs of fit separate it completely."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (64, 1, 8, 8))
    y = rng.integers(0, 2, 64)
    x[y == 1, :, :4] += 1.0
    x[y == 0, :, 4:] += 1.0
    model = nnkit.Sequential(
        nnkit.Conv2d(1, 4, 3, padding=1, rng=rng), nnkit.ReLU(), nnkit.MaxPool2d(2),
        nnkit.Flatten(), nnkit.Dense(64, 2, rng=rng),
    )
    nnkit.fit(model, nnkit.CrossEntropyLoss(), nnkit.optim.Adam(model.parameters(), lr=0.01),
              x, y, epochs=15, batch_size=16, rng=rng, verbose=0)
    assert np.mean(nnkit.predict(model, x).argmax(axis=1) == y) == 1.0


def test_reshape_layers_are_views_and_reshape_back() -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    for layer, shape in ((nnkit.Flatten(), (2, 12)), (nnkit.Flatten(-2, -1), (2, 12)),
                         (nnkit.Flatten(1, 1), (2, 3, 4)), (nnkit.Unflatten(2, (2, 2)),
                                                            (2, 3, 2, 2)),
                         (nnkit.Reshape(4, 3), (2, 4, 3)), (nnkit.Reshape(2, -1, 2),
                                                            (2, 2, 3, 2))):
        y = layer(x)
        assert y.shape == shape and np.shares_memory(y, x)
        np.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))
        assert layer.backward(y).shape == x.shape


def test_reshape_with_inferred_size_on_an_empty_batch() -> None:
    layer = nnkit.Reshape(-1, 2)
    assert layer(np.zeros((0, 3, 4))).shape == (0, 6, 2)
    assert nnkit.Reshape()(np.zeros((3, 1))).shape == (3,)


def test_reprs_show_pytorch_style_arguments() -> None:
    assert repr(nnkit.Conv2d(1, 8, 3, padding="same")) == (
        "Conv2d(in_channels=1, out_channels=8, kernel_size=(3, 3), stride=(1, 1), "
        "padding='same', dilation=(1, 1), groups=1, bias=True)"
    )
    assert repr(nnkit.MaxPool2d(2)) == (
        "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    )
    assert repr(nnkit.Reshape(16, 7, 7)) == "Reshape(16, 7, 7)"
    assert repr(nnkit.Unflatten(1, [4, 4])) == "Unflatten(dim=1, unflattened_size=(4, 4))"


def test_summary_of_a_cnn() -> None:
    text = nnkit.summary(cnn(np.random.default_rng(0)), (1, 11, 10))
    assert "(None, 4, 11, 10)" in text and "(None, 3)" in text
