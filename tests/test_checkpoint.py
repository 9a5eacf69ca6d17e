"""Tests for checkpoints: exact resume of training, every stored value type, and faults."""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit import serialization as ser
from nnkit.data import DataLoader
from nnkit.serialization import archive

try:
    from nnkit.optim import SGD, Adam, lr_scheduler
except ImportError:  # pragma: no cover - the optimizers are developed separately
    SGD = Adam = lr_scheduler = None  # type: ignore[assignment, misc]

needs_optim = pytest.mark.skipif(SGD is None, reason="nnkit.optim is not available")


def same(a: Any, b: Any) -> bool:
    """Exact equality: same types all the way down, same bits for arrays, nan equals nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def params_of(model: nnkit.Module) -> dict[str, np.ndarray]:
    return model.state_dict()


# -- resuming training -----------------------------------------------------------------------

N_EPOCHS, STOP_AT = 4, 2


def setup(seed: int, make_optimizer: Callable[[nnkit.Module], Any]) -> tuple[Any, ...]:
    """A fresh model, optimizer, scheduler and shuffling loader, all seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    model = nnkit.Sequential(nnkit.Dense(3, 8, rng=rng), nnkit.Tanh(), nnkit.Dense(8, 2, rng=rng))
    optimizer = make_optimizer(model)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    data = np.random.default_rng(1234)
    X = data.standard_normal((60, 3)).astype(np.float32)
    Y = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1).astype(np.float32)
    loader = DataLoader(X, Y, batch_size=16, shuffle=True, rng=np.random.default_rng(seed + 1))
    return model, optimizer, scheduler, loader


def train(model: Any, optimizer: Any, scheduler: Any, loader: Any, epochs: int) -> list[float]:
    loss_fn = nnkit.MSELoss()
    losses = []
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            losses.append(loss_fn(model(xb), yb))
            model.backward(loss_fn.backward())
            optimizer.step()
        scheduler.step()
    return losses


OPTIMIZERS: dict[str, Callable[[nnkit.Module], Any]] = {
    "SGD-momentum": lambda m: SGD(m.parameters(), lr=0.05, momentum=0.9),
    "Adam": lambda m: Adam(m.parameters(), lr=0.01),
}


@needs_optim
@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_resuming_from_a_checkpoint_is_bitwise_identical(
    make_optimizer: Callable[[nnkit.Module], Any], tmp_path: Path
) -> None:
    model, optimizer, scheduler, loader = setup(0, make_optimizer)
    reference = train(model, optimizer, scheduler, loader, N_EPOCHS)

    model, optimizer, scheduler, loader = setup(0, make_optimizer)
    losses = train(model, optimizer, scheduler, loader, STOP_AT)
    ser.save_checkpoint(
        tmp_path / "ckpt.npz",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=STOP_AT,
        extra={"losses": losses},
        rng=loader.rng,
    )
    del model, optimizer, scheduler, loader

    # A new process would rebuild everything from scratch, with any seed.
    model, optimizer, scheduler, loader = setup(7, make_optimizer)
    info = ser.load_checkpoint(
        tmp_path / "ckpt.npz",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        rng=loader.rng,
    )
    assert info["epoch"] == STOP_AT
    losses = info["extra"]["losses"] + train(
        model, optimizer, scheduler, loader, N_EPOCHS - STOP_AT
    )
    assert losses == reference  # every loss, in the same data order

    final = params_of(model)
    model, optimizer, scheduler, loader = setup(0, make_optimizer)
    train(model, optimizer, scheduler, loader, N_EPOCHS)
    assert same(final, params_of(model))

    # The test sees the data order: resuming without the generator's state diverges.
    model, optimizer, scheduler, loader = setup(7, make_optimizer)
    ser.load_checkpoint(
        tmp_path / "ckpt.npz", model=model, optimizer=optimizer, scheduler=scheduler
    )
    resumed_at = STOP_AT * len(loader)
    next_epoch = reference[resumed_at : resumed_at + len(loader)]
    assert train(model, optimizer, scheduler, loader, 1) != next_epoch


