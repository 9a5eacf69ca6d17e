"""Saves write a temporary file and rename it: names of any length, leftovers of killed saves
removed by the next save, errors that name the target. (test_serialization.py covers the
atomicity itself: a failed save leaves the target as it was.)"""

from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnkit
from nnkit import serialization as ser
from nnkit.serialization import archive

SAVES: list[tuple[str, Callable[[nnkit.Module, Path], None]]] = [
    ("save", ser.save),
    ("save_weights", ser.save_weights),
    ("save_checkpoint", lambda model, path: ser.save_checkpoint(path, model=model)),
]
if importlib.util.find_spec("safetensors") is not None:  # the optional extra "safetensors"
    SAVES.append(("save_safetensors", ser.save_safetensors))
POSIX = pytest.mark.skipif(os.name != "posix", reason="flock and SIGKILL are POSIX")


def model() -> nnkit.Module:
    return nnkit.Sequential(nnkit.Dense(3, 2, rng=np.random.default_rng(0)))


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("length", [238, 250, 255])
@pytest.mark.parametrize("save", [s for _, s in SAVES], ids=[n for n, _ in SAVES])
def test_a_name_of_up_to_255_bytes_can_be_saved(
    save: Callable[[nnkit.Module, Path], None], length: int, tmp_path: Path
) -> None:
    """The temporary name is 28 bytes whatever the target's (it added 18 to the target's)."""
    path = tmp_path / ("m" * (length - 4) + ".npz")
    save(model(), path)
    assert path.exists() and temporaries(tmp_path) == []
    assert len(archive.temp_prefix(path) + "0" * 8 + ".tmp") == 28


KILLED_SAVE = """
import os, signal, sys
import numpy as np
import nnkit

real = np.lib.format.write_array

def write_array(fp, array, **kwargs):
    real(fp, array, **kwargs)
    fp.write(b"x" * 100_000)  # a big partial file
    os.kill(os.getpid(), signal.SIGKILL)

np.lib.format.write_array = write_array
nnkit.save(nnkit.Sequential(nnkit.Dense(3, 2)), sys.argv[1])
"""


@POSIX
def test_the_leftover_of_a_killed_save_is_removed_by_the_next_save(
    tmp_path: Path, nnkit_env: dict[str, str]
) -> None:
    path = tmp_path / "model.npz"
    ser.save(model(), path)
    before = path.read_bytes()
    run = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(path)], env=nnkit_env, timeout=60, check=False
    )
    assert run.returncode == -9
    [leftover] = temporaries(tmp_path)
    assert leftover.startswith(archive.temp_prefix(path))
    assert (tmp_path / leftover).stat().st_size > 100_000
    assert path.read_bytes() == before  # the target is intact, as promised
    ser.save_weights(model(), tmp_path / "other.npz")  # another target's save leaves it
    assert temporaries(tmp_path) == [leftover]
    ser.save(model(), path)
    assert temporaries(tmp_path) == []


@POSIX
def test_a_save_in_progress_keeps_its_temporary_file(tmp_path: Path) -> None:
    """Two processes saving to one path: the second removes only what no save holds."""
    import fcntl

    path = tmp_path / "model.npz"
    busy = tmp_path / (archive.temp_prefix(path) + "0badcafe.tmp")
    stale = tmp_path / (archive.temp_prefix(path) + "deadbeef.tmp")
    busy.write_bytes(b"being written")
    stale.write_bytes(b"left by a killed save")
    with open(busy, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as the other save holds its file
        ser.save(model(), path)
        assert temporaries(tmp_path) == [busy.name]
    ser.save(model(), path)
    assert temporaries(tmp_path) == []


def _refuse_creating(error: int) -> Callable[..., Any]:
    real = os.open

    def fake_open(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(error, os.strerror(error), name)
        return real(name, flags, *args, **kwargs)

    return fake_open


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (errno.EACCES, PermissionError, "make the folder writable"),
        (errno.EROFS, OSError, "save elsewhere"),
        (errno.ENOSPC, OSError, "No space left"),
    ],
    ids=["read-only-folder", "read-only-filesystem", "disk-full"],
)
@pytest.mark.parametrize("save", [s for _, s in SAVES], ids=[n for n, _ in SAVES])
def test_a_folder_that_takes_no_file_names_the_target(
    save: Callable[[nnkit.Module, Path], None],
    error: int,
    kind: type[OSError],
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "model.npz"
    monkeypatch.setattr(os, "open", _refuse_creating(error))
    with pytest.raises(kind) as info:
        save(model(), path)
    message = str(info.value)
    assert info.value.errno == error and message.startswith(f"[Errno {error}] cannot save {path}: ")
    assert words in message and ".tmp" not in message and info.value.filename is None


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_names_the_target(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match=r"cannot save .*model\.npz: .*writable") as info:
            ser.save(model(), folder / "model.npz")
        assert ".tmp" not in str(info.value)
    finally:
        folder.chmod(0o700)


def test_a_folder_at_the_target_names_the_target(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.mkdir()
    (path / "inside").write_text("")
    with pytest.raises(OSError, match=rf"cannot save {path}: ") as info:
        ser.save(model(), path)
    assert ".tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
