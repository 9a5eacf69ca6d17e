"""History: what ``fit`` recorded, one value per complete epoch, and a plot of it."""

from __future__ import annotations

import importlib
import os
from typing import Any

from nnkit._types import Logs

__all__ = ["History"]


class History:
    """What ``fit`` recorded: one value per complete epoch for every logged key.

    Attributes:
        history: ``{"loss": [...], "<metric>": [...], "val_loss": [...], "val_<metric>":
            [...]}``, the lists all as long as ``epoch``. Keys come in that order.
        epoch: the indices (from 0) of the complete epochs.
        interrupted: True when training was interrupted by KeyboardInterrupt (Ctrl-C).

    Every training value is the mean of the per-batch values over the epoch, each batch
    weighted by its number of samples (see :func:`fit`).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.interrupted = False

    def _append(self, epoch: int, logs: Logs) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Plot the loss and every metric against the epoch, training and validation together.

        One panel per quantity (``loss``, then each metric), with the training curve and, when
        there is one, the validation curve. With ``path`` the figure is saved there (the format
        from the extension, e.g. ``.png``, ``.pdf``, ``.svg``) without opening a window;
        without it, ``matplotlib.pyplot.show()`` displays it.

        Returns:
            The matplotlib ``Figure``.

        Raises:
            ImportError: matplotlib is not installed (it is the optional extra ``plot``).
            ValueError: the History has no epochs.
        """
        try:
            figure_module = importlib.import_module("matplotlib.figure")
        except ImportError as exc:
            raise ImportError(
                "History.plot() needs matplotlib, which is not installed; install the plot "
                "extra from the nnkit checkout (the directory with pyproject.toml): pip install "
                '".[plot]"'
            ) from exc
        if not self.epoch:
            raise ValueError("the History has no complete epoch to plot; train for an epoch first")
        names = [key for key in self.history if not key.startswith("val_")]
        if path is None:
            figure = importlib.import_module("matplotlib.pyplot").figure()
        else:
            figure = figure_module.Figure()
        figure.set_size_inches(4.5 * len(names), 3.5)
        axes = figure.subplots(1, len(names), squeeze=False)[0]
        x = [e + 1 for e in self.epoch]
        for ax, name in zip(axes, names, strict=True):
            ax.plot(x, self.history[name], label="training")
            if f"val_{name}" in self.history:
                ax.plot(x, self.history[f"val_{name}"], label="validation")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
        figure.tight_layout()
        if path is None:
            importlib.import_module("matplotlib.pyplot").show()
        else:
            figure.savefig(os.fspath(path))
        return figure

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
