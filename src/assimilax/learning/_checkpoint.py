"""Checkpoints of an outer loop: arrays by Equinox serialisation, the rest as JSON.

A checkpoint is a folder ``step_XXXXXXXX`` under the checkpoint directory with
``arrays.eqx`` (every array: parameters, optimiser state, warm starts) and
``meta.json`` (step, history, settings); a step saved a second time (after a
resume, or a stop on a non-finite loss) gets a fresh name ``step_XXXXXXXX.N``.
The file ``LATEST`` names the newest checkpoint.

A run killed at any instruction (SIGKILL, power loss) leaves ``LATEST`` naming a
complete checkpoint:

1. a checkpoint is written into a fresh hidden folder (``.partial_*``), its files
   flushed to disk, and only then renamed to a name not in use: a ``step_*``
   folder is complete from the moment it exists;
2. ``LATEST`` is written to a temporary file and renamed over the old one (an
   atomic replacement) once the new folder is in place;
3. no folder is modified or deleted while ``LATEST`` may name it: a step saved
   again is not overwritten, and old folders (and partial ones left by a killed
   write) are pruned only after ``LATEST`` has moved, never the one it names now
   nor the one it named before.
"""

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
from jaxtyping import PyTree


LATEST = "LATEST"
ARRAYS = "arrays.eqx"
META = "meta.json"
PARTIAL = ".partial_"


def save_checkpoint(
    directory: Path, step: int, arrays: PyTree, meta: dict[str, Any], keep: int = 2
) -> Path:
    """Write checkpoint `step` and point ``LATEST`` at it; keep the newest `keep`
    (the new one and, with ``keep >= 2``, the one ``LATEST`` named before)."""
    if keep < 1:
        raise ValueError(f"save_checkpoint(keep=...) must be >= 1, got {keep}.")
    directory.mkdir(parents=True, exist_ok=True)
    previous = _pointed(directory)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, arrays)
    partial = Path(tempfile.mkdtemp(prefix=PARTIAL, dir=directory))
    _write(partial / ARRAYS, buffer.getvalue())
    _write(partial / META, json.dumps(meta).encode())
    _sync(partial)
    folder = _unused(directory, f"step_{step:08d}")
    _replace(partial, folder)
    _sync(directory)
    pointer = directory / f".{LATEST}.tmp"
    _write(pointer, folder.name.encode())
    _replace(pointer, directory / LATEST)
    _sync(directory)
    _prune(directory, keep, folder.name, previous)
    return folder


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint folder, or `None` when ``LATEST`` does not exist.

    **Raises:** `ValueError` when ``LATEST`` names a folder that is missing or
    incomplete (the folder was deleted or changed by hand): resuming from an older
    one, or from scratch, would silently repeat work.
    """
    name = _pointed(directory)
    if name is None:
        return None
    folder = directory / name
    if not ((folder / META).is_file() and (folder / ARRAYS).is_file()):
        raise ValueError(
            f"fit(checkpoints=...): {directory / LATEST} names {name!r}, but "
            f"{folder} is missing or incomplete. Point LATEST at a complete "
            f"`step_*` folder there, or delete LATEST to start afresh."
        )
    return folder


def load_checkpoint(folder: Path, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """The arrays (with the structure of `like`) and the metadata of `folder`."""
    meta = json.loads((folder / META).read_text())
    try:
        arrays = eqx.tree_deserialise_leaves(folder / ARRAYS, like)
    except Exception as error:  # a wrong structure surfaces as various errors
        raise ValueError(
            f"fit(checkpoints=...): the checkpoint {folder} does not match this run's "
            f"parameters, optimiser or data ({type(error).__name__}: {error})."
        ) from error
    return arrays, meta


def _pointed(directory: Path) -> str | None:
    """The folder name in ``LATEST`` (`None` when there is no ``LATEST``)."""
    try:
        return (directory / LATEST).read_text().strip()
    except FileNotFoundError:
        return None


def _unused(directory: Path, name: str) -> Path:
    """`directory / name`, or ``name.N`` with the smallest free ``N``."""
    folder, n = directory / name, 0
    while folder.exists():
        n += 1
        folder = directory / f"{name}.{n}"
    return folder


def _prune(directory: Path, keep: int, newest: str, previous: str | None) -> None:
    """Delete partial folders and all ``step_*`` but `newest` and the `keep - 1`
    most recent others (`previous`, the one ``LATEST`` named before, first)."""
    for stale in directory.glob(f"{PARTIAL}*"):
        _remove(stale)
    others = [p for p in directory.glob("step_*") if p.name != newest]
    others.sort(key=lambda p: (p.name == previous, _written(p)), reverse=True)
    for old in others[keep - 1 :]:
        _remove(old)


def _written(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except FileNotFoundError:
        return -1


# The file-system steps, one function each (the crash tests stretch or interrupt
# them one by one).


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` and flush it to disk (a rename after it is then safe
    against power loss too, not only against a killed process)."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _replace(source: Path, target: Path) -> None:
    os.replace(source, target)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _sync(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk, where supported."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
