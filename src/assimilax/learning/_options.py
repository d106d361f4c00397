"""The modes of `fit` as objects with null defaults: how a batch's windows are
solved (`Vectorised`, `Sequential`), where inner solves start (`WarmStart`,
`ColdStart`, `StrategyDefault`) and whether checkpoints are written
(`Checkpoints`, `NoCheckpoints`). Progress meters live in `assimilax._progress`.
"""

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
from jax.sharding import Mesh

from .._kinds import check_kind
from ..bilevel import AbstractHypergradient


_BATCHINGS = "Vectorised() or Sequential()"
_STARTS = "WarmStart(), ColdStart() or StrategyDefault()"
_SAVES = "Checkpoints(directory, every=...) or NoCheckpoints()"


class AbstractBatching(eqx.Module):
    """How the windows of a batch are solved: `Vectorised()` or `Sequential()`."""

    @abc.abstractmethod
    def map(self, fn: Callable, *trees: Any) -> Any:
        """``fn`` over the leading (window) axis of `trees`; outputs stacked."""

    def check_mesh(self, mesh: Mesh | None, owner: str) -> None:
        """Raise `ValueError` if this batching cannot split a batch over `mesh`."""
        del mesh, owner


class Vectorised(AbstractBatching):
    """The windows side by side in one batched program (`jax.vmap`), the default.

    Each inner (and backward) iteration runs until the batch's slowest window
    has converged: best on accelerators and when the windows take similar
    iteration counts. The only batching that splits a batch over a `mesh`.
    """

    def map(self, fn: Callable, *trees: Any) -> Any:
        return jax.vmap(fn)(*trees)


class Sequential(AbstractBatching):
    """The windows one after another (`jax.lax.map`), each with its own iteration
    count: often several times faster on CPUs when the counts vary, and for
    convolutional priors, whose batched form XLA's CPU backend runs slowly. Same
    hypergradients as `Vectorised` up to round-off; not with a `mesh`."""

    def map(self, fn: Callable, *trees: Any) -> Any:
        return jax.lax.map(lambda args: fn(*args), trees)

    def check_mesh(self, mesh: Mesh | None, owner: str) -> None:
        if mesh is not None:
            raise ValueError(
                f"{owner}(batching=Sequential()) cannot split a batch over a mesh: "
                "use batching=Vectorised() (the default) with `mesh`."
            )


def check_batching(batching: object, mesh: Mesh | None, owner: str) -> None:
    """Raise `TypeError` for a `batching` that is not an `AbstractBatching`, and
    `ValueError` for one that cannot use `mesh`."""
    check_kind(owner, "batching", batching, AbstractBatching, _BATCHINGS)
    batching.check_mesh(mesh, owner)


class AbstractWarmStart(eqx.Module):
    """Where each window's inner solve starts in `fit`: from its last solution
    (`WarmStart`), from its first guess (`ColdStart`), or as the hypergradient
    strategy prefers (`StrategyDefault`, the default)."""

    @abc.abstractmethod
    def enabled(self, hypergradient: AbstractHypergradient) -> bool:
        """Whether windows are warm-started with this strategy."""


class WarmStart(AbstractWarmStart):
    """Start each window's inner solve from its last solution, and `Implicit`'s
    backward solve from its last adjoints.

    Use it with `GradientFlowAdjoint` when the flow runs long enough to forget its
    start (steady-state use): each solve then takes far fewer adaptive steps.
    `Unrolled` and `ForwardMode` still start from the first guess (from a
    converged start they would take no step: see `value_and_hypergrad`).
    """

    def enabled(self, hypergradient: AbstractHypergradient) -> bool:
        del hypergradient
        return True


class ColdStart(AbstractWarmStart):
    """Start every inner solve from the window's first guess."""

    def enabled(self, hypergradient: AbstractHypergradient) -> bool:
        del hypergradient
        return False


class StrategyDefault(AbstractWarmStart):
    """Warm starts where the strategy's hypergradient holds at the minimiser
    wherever the solve starts (`Implicit`, `FiniteDifference`); cold starts for
    the strategies that differentiate the iterations (`Unrolled`, `Truncated`,
    `ForwardMode`, `GradientFlowAdjoint`), whose result depends on the start when
    the solve is stopped early. The strategy's `warm_start_default` says which."""

    def enabled(self, hypergradient: AbstractHypergradient) -> bool:
        return hypergradient.warm_start_default


def check_warm_start(warm_start: object) -> None:
    """Raise `TypeError` unless `warm_start` is an `AbstractWarmStart`."""
    check_kind("fit", "warm_start", warm_start, AbstractWarmStart, _STARTS)


class AbstractCheckpointing(eqx.Module):
    """Whether and where `fit` writes checkpoints: `Checkpoints` or
    `NoCheckpoints` (the default)."""

    @abc.abstractmethod
    def folder(self) -> Path | None:
        """This process's checkpoint folder, or `None` for no checkpoints."""

    def due(self, step: int, steps: int) -> bool:
        """Whether to write a checkpoint after `step` (0-based) of `steps`."""
        del step, steps
        return False

    def resumes(self) -> bool:
        """Whether to continue from the newest checkpoint in `folder`."""
        return False


class NoCheckpoints(AbstractCheckpointing):
    """Write no checkpoints (the default)."""

    def folder(self) -> Path | None:
        return None


class Checkpoints(AbstractCheckpointing):
    """Checkpoints (parameters, optimiser state, warm starts, history) in
    `directory`, every `every` steps and at the end.

    - `directory`: the folder (created when needed); in a multi-process run each
      process writes to ``directory/process_I``.
    - `every`: steps between checkpoints (>= 1, default 10).
    - `resume`: continue from the newest checkpoint there (or start fresh when
      there is none), drawing the same batches as an uninterrupted run.

    Each checkpoint is a folder ``step_XXXXXXXX`` (``step_XXXXXXXX.N`` for a step
    saved again), written under a temporary name and renamed when complete; the
    file ``LATEST`` names the newest and is replaced atomically. A run killed at
    any moment (SIGKILL, power loss) leaves ``LATEST`` naming a complete one.
    """

    directory: str | Path = eqx.field(static=True)
    every: int = eqx.field(static=True, default=10)
    resume: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.directory, (str, Path)) or not str(self.directory):
            raise TypeError(
                f"Checkpoints(directory=...) must be a path, got {self.directory!r}."
            )
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(
                f"Checkpoints(every=...) must be an int >= 1, got {self.every!r}."
            )

    def folder(self) -> Path | None:
        folder = Path(self.directory)
        if jax.process_count() > 1:
            folder = folder / f"process_{jax.process_index()}"
        return folder

    def due(self, step: int, steps: int) -> bool:
        return (step + 1) % self.every == 0 or step + 1 == steps

    def resumes(self) -> bool:
        return self.resume


def check_checkpoints(checkpoints: object) -> None:
    """Raise `TypeError` unless `checkpoints` is an `AbstractCheckpointing`."""
    check_kind("fit", "checkpoints", checkpoints, AbstractCheckpointing, _SAVES)
