"""Built-in layers, one family per file."""

from nnkit.layers.activations import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from nnkit.layers.dense import Dense
from nnkit.layers.merge import Add, Concatenate, Multiply

__all__ = [
    "ELU",
    "GELU",
    "Add",
    "Concatenate",
    "Dense",
    "Identity",
    "LeakyReLU",
    "LogSoftmax",
    "Multiply",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]
