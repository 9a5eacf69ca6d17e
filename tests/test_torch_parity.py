"""The conv, pooling and reshaping layers agree with torch.nn, forward and backward, in float64.

Each case builds the nnkit layer and its torch.nn twin with the same arguments, loads the
torch layer's ``state_dict`` into the nnkit layer (so parameter names and shapes must be
PyTorch's), and compares y, dL/dx and every parameter gradient for a random dL/dy. Skipped
when torch is not installed; torch is never a runtime dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import nnkit

torch = pytest.importorskip("torch")
nn = torch.nn

RTOL = 1e-10
ATOL = 1e-13  # for entries that cancel to about zero, where a relative error means nothing


@dataclass(frozen=True)
class Parity:
    name: str
    ours: Callable[[], nnkit.Module]
    theirs: Callable[[], Any]
    in_shape: tuple[int, ...]
    integers: bool = False  # small integer inputs, so max-pool windows hold ties


def _same(cls_ours: Any, cls_theirs: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {
        "ours": lambda: cls_ours(*args, **kwargs),
        "theirs": lambda: cls_theirs(*args, **kwargs),
    }


def case(name: str, ours: Any, theirs: Any, in_shape: tuple[int, ...], *args: Any,
         integers: bool = False, **kwargs: Any) -> Parity:
    return Parity(name, **_same(ours, theirs, *args, **kwargs), in_shape=in_shape,
                  integers=integers)


CASES = [
    case("Conv2d", nnkit.Conv2d, nn.Conv2d, (3, 3, 7, 6), 3, 4, 3),
    case("Conv2d-stride2-nondivisible", nnkit.Conv2d, nn.Conv2d, (2, 3, 8, 7), 3, 4, 3,
         stride=2, padding=1),
    case("Conv2d-stride3-rect", nnkit.Conv2d, nn.Conv2d, (2, 2, 10, 9), 2, 3, (3, 2),
         stride=(3, 2), padding=(1, 0)),
    case("Conv2d-dilation", nnkit.Conv2d, nn.Conv2d, (2, 2, 9, 8), 2, 3, 3, dilation=(2, 3),
         padding=2),
    case("Conv2d-groups", nnkit.Conv2d, nn.Conv2d, (2, 6, 6, 6), 6, 4, 3, groups=2, padding=1),
    case("Conv2d-depthwise", nnkit.Conv2d, nn.Conv2d, (2, 4, 5, 5), 4, 4, 3, groups=4),
    case("Conv2d-same-odd", nnkit.Conv2d, nn.Conv2d, (2, 2, 6, 5), 2, 3, 3, padding="same"),
    case("Conv2d-same-even", nnkit.Conv2d, nn.Conv2d, (2, 2, 6, 5), 2, 3, (2, 4),
         padding="same"),
    case("Conv2d-same-dilated", nnkit.Conv2d, nn.Conv2d, (2, 2, 7, 6), 2, 3, 2,
         padding="same", dilation=3),
    case("Conv2d-valid", nnkit.Conv2d, nn.Conv2d, (2, 2, 6, 5), 2, 3, 3, padding="valid"),
    case("Conv2d-padding-beyond-kernel", nnkit.Conv2d, nn.Conv2d, (2, 2, 4, 4), 2, 2, 2,
         padding=(3, 1), stride=2),
    case("Conv2d-nobias", nnkit.Conv2d, nn.Conv2d, (2, 2, 5, 5), 2, 3, 3, bias=False),
    case("Conv2d-1x1", nnkit.Conv2d, nn.Conv2d, (2, 5, 4, 3), 5, 2, 1),
    case("Conv1d", nnkit.Conv1d, nn.Conv1d, (3, 2, 11), 2, 4, 5, padding=2),
    case("Conv1d-stride2-nondivisible", nnkit.Conv1d, nn.Conv1d, (2, 2, 12), 2, 3, 4, stride=3,
         padding=1),
    case("Conv1d-dilation-groups", nnkit.Conv1d, nn.Conv1d, (2, 4, 13), 4, 6, 3, dilation=2,
         groups=2),
    case("Conv1d-same-even", nnkit.Conv1d, nn.Conv1d, (2, 2, 9), 2, 3, 4, padding="same",
         bias=False),
    case("ConvTranspose2d", nnkit.ConvTranspose2d, nn.ConvTranspose2d, (2, 3, 4, 5), 3, 2, 3),
    case("ConvTranspose2d-stride-outpad", nnkit.ConvTranspose2d, nn.ConvTranspose2d,
         (2, 3, 4, 3), 3, 4, 3, stride=2, padding=1, output_padding=1),
    case("ConvTranspose2d-rect", nnkit.ConvTranspose2d, nn.ConvTranspose2d, (2, 2, 3, 4), 2, 3,
         (2, 3), stride=(3, 2), padding=(0, 1), output_padding=(2, 0)),
    case("ConvTranspose2d-groups-dilation", nnkit.ConvTranspose2d, nn.ConvTranspose2d,
         (2, 4, 4, 3), 4, 6, 3, groups=2, dilation=2, padding=1, bias=False),
    case("ConvTranspose2d-outpad-by-dilation", nnkit.ConvTranspose2d, nn.ConvTranspose2d,
         (1, 2, 4, 4), 2, 2, 2, dilation=2, output_padding=1),
    case("MaxPool2d", nnkit.MaxPool2d, nn.MaxPool2d, (2, 3, 7, 6), 2),
    case("MaxPool2d-overlap-pad", nnkit.MaxPool2d, nn.MaxPool2d, (2, 2, 7, 8), 3, 2, 1),
    case("MaxPool2d-rect", nnkit.MaxPool2d, nn.MaxPool2d, (2, 2, 7, 8), (3, 2), (1, 2), (1, 0)),
    case("MaxPool2d-ties", nnkit.MaxPool2d, nn.MaxPool2d, (2, 2, 7, 8), 3, 1, 1, integers=True),
    case("MaxPool2d-ties-disjoint", nnkit.MaxPool2d, nn.MaxPool2d, (2, 2, 6, 7), 2,
         integers=True),
    case("MaxPool1d", nnkit.MaxPool1d, nn.MaxPool1d, (2, 3, 11), 3, 2, 1),
    case("MaxPool1d-ties", nnkit.MaxPool1d, nn.MaxPool1d, (2, 3, 11), 4, 1, 2, integers=True),
    case("AvgPool2d", nnkit.AvgPool2d, nn.AvgPool2d, (2, 3, 7, 6), 2),
    case("AvgPool2d-overlap-pad", nnkit.AvgPool2d, nn.AvgPool2d, (2, 2, 7, 8), 3, 2, 1),
    case("AvgPool2d-rect", nnkit.AvgPool2d, nn.AvgPool2d, (2, 2, 7, 8), (2, 4), (3, 1), (1, 2)),
    case("AvgPool1d", nnkit.AvgPool1d, nn.AvgPool1d, (2, 3, 11), 4, 3, 2),
    case("AdaptiveAvgPool2d-1", nnkit.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, (3, 4, 5, 6), 1),
    case("AdaptiveAvgPool2d-uneven", nnkit.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d,
         (2, 3, 7, 5), (3, 2)),
    case("AdaptiveAvgPool2d-upsample", nnkit.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d,
         (2, 2, 3, 4), (5, 6)),
    case("Flatten", nnkit.Flatten, nn.Flatten, (2, 3, 4, 5)),
    case("Flatten-middle", nnkit.Flatten, nn.Flatten, (2, 3, 4, 5), 1, 2),
    case("Flatten-negative", nnkit.Flatten, nn.Flatten, (2, 3, 4, 5), -2, -1),
    case("Unflatten", nnkit.Unflatten, nn.Unflatten, (2, 12, 5), 1, (3, 4)),
    case("Unflatten-last-inferred", nnkit.Unflatten, nn.Unflatten, (2, 5, 12), -1, (2, -1)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forward_and_backward_match_torch(case: Parity) -> None:
    rng = np.random.default_rng(0)
    ours, theirs = case.ours().astype(np.float64), case.theirs().double()
    ours.load_state_dict({k: v.numpy().copy() for k, v in theirs.state_dict().items()})
    x = (rng.integers(0, 3, case.in_shape) if case.integers else rng.standard_normal(case.in_shape))
    x = x.astype(np.float64)

    y = ours(x)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = theirs(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=RTOL, atol=ATOL)

    dy = rng.standard_normal(y.shape)
    dx = ours.backward(dy)
    ty.backward(torch.from_numpy(dy))
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    torch_grads = {name: p.grad.numpy() for name, p in theirs.named_parameters()}
    assert set(torch_grads) == {name for name, _ in ours.named_parameters()}
    for name, param in ours.named_parameters():
        np.testing.assert_allclose(param.grad, torch_grads[name], rtol=RTOL, atol=ATOL,
                                   err_msg=name)


INIT = [
    ("Conv2d", nnkit.Conv2d, nn.Conv2d, (6, 8, (3, 5)), {"groups": 2}),
    ("Conv1d", nnkit.Conv1d, nn.Conv1d, (4, 8, 7), {}),
    ("ConvTranspose2d", nnkit.ConvTranspose2d, nn.ConvTranspose2d, (6, 4, 3), {"groups": 2}),
]


@pytest.mark.parametrize("name, ours, theirs, args, kwargs", INIT, ids=[i[0] for i in INIT])
def test_default_init_has_torchs_bounds(
    name: str, ours: Any, theirs: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Both draw weight and bias from U(-b, b) with b = 1/sqrt(fan_in), fan_in as torch
    computes it from the weight's shape (dim 1 times the kernel, also for ConvTranspose2d).
    Over a hundred weights, the largest comes close to b and the spread is b / sqrt(3)."""
    layer = ours(*args, **kwargs, rng=np.random.default_rng(0))
    reference = theirs(*args, **kwargs)
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(reference.weight)
    bound = 1 / np.sqrt(fan_in)
    weight = layer.weight.data
    assert weight.shape == tuple(reference.weight.shape) and weight.size >= 100
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.9 * bound
    assert weight.std() == pytest.approx(bound / np.sqrt(3), rel=0.2)
    assert layer.bias is not None and np.abs(layer.bias.data).max() <= bound
    for torch_param in (reference.weight, reference.bias):
        assert np.abs(torch_param.detach().numpy()).max() <= bound


def test_float32_layers_match_torch_float32() -> None:
    """The float32 path (nnkit's default dtype) agrees with torch's float32 to float32
    precision: no hidden float64 step, no lost row or column."""
    rng = np.random.default_rng(1)
    ours = nnkit.Conv2d(3, 8, 3, stride=2, padding=1)
    theirs = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    ours.load_state_dict({k: v.numpy().copy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((4, 3, 9, 10)).astype(np.float32)
    y = ours(x)
    assert y.dtype == np.float32
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = theirs(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    dx = ours.backward(dy)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-4,
                               atol=1e-4)
