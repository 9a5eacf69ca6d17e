"""The public API: every exported name exists, submodules are attributes, typing ships."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import pytest

import nnkit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", nnkit.__all__)
def test_exported_name_exists(name: str) -> None:
    assert getattr(nnkit, name) is not None


@pytest.mark.parametrize(
    "module", ["callbacks", "data", "datasets", "functional", "init", "metrics", "optim", "testing"]
)
def test_submodules_are_attributes_after_a_bare_import(module: str) -> None:
    assert getattr(nnkit, module).__name__ == f"nnkit.{module}"


def test_py_typed_is_shipped_and_version_matches() -> None:
    assert importlib.resources.files("nnkit").joinpath("py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', pyproject, flags=re.M)
    assert match is not None and match.group(1) == nnkit.__version__
