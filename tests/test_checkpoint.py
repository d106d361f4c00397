"""Checkpoints survive a crash at every file-system step of a write (issue 16).

A crash is simulated by interrupting `save_checkpoint` at its n-th file-system
step (for every n), leaving what a killed process leaves there: a file half
written, a folder half removed, a rename not done. After each crash the latest
checkpoint must be readable (the one before the write, or the new one), and the
next write must succeed and tidy up. The same with real SIGKILLs at random
moments of a `fit` run: `tests/test_fit.py`.
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.learning import _checkpoint
from assimilax.learning._checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


class Killed(BaseException):
    """The process died here (a `BaseException`: nothing in the code catches it)."""


LIKE = {"w": jnp.zeros(3), "v": jnp.zeros((2, 2))}


def arrays(version: int) -> dict:
    return {"w": jnp.full(3, float(version)), "v": jnp.full((2, 2), -float(version))}


def save(directory: Path, step: int, version: int) -> Path:
    return save_checkpoint(directory, step, arrays(version), {"version": version})


def latest_version(directory: Path) -> int | None:
    folder = latest_checkpoint(directory)
    if folder is None:
        return None
    loaded, meta = load_checkpoint(folder, LIKE)
    np.testing.assert_array_equal(loaded["w"], arrays(meta["version"])["w"])
    np.testing.assert_array_equal(loaded["v"], arrays(meta["version"])["v"])
    return meta["version"]


def crash_at(monkeypatch, at: int) -> None:
    """Make the `at`-th file-system step of the next writes die half done."""
    count = iter(range(10**6))
    write, replace, remove = (
        _checkpoint._write,
        _checkpoint._replace,
        _checkpoint._remove,
    )

    def crashing_write(path, data):
        if next(count) == at:
            Path(path).write_bytes(data[: len(data) // 2])
            raise Killed
        write(path, data)

    def crashing_replace(source, target):
        if next(count) == at:
            raise Killed  # a rename is atomic: before it (after it: the next step)
        replace(source, target)

    def crashing_remove(path):
        if next(count) == at:
            files = sorted(p for p in Path(path).rglob("*") if p.is_file())
            if files:
                files[0].unlink()
            raise Killed
        remove(path)

    monkeypatch.setattr(_checkpoint, "_write", crashing_write)
    monkeypatch.setattr(_checkpoint, "_replace", crashing_replace)
    monkeypatch.setattr(_checkpoint, "_remove", crashing_remove)


# Steps saved in turn: 3 again (a resumed run redoing a step whose folder was
# written but not yet named by LATEST; or, with `every > 1`, the step LATEST
# names, as after a stop on a non-finite loss), then an older step after newer
# ones, then on.
STEPS = [1, 2, 3, 3, 2, 4]


@pytest.mark.parametrize("index", range(len(STEPS)))
def test_a_crash_at_every_step_of_a_write_leaves_a_readable_latest(
    tmp_path, monkeypatch, index
):
    crashes = 0
    for at in range(100):
        directory = tmp_path / f"crash_{at}"
        for version, step in enumerate(STEPS[:index]):
            save(directory, step, version)
        before = latest_version(directory)
        with monkeypatch.context() as patch:
            crash_at(patch, at)
            try:
                save(directory, STEPS[index], index)
            except Killed:
                crashes += 1
            else:
                break  # `at` is past the last step: the write completed
        # The newest complete checkpoint: the one before, or already the new one.
        assert latest_version(directory) in (before, index), at
        # A restarted run writes it again; that tidies up what the crash left.
        save(directory, STEPS[index], index)
        assert latest_version(directory) == index
        names = sorted(p.name for p in directory.iterdir())
        assert not [n for n in names if n.startswith(".partial_")], names
        assert len([n for n in names if n.startswith("step_")]) <= 2, names
    else:
        raise AssertionError("the write never completed")
    # Every step of the write was interrupted once (5 writes and renames, then
    # the removals of the pruned folders).
    assert crashes >= 5, crashes
    assert latest_version(directory) == index


def test_keep_and_names(tmp_path):
    for version, step in enumerate([1, 2, 3]):
        folder = save(tmp_path, step, version)
    assert folder.name == "step_00000003"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "LATEST",
        "step_00000002",
        "step_00000003",
    ]
    # The step LATEST names, saved again: a fresh folder, the old one kept until
    # LATEST has moved (then it is the fallback).
    again = save(tmp_path, 3, 3)
    assert again.name == "step_00000003.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "LATEST",
        "step_00000003",
        "step_00000003.1",
    ]
    assert latest_version(tmp_path) == 3
    save_checkpoint(tmp_path, 4, arrays(4), {"version": 4}, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step_00000004"]
    with pytest.raises(ValueError, match="save_checkpoint\\(keep=...\\) must be >= 1"):
        save_checkpoint(tmp_path, 5, arrays(5), {}, keep=0)


def test_latest_naming_an_incomplete_folder_is_an_error(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    folder = save(tmp_path, 1, 1)
    (folder / _checkpoint.ARRAYS).unlink()
    with pytest.raises(
        ValueError, match="LATEST names 'step_00000001', but .* is missing or"
    ):
        latest_checkpoint(tmp_path)
