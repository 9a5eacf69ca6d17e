"""The examples of docs/interop.md run as written, where onnx, onnxruntime, torch and
safetensors are installed (tests/test_docs.py runs only the ```python blocks, which need
nothing optional; these are ```py blocks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_interop_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for package in ("onnx", "onnxruntime", "torch", "safetensors.torch"):
        pytest.importorskip(package)
    monkeypatch.chdir(tmp_path)  # the examples write files
    text = (ROOT / "docs" / "interop.md").read_text()
    blocks = re.findall(r"```py\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "doc_interop"}
    for block in blocks:  # in order, sharing names, as a reader runs them
        exec(compile(block, "docs/interop.md", "exec"), namespace)
    written = {p.name for p in tmp_path.iterdir()}
    assert {"cnn.onnx", "gru.onnx", "lm.onnx", "scaled.onnx"} <= written
