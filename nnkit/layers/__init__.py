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
from nnkit.layers.attention import MultiheadAttention
from nnkit.layers.dense import Dense
from nnkit.layers.merge import Add, Concatenate, Multiply
from nnkit.layers.recurrent import GRU, LSTM, RNN
from nnkit.layers.sequence import (
    LastTimeStep,
    PositionalEmbedding,
    SequenceOutput,
    SinusoidalPositionalEncoding,
)

__all__ = [
    "ELU",
    "GELU",
    "GRU",
    "LSTM",
    "RNN",
    "Add",
    "Concatenate",
    "Dense",
    "Identity",
    "LastTimeStep",
    "LeakyReLU",
    "LogSoftmax",
    "MultiheadAttention",
    "Multiply",
    "PositionalEmbedding",
    "ReLU",
    "SequenceOutput",
    "SiLU",
    "Sigmoid",
    "SinusoidalPositionalEncoding",
    "Softmax",
    "Softplus",
    "Tanh",
]
