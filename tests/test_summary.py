"""Tests for nnkit.summary: rows, shapes, counts, totals, and a model left untouched."""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit._summary import summary
from nnkit.parameter import Parameter


class Scaled(nnkit.Module):
    """A module with a parameter of its own beside a child."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = Parameter(np.ones(3))
        self.inner = nnkit.Dense(4, 3, rng=np.random.default_rng(0))

    def forward(self, x: Any) -> Any:
        return self.inner(x) * self.scale.data

    def backward(self, grad_out: Any) -> Any:
        raise NotImplementedError


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def shared_weights() -> nnkit.Sequential:
    """Two Dense layers holding the same Parameters (a module itself may appear only once)."""
    first, second = nnkit.Dense(8, 8, rng=rng()), nnkit.Dense(8, 8, rng=rng())
    second.weight, second.bias = first.weight, first.bias
    return nnkit.Sequential(first, nnkit.ReLU(), second)


# (description, model factory, input_shape, rows as (name (type), shape, params), total)
CASES: list[tuple[str, Callable[[], nnkit.Module], Any, list[tuple[str, str, str]], int]] = [
    (
        "flat",
        lambda: nnkit.Sequential(nnkit.Dense(2, 64, rng=rng()), nnkit.ReLU(),
                                 nnkit.Dense(64, 3, rng=rng())),
        (2,),
        [("0 (Dense)", "(None, 64)", "192"), ("1 (ReLU)", "(None, 64)", "0"),
         ("2 (Dense)", "(None, 3)", "195")],
        387,
    ),
    (
        "nested leaves get dotted names",
        lambda: nnkit.Sequential(
            nnkit.Dense(4, 8, rng=rng()),
            nnkit.Sequential(nnkit.Tanh(), nnkit.Sequential(nnkit.Dense(8, 100, rng=rng()))),
            nnkit.Softmax(),
        ),
        4,
        [("0 (Dense)", "(None, 8)", "40"), ("1.0 (Tanh)", "(None, 8)", "0"),
         ("1.1.0 (Dense)", "(None, 100)", "900"), ("2 (Softmax)", "(None, 100)", "0")],
        940,
    ),
    (
        "a single layer",
        lambda: nnkit.Dense(5, 2, bias=False, rng=rng()),
        (5,),
        [("Dense", "(None, 2)", "10")],
        10,
    ),
    (
        "a module with its own parameter",
        lambda: nnkit.Sequential(Scaled(), nnkit.Sigmoid()),
        (4,),
        [("0 (Scaled)", "(None, 3)", "3"), ("0.inner (Dense)", "(None, 3)", "15"),
         ("1 (Sigmoid)", "(None, 3)", "0")],
        18,
    ),
    (
        "shared parameters are counted once in the total",
        shared_weights,
        (8,),
        [("0 (Dense)", "(None, 8)", "72"), ("1 (ReLU)", "(None, 8)", "0"),
         ("2 (Dense)", "(None, 8)", "72")],
        72,
    ),
]  # fmt: skip


def parse_rows(text: str) -> list[tuple[str, str, str]]:
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"="}]
    body = lines[rules[0] + 1 : rules[1]]
    return [tuple(re.split(r"\s{4,}", line.strip())) for line in body]  # type: ignore[misc]


@pytest.mark.parametrize(("make", "input_shape", "rows", "total"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_summary_rows_and_totals(
    make: Callable[[], nnkit.Module], input_shape: Any, rows: list[Any], total: int
) -> None:
    model = make()
    text = summary(model, input_shape)
    assert text.splitlines()[0] == f"Model: {type(model).__name__}"
    assert parse_rows(text) == rows
    assert f"Total params: {total:,} (" in text
    assert f"Trainable params: {total:,}" in text
    assert model.num_parameters() == total


def test_header_size_and_input_shape() -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 600, rng=rng()), nnkit.Dense(600, 3, rng=rng()))
    text = summary(model, (2,))
    assert "Layer (type)" in text and "Output shape" in text and "Param #" in text
    assert "Total params: 3,603 (14.07 KB)" in text  # 4 bytes per float32
    assert "1 (Dense)               (None, 3)             1,803" in text
    assert text.splitlines()[-1] == "Input shape: (None, 2)"


def test_the_model_is_left_untouched() -> None:
    first = nnkit.Dense(3, 4, rng=rng())
    model = nnkit.Sequential(first, nnkit.Tanh(), nnkit.Dense(4, 2))
    model[1].eval()
    first.weight.grad += 1.0
    state = model.state_dict()
    flags = [m.training for m in model.modules()]
    summary(model, (3,))
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == flags
    assert np.all(first.weight.grad == 1.0)
    with pytest.raises(RuntimeError, match="before forward"):  # no cache was filled
        model.backward(np.ones((1, 2), dtype=np.float32))
    assert "forward" not in vars(first)  # the recording wrapper went to the copy only


def test_a_forward_that_fails_names_the_layer() -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 4, rng=rng()), nnkit.Dense(5, 1, rng=rng()))
    with pytest.raises(ValueError) as info:
        summary(model, (2,))
    message = str(info.value)
    assert "shape (1, 2)" in message and 'child "1" (Dense)' in message
    assert "without the batch axis" in message
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("model", "input_shape", "error", "words"),
    [
        (nnkit.Dense(2, 1), (0,), ValueError, "sizes >= 1"),
        (nnkit.Dense(2, 1), "2", TypeError, "int or a tuple of ints"),
        (nnkit.Dense(2, 1), (2.0,), TypeError, "must hold ints"),
        ("model", (2,), TypeError, "nnkit Module"),
    ],
)
def test_bad_arguments(model: Any, input_shape: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        summary(model, input_shape)
    assert words in str(info.value)


def test_float64_model_gets_float64_zeros() -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 3, dtype=np.float64, rng=rng()))
    assert "Total params: 9 (72 B)" in summary(model, (2,))


def test_nnkit_summary_is_the_function_and_the_docs_say_so() -> None:
    """The package re-exports the function under the module's name: ``nnkit.summary`` is the
    function, so docs/training.md must not list it as a module."""
    assert nnkit.summary is summary and callable(nnkit.summary)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    table = re.search(r"^\| module \| what \|\n\|[-|]+\|\n((?:\|.*\n)+)", doc, flags=re.M)
    assert table is not None
    listed = re.findall(r"^\| `([\w.]+)` \|", table.group(1), flags=re.M)
    assert listed, "no module rows found"
    for dotted in listed:  # every name in the "module" column is a module, as nnkit.<name>
        obj: Any = nnkit
        for part in dotted.split(".")[1:]:
            obj = getattr(obj, part)
        assert isinstance(obj, types.ModuleType), f"{dotted} is listed as a module but is {obj!r}"
    assert "nnkit.summary(model, input_shape)" in doc


def test_buffers_count_as_non_trainable_and_integer_inputs_take_a_dtype() -> None:
    from stateful_layers import Center

    class Lookup(nnkit.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = Parameter(np.zeros((10, 4)))

        def forward(self, ids: Any) -> Any:
            return self.table.data[np.asarray(ids)]

    model = nnkit.Sequential(Lookup(), Center(4), nnkit.Dense(4, 2, rng=rng()))
    text = summary(model, (), dtype=np.int64)
    assert "Trainable params: 50" in text and "Non-trainable params: 4" in text
    assert "Total params: 54" in text
    assert re.search(r"1 \(Center\)\s+\(None, 4\)\s+4", text)


def test_several_inputs_and_outputs_show_every_shape() -> None:
    graph = nnkit.Graph(
        inputs=["a", "b"],
        nodes={
            "ha": (nnkit.Dense(3, 2, rng=rng()), "a"),
            "sum": (nnkit.Add(), ["ha", "b"]),
            "out": (nnkit.Parallel(nnkit.Tanh()), "sum"),
        },
        outputs=["out:0", "sum"],
    )
    text = summary(graph, [(3,), (2,)])
    assert "Input shape: [(None, 3), (None, 2)]" in text
    assert re.search(r"out\.0 \(Tanh\)\s+\(None, 2\)", text)
    assert "out:0" not in text


def test_time_major_batch_axis_is_shown_where_it_is() -> None:
    text = summary(nnkit.Sequential(nnkit.Tanh()), (7, 3), batch_axis=1)
    assert "(7, None, 3)" in text


def test_the_batch_axis_is_found_in_every_output_of_a_recurrent_layer() -> None:
    lstm = nnkit.Sequential(nnkit.LSTM(3, 16, num_layers=2, bidirectional=True, batch_first=True))
    text = summary(lstm, (7, 3))
    assert "[(None, 7, 32), [(4, None, 16), (4, None, 16)]]" in text
    gru = nnkit.Sequential(nnkit.GRU(3, 8), nnkit.FinalState(), nnkit.Dense(8, 2))
    text = summary(gru, (7, 3), batch_axis=1)
    assert "[(7, None, 8), (1, None, 8)]" in text and re.search(r"2 \(Dense\)\s+\(None, 2\)", text)


def test_an_embedding_model_without_an_integer_dtype_gets_a_hint() -> None:
    model = nnkit.Sequential(nnkit.Embedding(10, 4))
    with pytest.raises(ValueError, match=r"pass dtype=np\.int64"):
        summary(model, (5,))
    assert "(None, 5, 4)" in summary(model, (5,), dtype=np.int64)
