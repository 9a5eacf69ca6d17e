"""Progress reporting for ``fit``: silent, a bounded number of lines, or one line per epoch.

- ``verbose=0``: nothing.
- ``verbose=1``: at most about :data:`MAX_LINES` lines, however many epochs: every epoch when
  there are at most that many, else every ``ceil(epochs / MAX_LINES)``-th epoch, the first
  and the last (and the last one run, when training stops early). On a terminal a live
  status runs in between: a tqdm bar for the whole run (on stderr) when tqdm is installed,
  else one line on stdout rewritten in place, at most every :data:`REFRESH_SECONDS`.
- ``verbose=2``: one line per epoch, for logs.

A line reads ``Epoch 3/10 - 0.05s - loss: 0.4123 - accuracy: 0.8800`` (the epoch's time and
values, validation included).
"""

from __future__ import annotations

import importlib
import math
import sys
import time
from typing import Any, TextIO

from nnkit._types import Logs

__all__ = ["MAX_LINES", "REFRESH_SECONDS", "Reporter", "load_tqdm", "reporter"]

MAX_LINES = 20
"""About the most lines ``verbose=1`` prints for a whole run (a 2000-epoch run prints 21)."""

REFRESH_SECONDS = 0.1
"""The live status of ``verbose=1`` on a terminal is redrawn at most this often."""


def load_tqdm() -> Any | None:
    """tqdm's progress-bar class, or None when tqdm is not installed."""
    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError:
        return None


def is_terminal(stream: TextIO) -> bool:
    """True if ``stream`` is an interactive terminal (where a line can be redrawn)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _format(logs: Logs) -> str:
    return " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())


class Reporter:
    """verbose=0: no output. The base of the progress reporters."""

    def __init__(self, epochs: int, steps: int) -> None:
        self.epochs, self.steps = epochs, steps

    def epoch_begin(self, epoch: int) -> None:
        """A new epoch starts."""

    def batch_end(self, running: Logs) -> None:
        """A batch ended; ``running`` holds the epoch's running means so far."""

    def epoch_end(self, epoch: int, logs: Logs, seconds: float) -> None:
        """The epoch ended with ``logs`` after ``seconds``."""

    def close(self) -> None:
        """Training ended (also by an exception): finish the output. May be called twice."""

    def _line(self, epoch: int, logs: Logs, seconds: float) -> str:
        return f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {_format(logs)}"


class _Lines(Reporter):
    """verbose=2: one line per epoch on stdout."""

    def epoch_end(self, epoch: int, logs: Logs, seconds: float) -> None:
        print(self._line(epoch, logs, seconds), flush=True)


class _Sparse(Reporter):
    """verbose=1 off a terminal: the lines of every ``every``-th epoch, the first and the last.

    An epoch that is not printed is kept, and printed by :meth:`close` if it turns out to be
    the last one run (training stopped early or was interrupted).
    """

    def __init__(self, epochs: int, steps: int) -> None:
        super().__init__(epochs, steps)
        self.every = max(1, math.ceil(epochs / MAX_LINES))
        self._unprinted: str | None = None

    def epoch_end(self, epoch: int, logs: Logs, seconds: float) -> None:
        line = self._line(epoch, logs, seconds)
        if epoch == 0 or (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            self._unprinted = None
            self._print(line)
        else:
            self._unprinted = line

    def close(self) -> None:
        if self._unprinted is not None:
            self._print(self._unprinted)
            self._unprinted = None

    def _print(self, line: str) -> None:
        print(line, flush=True)


class _Live(_Sparse):
    """verbose=1 on a terminal without tqdm: the lines of :class:`_Sparse`, and between them
    one status line on stdout, rewritten in place at most every REFRESH_SECONDS."""

    def __init__(self, epochs: int, steps: int, stream: TextIO) -> None:
        super().__init__(epochs, steps)
        self.stream = stream
        self._epoch = 0
        self._batch = 0
        self._width = 0  # of the status line on screen (0: none)
        self._drawn = -math.inf  # when it was last drawn

    def epoch_begin(self, epoch: int) -> None:
        self._epoch, self._batch = epoch, 0

    def batch_end(self, running: Logs) -> None:
        self._batch += 1
        now = time.monotonic()
        if now - self._drawn >= REFRESH_SECONDS:
            self._drawn = now
            self._status(
                f"Epoch {self._epoch + 1}/{self.epochs} - batch {self._batch}/{self.steps} - "
                f"{_format(running)}"
            )

    def close(self) -> None:
        super().close()
        self._clear()

    def _print(self, line: str) -> None:
        self._clear()
        self.stream.write(line + "\n")
        self.stream.flush()

    def _status(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def _clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


class _Bar(_Sparse):
    """verbose=1 on a terminal with tqdm: one bar for the whole run, counting batches, with
    the running values, and the lines of :class:`_Sparse` printed above it."""

    def __init__(self, epochs: int, steps: int, tqdm: Any) -> None:
        super().__init__(epochs, steps)
        self.tqdm = tqdm
        self.bar: Any = None

    def epoch_begin(self, epoch: int) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=self.epochs * self.steps, desc="", unit="batch")
        self.bar.set_description_str(f"Epoch {epoch + 1}/{self.epochs}", refresh=False)

    def batch_end(self, running: Logs) -> None:
        self.bar.set_postfix_str(_format(running), refresh=False)
        self.bar.update(1)  # tqdm redraws at most every 0.1 s by itself

    def close(self) -> None:
        super().close()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _print(self, line: str) -> None:
        self.tqdm.write(line, file=sys.stdout)


def reporter(verbose: int, epochs: int, steps: int) -> Reporter:
    """The reporter for ``verbose`` (see the module docstring)."""
    if verbose == 0:
        return Reporter(epochs, steps)
    if verbose == 2:
        return _Lines(epochs, steps)
    tqdm = load_tqdm() if is_terminal(sys.stderr) else None
    if tqdm is not None:
        return _Bar(epochs, steps, tqdm)
    if is_terminal(sys.stdout):
        return _Live(epochs, steps, sys.stdout)
    return _Sparse(epochs, steps)
