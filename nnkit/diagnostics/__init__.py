"""Why won't my network learn? Diagnostics that name the layer and the cause.

- :func:`diagnose`: everything below on copies of a model, loss, data and optimizer, as a
  :class:`Report` of :class:`Finding` objects, likeliest cause first;
- :func:`lint`: the static checks alone (data, targets, the output layer and the loss,
  initialisation, biases); ``fit`` runs it and warns;
- :func:`check_gradients`: the gradient check of a whole model that names the first module
  whose backward is wrong;
- :class:`HealthMonitor`: per-layer statistics of a training run (a ``fit`` callback).

docs/why-wont-it-learn.md shows each finding code with an example.
"""

from nnkit.diagnostics.findings import CODES, Finding, Report, SetupWarning, Severity
from nnkit.diagnostics.gradients import check_gradients
from nnkit.diagnostics.lint import lint
from nnkit.diagnostics.monitor import HealthMonitor
from nnkit.diagnostics.probe import diagnose

__all__ = [
    "CODES",
    "Finding",
    "HealthMonitor",
    "Report",
    "SetupWarning",
    "Severity",
    "check_gradients",
    "diagnose",
    "lint",
]
