"""Tolerances for float32 results that reach the same value along different paths.

Two float32 computations of the same quantity agree bit for bit only when they run the same
operations in the same order. A matrix product of another batch size may run another BLAS
kernel (AVX-512, AVX2, SSE: a different summation order and FMA use), and a mean over batches
adds the same numbers in another order; each rounding error is up to half an ulp
(``eps / 2`` relative, ``eps = 2**-23 ≈ 1.2e-7``), and a dot product or sum of ``k`` terms
accumulates up to ``k`` of them, relative to the sum of the terms' magnitudes rather than to
the result. So compare such results with a relative tolerance of about 100 ulp and an
absolute one scaled to the magnitudes involved, never with ``rtol=1e-6`` or exact equality.
Bitwise comparisons stay right for the same computation repeated (a seeded rerun, a resumed
checkpoint), which nnkit promises to reproduce exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FLOAT32_RTOL = 100 * float(np.finfo(np.float32).eps)
"""About 1.2e-5: 100 ulp of float32, for results computed along different paths."""


def assert_close_float32(actual: Any, expected: Any) -> None:
    """``actual`` equals ``expected`` up to float32 rounding along another computation path.

    The absolute tolerance is :data:`FLOAT32_RTOL` times the largest magnitude in
    ``expected``, so entries near zero (a logit that is a difference of larger terms) are
    judged on the scale of the computation, not on their own tiny size.
    """
    expected = np.asarray(expected)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL * scale)
