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
from nnkit.layers.batchnorm import BatchNorm1d, BatchNorm2d
from nnkit.layers.conv import Conv1d, Conv2d, ConvTranspose2d
from nnkit.layers.dense import Dense
from nnkit.layers.dropout import Dropout, Dropout2d
from nnkit.layers.embedding import Embedding
from nnkit.layers.merge import Add, Concatenate, Multiply
from nnkit.layers.normalization import GroupNorm, LayerNorm
from nnkit.layers.pooling import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from nnkit.layers.recurrent import GRU, LSTM, RNN
from nnkit.layers.reshape import Flatten, Reshape, Unflatten
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
    "FinalState",
    "Flatten",
    "GroupNorm",
    "Identity",
    "LastTimeStep",
    "LayerNorm",
    "LeakyReLU",
    "LogSoftmax",
    "MaxPool1d",
    "MaxPool2d",
    "MultiheadAttention",
    "Multiply",
    "PositionalEmbedding",
    "ReLU",
    "Reshape",
    "SequenceOutput",
    "SiLU",
    "Sigmoid",
    "SinusoidalPositionalEncoding",
    "Softmax",
    "Softplus",
    "Tanh",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "Unflatten",
]