@needs_optim
def test_resuming_fit_from_a_checkpoint_is_bitwise_identical(tmp_path: Path) -> None:
    training = pytest.importorskip("nnkit.training")
    data = np.random.default_rng(5)
    X = data.standard_normal((50, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)

    def run(seed: int, epochs: int, resume: bool = False) -> tuple[Any, ...]:
        rng = np.random.default_rng(seed)
        model = nnkit.Sequential(
            nnkit.Dense(3, 8, rng=rng), nnkit.Tanh(), nnkit.Dense(8, 3, rng=rng)
        )
        optimizer = Adam(model.parameters(), lr=0.01)
        if resume:
            ser.load_checkpoint(tmp_path / "c.npz", model=model, optimizer=optimizer, rng=rng)
        history = training.fit(
            model,
            nnkit.CrossEntropyLoss(),
            optimizer,
            X,
            y,
            epochs=epochs,
            batch_size=8,
            rng=rng,
            verbose=0,
        )
        return model, optimizer, rng, history.history["loss"]

    model, _, _, reference = run(0, 4)
    partial, optimizer, rng, losses = run(0, 2)
    ser.save_checkpoint(tmp_path / "c.npz", model=partial, optimizer=optimizer, rng=rng)
    resumed, _, _, rest = run(9, 2, resume=True)
    assert losses + rest == reference
    assert same(params_of(resumed), params_of(model))


@needs_optim
@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_optimizer_and_scheduler_state_round_trip_exactly(
    make_optimizer: Callable[[nnkit.Module], Any], tmp_path: Path
) -> None:
    model, optimizer, scheduler, loader = setup(0, make_optimizer)
    train(model, optimizer, scheduler, loader, 1)
    ser.save_checkpoint(tmp_path / "c.npz", model=model, optimizer=optimizer, scheduler=scheduler)
    model2, optimizer2, scheduler2, _ = setup(3, make_optimizer)
    ser.load_checkpoint(
        tmp_path / "c.npz", model=model2, optimizer=optimizer2, scheduler=scheduler2
    )
    assert same(optimizer2.state_dict(), optimizer.state_dict())  # tuples, int keys, dtypes
    assert same(scheduler2.state_dict(), scheduler.state_dict())


def _all_optimizers() -> dict[str, Callable[[list[Any]], Any]]:
    if SGD is None:  # pragma: no cover
        return {}
    from nnkit import optim

    return {
        "SGD-nesterov": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        "Adam-amsgrad": lambda p: optim.Adam(p, lr=0.1, amsgrad=True),
        "AdamW": lambda p: optim.AdamW(p, lr=0.1),
        "RMSprop-centered": lambda p: optim.RMSprop(p, lr=0.1, centered=True, momentum=0.5),
        "Adagrad": lambda p: optim.Adagrad(p, lr=0.1),
    }


def _all_schedulers() -> dict[str, Callable[[Any], Any]]:
    if SGD is None:  # pragma: no cover
        return {}
    from nnkit.optim import Adagrad

    L = lr_scheduler
    return {
        "StepLR": lambda o: L.StepLR(o, step_size=2),
        "MultiStepLR": lambda o: L.MultiStepLR(o, milestones=[1, 3, 3]),
        "ExponentialLR": lambda o: L.ExponentialLR(o, gamma=0.9),
        "CosineAnnealingLR": lambda o: L.CosineAnnealingLR(o, T_max=5),
        "LinearLR": lambda o: L.LinearLR(o),
        "LambdaLR": lambda o: L.LambdaLR(o, lambda epoch: 0.5**epoch),
        "OneCycleLR": lambda o: L.OneCycleLR(
            o, max_lr=1.0, total_steps=10, cycle_momentum=not isinstance(o, Adagrad)
        ),
        "ReduceLROnPlateau": lambda o: L.ReduceLROnPlateau(o, patience=0),
    }


OPTIMIZER_TABLE, SCHEDULER_TABLE = _all_optimizers(), _all_schedulers()


@needs_optim
@pytest.mark.parametrize("make_scheduler", SCHEDULER_TABLE.values(), ids=SCHEDULER_TABLE.keys())
@pytest.mark.parametrize("make_optimizer", OPTIMIZER_TABLE.values(), ids=OPTIMIZER_TABLE.keys())
def test_every_optimizer_and_scheduler_round_trips(
    make_optimizer: Callable[[list[Any]], Any],
    make_scheduler: Callable[[Any], Any],
    tmp_path: Path,
) -> None:
    def build() -> tuple[Any, Any, Any]:
        model = nnkit.Sequential(nnkit.Dense(2, 2, rng=np.random.default_rng(0)))
        optimizer = make_optimizer(list(model.parameters()))
        return model, optimizer, make_scheduler(optimizer)

    model, optimizer, scheduler = build()
    for step in range(3):
        for param in model.parameters():
            param.grad[...] = step + 1.0
        optimizer.step()
        scheduler.step(*([1.0] if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau) else []))
    ser.save_checkpoint(tmp_path / "c.npz", model=model, optimizer=optimizer, scheduler=scheduler)
    model2, optimizer2, scheduler2 = build()
    ser.load_checkpoint(
        tmp_path / "c.npz", model=model2, optimizer=optimizer2, scheduler=scheduler2
    )
    assert same(optimizer2.state_dict(), optimizer.state_dict())
    assert same(scheduler2.state_dict(), scheduler.state_dict())
    assert same(params_of(model2), params_of(model))


