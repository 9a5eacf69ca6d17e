"""nnkit: composable neural networks in pure NumPy.

Layers own their parameters, caches and gradients; containers chain them; losses return a
float and their gradient; optimizers update parameters in place. See docs/architecture.md.
"""

from nnkit import callbacks, data, datasets, functional, init, metrics, optim, testing
from nnkit.containers import Concat, Container, Parallel, Residual, Sequential
from nnkit.gradcheck import GradcheckError, gradcheck
from nnkit.graph import Graph
from nnkit.layers import (
    ELU,
    GELU,
    Add,
    Concatenate,
    Dense,
    Identity,
    LeakyReLU,
    LogSoftmax,
    Multiply,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from nnkit.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    Loss,
    MSELoss,
    NLLLoss,
)
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
from nnkit.summary import summary
from nnkit.training import History, evaluate, fit, predict

__version__ = "0.1.0"

__all__ = [
    "ELU",
    "GELU",
    "Add",
    "BCELoss",
    "BCEWithLogitsLoss",
    "Buffer",
    "Concat",
    "Concatenate",
    "Container",
    "CorruptFileError",
    "CrossEntropyLoss",
    "Dense",
    "FormatVersionError",
    "GradcheckError",
    "Graph",
    "History",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "LeakyReLU",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "Module",
    "Multiply",
    "NLLLoss",
    "Parallel",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "SerializationError",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "StateMismatchError",
    "Tanh",
    "UnregisteredModuleError",
    "UnsafeFileError",
    "__version__",
    "callbacks",
    "data",
    "datasets",
    "evaluate",
    "fit",
    "functional",
    "gradcheck",
    "init",
    "load",
    "load_checkpoint",
    "load_safetensors",
    "load_weights",
    "metrics",
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
