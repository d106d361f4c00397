"""Checkpoints of an outer loop: arrays by Equinox serialisation, the rest as JSON.

A checkpoint is a folder ``step_XXXXXXXX`` under the checkpoint directory with
``arrays.eqx`` (every array: parameters, optimiser state, warm starts) and
``meta.json`` (step, history, settings). The file ``LATEST`` names the newest
complete one and is replaced atomically after the folder is written, so a run
killed at any moment leaves the previous checkpoint readable.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import equinox as eqx
from jaxtyping import PyTree


LATEST = "LATEST"
ARRAYS = "arrays.eqx"
META = "meta.json"


def save_checkpoint(
    directory: Path, step: int, arrays: PyTree, meta: dict[str, Any], keep: int = 2
) -> Path:
    """Write checkpoint `step` and point ``LATEST`` at it; keep the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    folder = directory / f"step_{step:08d}"
    partial = directory / f".partial_{step:08d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    eqx.tree_serialise_leaves(partial / ARRAYS, arrays)
    (partial / META).write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    pointer = directory / f".{LATEST}.tmp"
    pointer.write_text(folder.name)
    os.replace(pointer, directory / LATEST)
    older = sorted(p for p in directory.glob("step_*") if p.name < folder.name)
    for old in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint folder, or `None` when there is none."""
    pointer = directory / LATEST
    if not pointer.exists():
        return None
    folder = directory / pointer.read_text().strip()
    return folder if (folder / META).exists() else None


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
