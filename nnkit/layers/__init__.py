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
from nnkit.layers.conv import Conv1d, Conv2d, ConvTranspose2d
from nnkit.layers.dense import Dense
from nnkit.layers.dropout import Dropout, Dropout2d
from nnkit.layers.embedding import Embedding
from nnkit.layers.merge import Add, Concatenate, Multiply
from nnkit.layers.normalization import GroupNorm, LayerNorm
from nnkit.layers.pooling import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from nnkit.layers.reshape import Flatten, Reshape, Unflatten

__all__ = [
    "ELU",
    "GELU",
    "AdaptiveAvgPool2d",
    "Add",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Concatenate",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "Dense",
    "Dropout",
    "Dropout2d",
    "Embedding",
    "Flatten",
    "GroupNorm",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "LogSoftmax",
    "MaxPool1d",
    "MaxPool2d",
    "Multiply",
    "ReLU",
    "Reshape",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "Unflatten",
]