# -- every storable value --------------------------------------------------------------------

EXTRA = {
    "none": None,
    "flags": [True, False],
    "ints": [0, -1, 2**100, -(2**70)],
    "floats": [0.1, -0.0, 1e-308, 5e-324, 1.7976931348623157e308, math.inf, -math.inf, math.nan],
    "text": "naïve ✓ \u0000 \ud800",
    "tuple": (1, (2.5, "x"), ()),
    "int_keys": {0: "a", 7: {1: [2]}, -3: None},
    "mixed_keys": {"a": 1, 2: "b"},
    "__dunder__": {"__array__": "not a tag", "__x": 1},
    "empty": [{}, [], ()],
    "arrays": [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.array([1 + 2j], dtype=np.complex128),
        np.array([True, False]),
        np.arange(3, dtype=np.uint8),
        np.zeros((0,), dtype=np.int64),
        np.array(np.nan, dtype=np.float16),
    ],
    "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.float64(np.pi)],
}


@pytest.mark.parametrize(
    "rng",
    [np.random.default_rng(5), np.random.Generator(np.random.MT19937(5))],
    ids=["PCG64", "MT19937"],
)
def test_extra_epoch_and_rng_round_trip_exactly(rng: np.random.Generator, tmp_path: Path) -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 2))
    rng.standard_normal(3)
    ser.save_checkpoint(tmp_path / "c.npz", model=model, epoch=12, extra=EXTRA, rng=rng)
    expected = rng.standard_normal(5)
    restored = np.random.Generator(type(rng.bit_generator)(99))
    info = ser.load_checkpoint(tmp_path / "c.npz", model=model, rng=restored)
    assert info["epoch"] == 12 and same(info["extra"], EXTRA)
    assert restored.standard_normal(5).tobytes() == expected.tobytes()


def test_a_minimal_checkpoint(tmp_path: Path) -> None:
    model = nnkit.Sequential(nnkit.Dense(2, 2))
    ser.save_checkpoint(tmp_path / "c.npz", model=model)
    assert ser.load_checkpoint(tmp_path / "c.npz", model=model) == {"epoch": None, "extra": None}


class Opaque:
    pass


class MyFloat(float):
    pass


UNSTORABLE: list[tuple[str, Any, str]] = [
    ("set", {"a": {1, 2}}, r"extra\['a'\]: a value of type set"),
    ("object", [1, Opaque()], r"extra\[1\]: a value of type Opaque"),
    ("float-subclass", {"x": MyFloat(1.0)}, "type MyFloat"),
    ("bytes", {"b": b"raw"}, "type bytes"),
    ("tuple-key", {(1, 2): 3}, r"dict key \(1, 2\) is a tuple"),
    ("bool-key", {True: 3}, "dict key True is a bool"),
    ("object-array", {"a": np.array([None])}, r"extra\['a'\]: dtype object"),
    ("string-array", {"a": np.array(["s"])}, "dtype <U1"),
    ("masked-array", {"m": np.ma.array([1.0, 2.0])}, "type MaskedArray"),
    ("self-containing", (lambda d: d.update(me=d) or d)({}), "nested more than"),
]


