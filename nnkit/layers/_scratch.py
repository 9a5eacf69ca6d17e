"""Arrays a layer keeps and rewrites between steps instead of allocating them anew.

glibc hands multi-megabyte NumPy buffers back to the kernel when they are freed, and the next
step faults every page in again (about 4.5 us per 4 KB page: 2 ms for one 2 MB array, more
than the arithmetic on it). A layer whose cache or scratch array has the same shape every
step therefore keeps it and writes into it with ``out=``. Only arrays the layer owns are
reused this way, never one it returns: outputs and input gradients are always new arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from nnkit.module import Array

__all__ = ["reuse"]


def reuse(buffer: Array | None, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
    """``buffer`` itself if it has ``shape`` and ``dtype``, else a new uninitialised array."""
    if buffer is not None and buffer.shape == shape and buffer.dtype == dtype:
        return buffer
    out: Array = np.empty(shape, dtype=dtype)
    return out
