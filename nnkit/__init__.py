"""nnkit: composable neural networks in pure NumPy.

Layers own their parameters, caches and gradients; containers chain them; losses return a
float and their gradient; optimizers update parameters in place. See docs/architecture.md.

Every layer in ``nnkit.layers.__all__`` and every loss in ``nnkit.losses.__all__`` is
re-exported here, so a new layer is listed once, in its package.
"""

from nnkit import (
    callbacks,
    data,
    datasets,
    diagnostics,
    functional,
    init,
    interop,
    layers,
    losses,
    metrics,
    onnx,
    optim,
    testing,
)
from nnkit._gradcheck import GradcheckError, gradcheck
from nnkit._summary import summary
from nnkit._version import __version__
from nnkit.containers import Concat, Container, Parallel, Residual, Sequential
from nnkit.diagnostics import diagnose
from nnkit.graph import Graph
from nnkit.layers import *  # noqa: F403 - every layer, listed once in nnkit.layers.__all__
from nnkit.layers.attention import causal_mask
from nnkit.losses import *  # noqa: F403 - every loss, listed once in nnkit.losses.__all__
from nnkit.module import Module
from nnkit.parameter import Buffer, Parameter
from nnkit.serialization import (
    CorruptFileError,
    FormatVersionError,
    SerializationError,
    StateMismatchError,
    UnregisteredModuleError,
    UnsafeFileError,
    load,
    load_checkpoint,
    load_safetensors,
    load_weights,
    register_module,
    save,
    save_checkpoint,
    save_safetensors,
    save_weights,
)
from nnkit.training import History, evaluate, fit, predict

__all__ = [
    "Buffer",
    "Concat",
    "Container",
    "CorruptFileError",
    "FormatVersionError",
    "GradcheckError",
    "Graph",
    "History",
    "Module",
    "Parallel",
    "Parameter",
    "Residual",
    "Sequential",
    "SerializationError",
    "StateMismatchError",
    "UnregisteredModuleError",
    "UnsafeFileError",
    "__version__",
    "callbacks",
    "causal_mask",
    "data",
    "datasets",
    "diagnose",
    "diagnostics",
    "evaluate",
    "fit",
    "functional",
    "gradcheck",
    "init",
    "interop",
    "layers",
    "load",
    "load_checkpoint",
    "load_safetensors",
    "load_weights",
    "losses",
    "metrics",
    "onnx",
    "optim",
    "predict",
    "register_module",
    "save",
    "save_checkpoint",
    "save_safetensors",
    "save_weights",
    "summary",
    "testing",
]

__all__ += layers.__all__
__all__ += losses.__all__
