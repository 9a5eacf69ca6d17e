"""``python -m nnkit``: the spirals part of the demo (tests/test_xor.py runs the whole demo)."""

from __future__ import annotations

import pytest

from nnkit.__main__ import spirals_demo


def test_spirals_demo_prints_summary_progress_and_accuracy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    accuracy = spirals_demo(verbose=2)
    out = capsys.readouterr().out
    assert accuracy >= 0.95
    assert "Total params: 4,547" in out
    assert out.count("\nEpoch ") == 40 and "Epoch 40/40 - " in out
    assert f"accuracy {accuracy:.1%} on the 900 training points" in out
