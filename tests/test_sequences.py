"""Recurrent layers, attention and positional encodings keep the nnkit contract: the
conformance harness over every configuration in ``cases.SEQUENCES``."""

from __future__ import annotations

import numpy as np
import pytest
from cases import SEQUENCES, SequenceCase, ids

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
