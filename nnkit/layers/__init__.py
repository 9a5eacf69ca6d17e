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
from nnkit.layers.batchnorm import BatchNorm1d, BatchNorm2d
from nnkit.layers.dense import Dense
from nnkit.layers.dropout import Dropout, Dropout2d
from nnkit.layers.embedding import Embedding
from nnkit.layers.merge import Add, Concatenate, Multiply
from nnkit.layers.normalization import GroupNorm, LayerNorm

__all__ = [
    "ELU",
    "GELU",
    "Add",
    "BatchNorm1d",
    "BatchNorm2d",
    "Concatenate",
    "Dense",
    "Dropout",
    "Dropout2d",
    "Embedding",
    "GroupNorm",
    "Identity",
    "LayerNorm",
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
