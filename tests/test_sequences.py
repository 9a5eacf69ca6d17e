"""Recurrent layers, attention and positional encodings keep the nnkit contract: the
conformance harness over every configuration in ``cases.SEQUENCES``."""

from __future__ import annotations

import numpy as np
import pytest
from cases import SEQUENCES, SequenceCase, ids

import nnkit
from nnkit.testing import check_module


@pytest.mark.parametrize("case", SEQUENCES, ids=ids(SEQUENCES))
def test_sequence_layer_conforms(case: SequenceCase) -> None:
    rng = np.random.default_rng(0)
    xs = case.inputs(rng)
    check_module(
        case.make(rng),
        *xs,
        batch_independent=case.batch_independent,
        **case.options,  # type: ignore[arg-type]
    )


def test_the_whole_model_gradient_check_passes_through_sequence_layers() -> None:
    """nnkit.diagnostics checks every module where it sits, with the inputs it received
    there: an LSTM's (h_n, c_n) reaches FinalState stacked into one array."""
    from nnkit.diagnostics.gradients import check_gradients

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5, 3)), rng.integers(0, 2, size=16)
    for model in (
        nnkit.Sequential(
            nnkit.LSTM(3, 4, bidirectional=True, batch_first=True, rng=rng),
            nnkit.FinalState(),
            nnkit.Dense(8, 2, rng=rng),
        ),
        nnkit.Sequential(
            nnkit.Dense(3, 4, rng=rng),
            nnkit.TransformerEncoder(
                nnkit.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True, rng=rng),
                2,
                causal=True,
            ),
            nnkit.LastTimeStep(batch_first=True),
            nnkit.Dense(4, 2, rng=rng),
        ),
    ):
        check_gradients(model, x, y, nnkit.CrossEntropyLoss())
