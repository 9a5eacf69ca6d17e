"""Findings and the report that orders them: the vocabulary of ``nnkit.diagnose``.

Each finding has a stable ``code`` (part of the public API, listed in :data:`CODES` and in
docs/why-wont-it-learn.md with an example each), a severity, the place it concerns (a dotted
module name such as ``"2"`` or ``"body.0"``, or ``"data"``, ``"loss"``, ``"optimizer"``,
``"model"``), a message that says what to do, and the numbers behind it.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CODES", "Finding", "Report", "SetupWarning", "Severity"]

Severity = Literal["error", "warning", "info"]

CODES: dict[str, tuple[Severity, str]] = {
    "bad_gradient": ("error", "a module's backward disagrees with finite differences"),
    "nonfinite": ("error", "a NaN or inf (or an overflow) first appears in a module"),
    "target_mismatch": ("error", "targets that do not fit the loss"),
    "activation_before_logits_loss": (
        "error",
        "Softmax/LogSoftmax/Sigmoid output fed to a loss that applies its own",
    ),
    "probabilities_loss_on_logits": (
        "error",
        "BCELoss/NLLLoss fed values that are not probabilities/log-probabilities",
    ),
    "bad_init": ("warning", "weights of one sign, identical rows, or a scale far off"),
    "no_bias": ("warning", "layers without bias where the data needs an offset"),
    "unscaled_inputs": ("warning", "input features far from zero mean and unit scale"),
    "constant_inputs": ("warning", "a feature with zero variance, or identical samples"),
    "lr_too_high": ("warning", "the loss diverges or oscillates in the probe"),
    "exploding_gradient": ("warning", "gradient norms growing by orders of magnitude"),
    "vanishing_gradient": ("warning", "gradient norms shrinking by orders of magnitude"),
    "dead_units": ("warning", "most ReLU units of a layer never active on the data"),
    "saturated_units": ("warning", "most sigmoid/tanh units of a layer in the flat region"),
    "constant_output": ("warning", "the network outputs nearly the same value for every sample"),
    "lr_too_low": ("warning", "updates far smaller than the parameters"),
    "not_learning": ("warning", "the loss does not fall and nothing above explains it"),
}
"""Every finding code: its severity and what it means. Findings are reported in this order
within a severity: the earlier code is the likelier root cause."""


class SetupWarning(UserWarning):
    """A problem in a training setup that ``fit`` found before training (see ``lint``)."""


_RANK = {code: i for i, code in enumerate(CODES)}
_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One problem found, with the evidence behind it.

    Attributes:
        code: a stable identifier from :data:`CODES`.
        severity: ``"error"`` (training cannot work), ``"warning"`` (it likely will not work
            well), or ``"info"``.
        where: a dotted module name, or ``"data"``, ``"loss"``, ``"optimizer"``, ``"model"``.
        message: what is wrong and what to do, in plain words.
        evidence: the numbers behind it.
    """

    code: str
    severity: Severity
    where: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.severity}] {self.code} at {self.where}: {self.message}"


def finding(
    code: str, where: str, message: str, *, severity: Severity | None = None, **evidence: Any
) -> Finding:
    """A Finding with the code's severity (or ``severity``, where the evidence changes it)."""
    return Finding(code, severity or CODES[code][0], where, message, evidence)


@dataclass
class Report:
    """What ``nnkit.diagnose`` found: the findings sorted by severity, likeliest cause first.

    ``print(report)`` reads as plain advice; ``report.findings`` holds the Finding objects;
    ``report.codes`` their codes in order; ``bool(report)`` is True when there is a warning or
    an error.
    """

    findings: list[Finding]
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.findings = sorted(
            self.findings,
            key=lambda f: (_SEVERITY_RANK[f.severity], _RANK.get(f.code, len(_RANK))),
        )

    @property
    def codes(self) -> list[str]:
        """The codes of the findings, in report order."""
        return [f.code for f in self.findings]

    @property
    def problems(self) -> list[Finding]:
        """The errors and warnings (no info notes)."""
        return [f for f in self.findings if f.severity != "info"]

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __str__(self) -> str:
        count, notes = len(self.problems), len(self.findings) - len(self.problems)
        also = f" and {notes} note{'s' if notes > 1 else ''}" if notes else ""
        if not self.problems:
            lines = [f"nnkit.diagnose: no problems found{also}."]
        else:
            lines = [
                f"nnkit.diagnose: {count} problem{'s' if count > 1 else ''}{also} found, "
                "likeliest first."
            ]
        for i, f in enumerate(self.findings, 1):
            lines.append(f"{i}. [{f.severity}] {f.code} at {f.where}")
            lines.append(
                textwrap.fill(f.message, 92, initial_indent="   ", subsequent_indent="   ")
            )
            if f.evidence:
                shown = ", ".join(f"{k}={_short(v)}" for k, v in f.evidence.items())
                lines.append(
                    textwrap.fill(
                        f"evidence: {shown}", 92, initial_indent="   ", subsequent_indent="     "
                    )
                )
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return "[" + ", ".join(_short(v) for v in value[:6]) + ", ...]"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)