@pytest.mark.parametrize(
    ("extra", "match"), [u[1:] for u in UNSTORABLE], ids=[u[0] for u in UNSTORABLE]
)
def test_an_unstorable_extra_fails_before_writing(extra: Any, match: str, tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(b"old")
    with pytest.raises(ser.SerializationError, match=match):
        ser.save_checkpoint(path, model=nnkit.Sequential(), extra=extra)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_an_oversized_header_is_refused_when_saving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(ser.SerializationError, match=r"store large data .* as numpy arrays"):
        ser.save_checkpoint(tmp_path / "c.npz", model=nnkit.Sequential(), extra=list(range(1000)))
    ser.save_checkpoint(tmp_path / "c.npz", model=nnkit.Sequential(), extra=np.arange(1000))
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epoch": 1.0}, "epoch must be an int"),
        ({"epoch": True}, "epoch must be an int"),
        ({"rng": np.random.RandomState(0)}, "np.random.Generator"),
        ({"model": "model"}, "Module"),
    ],
)
def test_wrong_argument_types(kwargs: dict[str, Any], match: str, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=match):
        ser.save_checkpoint(tmp_path / "c.npz", **{"model": nnkit.Sequential(), **kwargs})


# -- faults when loading ---------------------------------------------------------------------


class Flaky:
    """A scheduler-like object whose load_state_dict always fails."""

    def __init__(self) -> None:
        self.value = 1

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = state["value"]
        if state["value"] == 2:  # changes itself, then fails: the rollback must undo this
            raise ValueError("this scheduler refuses")


@pytest.fixture
def trained(tmp_path: Path) -> dict[str, Any]:
    """A checkpoint with every part, and fresh objects to load it into."""
    if SGD is None:
        pytest.skip("nnkit.optim is not available")
    model, optimizer, scheduler, loader = setup(0, OPTIMIZERS["SGD-momentum"])
    train(model, optimizer, scheduler, loader, 1)
    path = tmp_path / "c.npz"
    ser.save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        rng=loader.rng,
        extra={"a": np.ones(2)},
        epoch=1,
    )
    model, optimizer, scheduler, loader = setup(5, OPTIMIZERS["SGD-momentum"])
    train(model, optimizer, scheduler, loader, 1)  # give the targets some state of their own
    return {
        "path": path,
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "rng": loader.rng,
    }


def snapshot(objs: dict[str, Any]) -> list[Any]:
    return [
        objs["model"].state_dict(),
        objs["optimizer"].state_dict(),
        objs["scheduler"].state_dict(),
        objs["rng"].bit_generator.state,
    ]


def edit_header(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    with zipfile.ZipFile(path) as z:
        items = {name: z.read(name) for name in z.namelist()}
    header = json.loads(items["header.json"])
    edit(header)
    items["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items.items():
            z.writestr(name, data)


def retag(param_state: dict[str, Any]) -> None:
    """Make a parameter's momentum buffer claim to be a scalar."""
    param_state["momentum_buffer"] = {"__scalar__": param_state["momentum_buffer"]["__array__"]}


def set_extra(node: Any, keep_array: bool = True) -> Callable[[dict[str, Any]], object]:
    """Replace extra by ``node`` (next to the file's one extra array, unless not kept)."""
    extra = [node, {"__array__": "extra/0"}] if keep_array else node
    return lambda h: h.update(extra=extra)


LOAD_FAULTS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], type[Exception], str]] = [
    (
        "model-shape",
        lambda o: {
            **o,
            "model": nnkit.Sequential(nnkit.Dense(3, 9), nnkit.Tanh(), nnkit.Dense(9, 2)),
        },
        ser.StateMismatchError,
        r"0\.weight: shape \(3, 8\) in the state, \(3, 9\) in the model",
    ),
    (
        "optimizer-class",
        lambda o: {**o, "optimizer": Adam(o["model"].parameters())},
        ser.StateMismatchError,
        "state of a SGD optimizer, not of a Adam",
    ),
    (
        "optimizer-groups",
        lambda o: {
            **o,
            "optimizer": SGD(
                [
                    {"params": list(o["model"].parameters())[:2]},
                    {"params": list(o["model"].parameters())[2:]},
                ],
                lr=0.1,
            ),
        },
        ser.StateMismatchError,
        "optimizer state .* does not fit this SGD",
    ),
    (
        "scheduler-rejects",
        lambda o: {**o, "scheduler": Flaky()},
        ser.StateMismatchError,
        "state of a StepLR scheduler, not of a Flaky",
    ),
    (
        "rng-kind",
        lambda o: {**o, "rng": np.random.Generator(np.random.MT19937(1))},
        ser.StateMismatchError,
        "does not fit a MT19937",
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "match"), [f[1:] for f in LOAD_FAULTS], ids=[f[0] for f in LOAD_FAULTS]
)
def test_a_checkpoint_that_does_not_fit_changes_nothing(
    change: Callable[[dict[str, Any]], dict[str, Any]],
    error: type[Exception],
    match: str,
    trained: dict[str, Any],
) -> None:
    objs = change(trained)
    before = snapshot(objs)
    with pytest.raises(error, match=match):
        ser.load_checkpoint(
            objs["path"],
            model=objs["model"],
            optimizer=objs["optimizer"],
            scheduler=objs["scheduler"],
            rng=objs["rng"],
        )
    assert same(snapshot(objs), before)


