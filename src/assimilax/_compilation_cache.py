"""JAX's persistent compilation cache: compiled programs kept on disk.

A new process (a second run of a demo or of a CLI experiment) then loads the
programs an earlier one compiled instead of compiling them again: XLA keys each
entry by the program itself (its HLO), the compile options and the JAX and
backend versions, so a stale entry is never used. This is JAX's own mechanism
(``jax_compilation_cache_dir``); this module only picks the folder and the
thresholds.
"""

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache


ENVIRONMENT_VARIABLE = "ASSIMILAX_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$ASSIMILAX_CACHE_DIR`` when set, else ``assimilax/jax`` in the user's
    cache folder (``$XDG_CACHE_HOME``, default ``~/.cache``)."""
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return Path(os.environ[ENVIRONMENT_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "assimilax" / "jax"


def use_compilation_cache(
    directory: str | os.PathLike | None = None,
    *,
    min_compile_time_s: float = 0.0,
) -> Path:
    """Keep every compiled program in `directory` and reuse it across processes.

    **Arguments:**

    - `directory`: the cache folder (created if needed); default
      `default_cache_dir()`.
    - `min_compile_time_s`: programs compiled faster than this are not stored
      (default 0: all of them; the small ones add up).

    **Returns:** the folder in use. Call it before the first computation; a
    later call switches folder (programs compiled so far stay in memory).
    """
    if min_compile_time_s < 0:
        raise ValueError(
            "use_compilation_cache(min_compile_time_s=...) must be >= 0, got "
            f"{min_compile_time_s!r}."
        )
    folder = default_cache_dir() if directory is None else Path(directory)
    folder = folder.expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"use_compilation_cache(directory=...): cannot create {folder}: {error}"
        ) from error
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_s)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder
