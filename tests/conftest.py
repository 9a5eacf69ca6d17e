"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import nnkit


@pytest.fixture
def nnkit_env() -> dict[str, str]:
    """The environment for a subprocess that must import the nnkit these tests import
    (installed, or the checkout when pytest runs from it without an install)."""
    source = str(Path(nnkit.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": source + (os.pathsep + path if path else "")}
