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
from nnkit.layers.dropout import Dropout, Dropout2d
from nnkit.layers.embedding import Embedding
from nnkit.layers.merge import Add, Concatenate, Multiply
from nnkit.layers.normalization import LayerNorm
from nnkit.layers.recurrent import GRU, LSTM, RNN
from nnkit.layers.sequence import (
    FinalState,
    LastTimeStep,
    PositionalEmbedding,
    SequenceOutput,
    SinusoidalPositionalEncoding,
)
from nnkit.layers.transformer import TransformerEncoder, TransformerEncoderLayer

__all__ = [
    "ELU",
    "GELU",
    "GRU",
    "LSTM",
    "RNN",
    "Add",
    "Concatenate",
    "Dense",
    "Dropout",
    "Dropout2d",
    "Embedding",
    "FinalState",
    "Identity",
    "LastTimeStep",
    "LayerNorm",
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
    "TransformerEncoder",
    "TransformerEncoderLayer",
]
