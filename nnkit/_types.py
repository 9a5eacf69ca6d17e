"""Small types shared by several modules (kept apart so they import nothing heavy)."""

from __future__ import annotations

Logs = dict[str, float]
"""The values logged for an epoch or a batch: ``{"loss": 0.31, "accuracy": 0.9}``."""
