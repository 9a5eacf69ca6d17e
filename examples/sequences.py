"""The temporal-order task (Hochreiter & Schmidhuber, 1997), solved by an LSTM, a GRU and a
small Transformer encoder.

Run it:                     python examples/sequences.py
One model, other seeds:     python examples/sequences.py --models transformer --seed 3

Each sequence is 50 random distractor tokens (a, b, c, d) with three marker tokens, each X
or Y, at three random distinct positions anywhere in it. The class is the markers' order,
XXX, XXY, ..., YYY (8 classes, chance 12.5%). A model must notice the markers among the
distractors and remember their order; counting the Xs alone gets 50% at best.

Both kinds of model read token ids through an Embedding and classify from the last time step:

    recurrent:    Embedding -> LSTM or GRU -> LastTimeStep -> Dense
    transformer:  Embedding -> PositionalEmbedding -> TransformerEncoder (2 layers)
                  -> LastTimeStep -> Dense

All data is made here; nothing is downloaded. docs/sequences.md has the measured results.
"""

from __future__ import annotations

import argparse
import os
import time

# The per-step products of a small recurrent layer (32 x 32 x 128 here) are far too small for
# a BLAS thread pool: on the 2-core development machine a second thread made every step
# several times slower. Set before NumPy loads; an explicit setting in the environment wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402 - after the thread settings

import nnkit  # noqa: E402
from nnkit.optim import Adam  # noqa: E402

LENGTH = 50
DISTRACTORS = 4  # tokens 0..3
X_TOKEN, Y_TOKEN = 4, 5
VOCAB = 6
MARKERS = 3
CLASSES = 2**MARKERS  # XXX, XXY, ..., YYY

# The documented settings.
TRAIN, TEST = 4000, 1000
EPOCHS = {"lstm": 5, "gru": 5, "transformer": 20}
BATCH = 32


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of token ids, (n, LENGTH), and their classes, (n,)."""
    tokens = rng.integers(0, DISTRACTORS, size=(n, LENGTH))
    markers = rng.integers(0, 2, size=(n, MARKERS))  # 0: X, 1: Y, in order of position
    positions = np.sort(rng.random((n, LENGTH)).argsort(axis=1)[:, :MARKERS], axis=1)
    rows = np.arange(n)[:, None]
    tokens[rows, positions] = X_TOKEN + markers
    labels = markers @ (2 ** np.arange(MARKERS - 1, -1, -1))
    return tokens, labels


def make_model(kind: str, rng: np.random.Generator) -> nnkit.Sequential:
    """An LSTM, a GRU or a Transformer encoder classifier, batch-first as ``fit`` batches."""
    if kind in ("lstm", "gru"):
        recurrent = nnkit.LSTM if kind == "lstm" else nnkit.GRU
        return nnkit.Sequential(
            nnkit.Embedding(VOCAB, 16, rng=rng),
            recurrent(16, 32, batch_first=True, rng=rng),
            nnkit.LastTimeStep(batch_first=True),
            nnkit.Dense(32, CLASSES, rng=rng),
        )
    if kind == "transformer":
        layer = nnkit.TransformerEncoderLayer(
            32, 4, dim_feedforward=64, dropout=0.0, batch_first=True, rng=rng
        )
        return nnkit.Sequential(
            nnkit.Embedding(VOCAB, 32, rng=rng),
            nnkit.PositionalEmbedding(LENGTH, 32, batch_first=True, rng=rng),
            nnkit.TransformerEncoder(layer, 2),
            nnkit.LastTimeStep(batch_first=True),
            nnkit.Dense(32, CLASSES, rng=rng),
        )
    raise ValueError(f"unknown model {kind!r}: choose lstm, gru or transformer")


def run(
    kind: str, seed: int = 0, train: int = TRAIN, epochs: int | None = None, verbose: int = 0
) -> tuple[float, float]:
    """Train one model on fresh data (``epochs`` None: the documented number for the kind);
    returns (test accuracy, training seconds)."""
    rng = np.random.default_rng(seed)
    x_train, y_train = make_data(train, rng)
    x_test, y_test = make_data(TEST, rng)
    model = make_model(kind, rng)
    lr = 3e-3 if kind == "transformer" else 1e-2
    optimizer = Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    nnkit.fit(
        model,
        nnkit.CrossEntropyLoss(),
        optimizer,
        x_train,
        y_train,
        epochs=EPOCHS[kind] if epochs is None else epochs,
        batch_size=BATCH,
        rng=rng,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    results = nnkit.evaluate(model, nnkit.CrossEntropyLoss(), x_test, y_test)
    return float(results["accuracy"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["lstm", "gru", "transformer"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="for every model (default: per model)")
    parser.add_argument("--train", type=int, default=TRAIN, help="training sequences")
    args = parser.parse_args()
    print(f"temporal order, {args.train} training and {TEST} test sequences of length {LENGTH}")
    for kind in args.models:
        accuracy, seconds = run(kind, args.seed, train=args.train, epochs=args.epochs)
        epochs = EPOCHS[kind] if args.epochs is None else args.epochs
        print(f"{kind:12} test accuracy {accuracy:6.1%}   {epochs:3d} epochs in {seconds:5.1f} s")


if __name__ == "__main__":
    main()
