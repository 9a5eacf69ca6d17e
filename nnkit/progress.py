"""Progress reporting for ``fit``: silent, one line per epoch, or a tqdm bar per epoch.

``verbose=0`` is silent; ``verbose=1`` shows a live tqdm bar when tqdm is installed (the
``progress`` extra) and one line per epoch otherwise; ``verbose=2`` always prints lines.
"""

from __future__ import annotations

import importlib
from typing import Any

from nnkit._types import Logs

__all__ = ["Reporter", "load_tqdm", "reporter"]


def load_tqdm() -> Any | None:
    """tqdm's progress-bar class, or None when tqdm is not installed."""
    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError:
        return None


def _format(logs: Logs) -> str:
    return " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())


class Reporter:
    """verbose=0: no output. The base of the two progress reporters."""

    def __init__(self, epochs: int, steps: int) -> None:
        self.epochs, self.steps = epochs, steps

    def epoch_begin(self, epoch: int) -> None:
        """A new epoch starts."""

    def batch_end(self, running: Logs) -> None:
        """A batch ended; ``running`` holds the epoch's running means so far."""

    def epoch_end(self, epoch: int, logs: Logs, seconds: float) -> None:
        """The epoch ended with ``logs`` after ``seconds``."""

    def close(self) -> None:
        """Training ended (also by an exception): release the terminal."""


class _Lines(Reporter):
    """One line per epoch on stdout: ``Epoch 3/10 - 0.05s - loss: 0.4123 - accuracy: ...``."""

    def epoch_end(self, epoch: int, logs: Logs, seconds: float) -> None:
        print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {_format(logs)}", flush=True)


class _Bar(Reporter):
    """A tqdm bar per epoch, counting batches, with the running loss and metrics."""

    def __init__(self, epochs: int, steps: int, tqdm: Any) -> None:
        super().__init__(epochs, steps)
        self.tqdm = tqdm
        self.bar: Any = None

    def epoch_begin(self, epoch: int) -> None:
        width = len(str(self.epochs))
        self.bar = self.tqdm(
            total=self.steps, desc=f"Epoch {epoch + 1:{width}d}/{self.epochs}", unit="batch"
        )

    def batch_end(self, running: Logs) -> None:
        self.bar.set_postfix_str(_format(running), refresh=False)
        self.bar.update(1)

    def epoch_end(self, epoch: int, logs: Logs, seconds: float) -> None:
        self.bar.set_postfix_str(_format(logs), refresh=False)
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def reporter(verbose: int, epochs: int, steps: int) -> Reporter:
    """The reporter for ``verbose`` (see the module docstring)."""
    if verbose == 0:
        return Reporter(epochs, steps)
    tqdm = load_tqdm() if verbose == 1 else None
    return _Lines(epochs, steps) if tqdm is None else _Bar(epochs, steps, tqdm)
