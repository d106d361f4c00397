"""Progress meters for the long host-side loops (`fit`, `cycle`, pretraining).

A meter is an object passed as ``progress=``, with `NoProgress()` as the null
default (as diffrax's ``progress_meter=NoProgressMeter()``), never a boolean. The
loops run on the host between compiled steps, so a meter is plain Python: it is
opened with the number of steps, told of each step, and closed.
"""

import abc
import sys
import time
from typing import Any

import equinox as eqx

from ._kinds import check_kind


class AbstractProgressBar:
    """An open meter: `update` after each step, `close` at the end."""

    @abc.abstractmethod
    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by `n` steps; `postfix` holds named values to show."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish the meter."""


class AbstractProgress(eqx.Module):
    """How a long loop reports its progress (`NoProgress`, `TqdmProgress`)."""

    @abc.abstractmethod
    def open(self, *, total: int, initial: int = 0, desc: str) -> AbstractProgressBar:
        """A meter for `total` steps, `initial` of them already done."""

    @property
    def preferred_updates(self) -> int:
        """How many updates this meter would like from a loop that may split its
        work at will (`cycle` runs its windows in that many compiled chunks when
        not told a `chunk`): 20 by default, 1 for `NoProgress` (nothing to show,
        so no reason to split)."""
        return 20


class _Silent(AbstractProgressBar):
    def update(self, n: int = 1, **postfix: Any) -> None:
        del n, postfix

    def close(self) -> None:
        pass


class NoProgress(AbstractProgress):
    """Report nothing (the default)."""

    def open(self, *, total: int, initial: int = 0, desc: str) -> AbstractProgressBar:
        del total, initial, desc
        return _Silent()

    @property
    def preferred_updates(self) -> int:
        return 1


class _Tqdm(AbstractProgressBar):
    def __init__(self, bar):
        self.bar = bar

    def update(self, n: int = 1, **postfix: Any) -> None:
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _Lines(AbstractProgressBar):
    """One plain line every `every` seconds and at the end: for logs, where a
    carriage-return bar would write a line per refresh."""

    def __init__(self, total: int, initial: int, desc: str, every: float, stream):
        self.total, self.done, self.desc = total, initial, desc
        self.every, self.stream = every, stream
        self.start = self.last = time.perf_counter()
        self.postfix: dict[str, Any] = {}

    def _write(self) -> None:
        values = "".join(f", {k}={v}" for k, v in self.postfix.items())
        elapsed = time.perf_counter() - self.start
        self.stream.write(
            f"{self.desc}: {self.done}/{self.total} ({elapsed:.1f} s{values})\n"
        )
        self.stream.flush()

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.done += n
        self.postfix.update(postfix)
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._write()

    def close(self) -> None:
        self._write()


class TqdmProgress(AbstractProgress):
    """A tqdm bar on a terminal; in a log (standard error not a terminal), one
    plain line every `log_every` seconds instead of carriage-return refreshes.

    - `log_every`: seconds between lines when not on a terminal (default 30).
    """

    log_every: float = 30.0

    def __check_init__(self):
        if not self.log_every > 0:
            raise ValueError(
                f"TqdmProgress(log_every=...) must be > 0, got {self.log_every!r}."
            )

    def open(self, *, total: int, initial: int = 0, desc: str) -> AbstractProgressBar:
        stream = sys.stderr
        if not stream.isatty():
            return _Lines(total, initial, desc, self.log_every, stream)
        from tqdm.auto import tqdm

        return _Tqdm(tqdm(total=total, initial=initial, desc=desc, file=stream))


def check_progress(owner: str, progress: object) -> None:
    """Raise `TypeError` unless `progress` is a progress meter object."""
    check_kind(
        owner,
        "progress",
        progress,
        AbstractProgress,
        "a progress meter such as TqdmProgress() or NoProgress()",
    )