def test_a_failure_after_the_optimizer_was_restored_rolls_it_back(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    flaky = Flaky()
    flaky.value = 2
    ser.save_checkpoint(
        tmp_path / "f.npz",
        model=trained["model"],
        optimizer=SGD(trained["model"].parameters(), lr=0.5, momentum=0.1),
        scheduler=flaky,
        rng=np.random.default_rng(3),
    )
    flaky.value = 1
    for param in trained["model"].parameters():  # so that loading the weights changes them
        param.data += 1
    objs = {**trained, "scheduler": flaky}
    before = snapshot(objs)
    with pytest.raises(
        ser.StateMismatchError, match=r"scheduler state .* refuses\); nothing was changed"
    ):
        ser.load_checkpoint(
            tmp_path / "f.npz",
            model=objs["model"],
            optimizer=objs["optimizer"],
            scheduler=flaky,
            rng=objs["rng"],
        )
    assert same(snapshot(objs), before)
    assert objs["optimizer"].param_groups[0]["lr"] != 0.5


@pytest.mark.parametrize("missing", ["optimizer", "scheduler", "rng"])
def test_asking_for_a_part_the_file_lacks(
    missing: str, trained: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "partial.npz"
    parts = {
        "optimizer": trained["optimizer"],
        "scheduler": trained["scheduler"],
        "rng": trained["rng"],
    }
    ser.save_checkpoint(
        path, model=trained["model"], **{k: v for k, v in parts.items() if k != missing}
    )
    before = snapshot(trained)
    with pytest.raises(ser.StateMismatchError, match=f"holds no {missing} state.*{missing}="):
        ser.load_checkpoint(path, model=trained["model"], **parts)
    assert same(snapshot(trained), before)
    parts.pop(missing)
    ser.load_checkpoint(path, model=trained["model"], **parts)  # fine without it


CORRUPT_HEADERS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("epoch-not-int", lambda h: h.update(epoch="1"), "epoch"),
    ("optimizer-entry", lambda h: h["optimizer"].update(surprise=1), r"optimizer entry"),
    ("unknown-tag", set_extra({"__pickle__": "x"}), "unknown tag '__pickle__'"),
    ("bad-float-tag", set_extra({"__float__": "1e999"}), "__float__"),
    ("bad-dict-tag", set_extra({"__dict__": [[1]]}), r"\[key, value\] pair"),
    ("duplicate-dict-key", set_extra({"__dict__": [[1, 2], [1, 3]]}), "key 1 twice"),
    ("tuple-not-list", set_extra({"__tuple__": 5}), "not a list"),
    ("array-name-not-str", set_extra({"__array__": 3}), "not a string"),
    ("array-missing", set_extra({"__array__": "extra/9"}), "not in the archive"),
    (
        "array-used-twice",
        set_extra({"__array__": "extra/0"}),
        "already used",
    ),
    ("array-unused", set_extra(None, keep_array=False), "does not mention"),
    (
        "scalar-not-0d",
        lambda h: retag(h["optimizer"]["state"]["state"]["__dict__"][0][1]),
        "scalar stored as an array of shape",
    ),
    (
        "too-deep",
        set_extra(json.loads("[" * 150 + '{"__array__": "extra/0"}' + "]" * 150), False),
        "nested more than",
    ),
]


@pytest.mark.parametrize(
    ("edit", "match"), [c[1:] for c in CORRUPT_HEADERS], ids=[c[0] for c in CORRUPT_HEADERS]
)
def test_a_malformed_checkpoint_header_is_refused(
    edit: Callable[[dict[str, Any]], object], match: str, trained: dict[str, Any]
) -> None:
    path = trained["path"]
    edit_header(path, edit)
    before = snapshot(trained)
    with pytest.raises(ser.CorruptFileError, match=match):
        ser.load_checkpoint(
            path,
            model=trained["model"],
            optimizer=trained["optimizer"],
            scheduler=trained["scheduler"],
            rng=trained["rng"],
        )
    assert same(snapshot(trained), before)
