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


def test_no_function_shadows_a_module_of_the_same_name() -> None:
    import sys

    for name in nnkit.__all__:
        value = getattr(nnkit, name)
        if callable(value) and not isinstance(value, type):
            module = sys.modules.get(f"nnkit.{name}")
            assert module is None, f"nnkit.{name} is a function shadowing the module {module}"
    assert nnkit.testing.GradcheckError is nnkit.GradcheckError
    assert nnkit.testing.gradcheck is nnkit.gradcheck


def test_every_layer_and_loss_is_exported_once_from_its_package() -> None:
    assert set(nnkit.layers.__all__) <= set(nnkit.__all__)
    assert set(nnkit.losses.__all__) <= set(nnkit.__all__)
    assert len(nnkit.__all__) == len(set(nnkit.__all__))


@pytest.mark.parametrize(
    "path, forbidden",
    [
        ("nnkit/history.py", ("nnkit.callbacks", "nnkit.serialization")),
        ("nnkit/progress.py", ("nnkit.callbacks", "nnkit.serialization")),
        ("nnkit/serialization/archive.py", ("nnkit",)),  # the package root, for the version
    ],
)
def test_small_modules_import_only_what_they_need(path: str, forbidden: tuple[str, ...]) -> None:
    import ast

    tree = ast.parse((ROOT / path).read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not imported & set(forbidden), f"{path} imports {imported & set(forbidden)}"
