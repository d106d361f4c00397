"""Time spent compiling, from JAX's own log: tracing, lowering, XLA compilation.

With ``jax_log_compiles`` on, JAX logs ``Finished tracing F for jit in T
sec``, ``Finished jaxpr to MLIR module conversion F in T sec`` and ``Finished
XLA compilation of F in T sec`` (the last one also covers loading a program from
the persistent compilation cache). `CompileLog` sums those durations while a
block runs; the rest of the block's wall time is running.

Run as a script, it times one assimilax CLI command in this process and prints
one JSON line: ``python benchmarks/_compile_log.py demo heat --quick ...``.
"""

import contextlib
import json
import logging
import re
import sys
import time
from collections import Counter

import jax


_FINISHED = re.compile(
    r"Finished (tracing|jaxpr to MLIR module conversion|XLA compilation) .* in "
    r"([0-9.eE+-]+) sec"
)
_STAGES = {
    "tracing": "trace_s",
    "jaxpr to MLIR module conversion": "lower_s",
    "XLA compilation": "compile_s",
}


class _Handler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.seconds: Counter = Counter()
        self.counts: Counter = Counter()
        self.cache_hits = 0

    def emit(self, record):
        message = record.getMessage()
        if "Persistent compilation cache hit" in message:
            self.cache_hits += 1
            return
        match = _FINISHED.match(message)
        if match and match.group(1) in _STAGES:
            stage = _STAGES[match.group(1)]
            self.seconds[stage] += float(match.group(2))
            self.counts[stage] += 1


class CompileLog:
    """``with CompileLog() as log: ...``, then `summary()`: wall, trace, lower,
    XLA compile (or cache load) seconds, their total and share of the wall
    time, programs compiled and persistent-cache hits."""

    def __init__(self):
        self._handler = _Handler()
        self._stack = contextlib.ExitStack()
        self.wall_s = 0.0

    def __enter__(self):
        logger = logging.getLogger("jax")
        self._previous_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self._handler)
        # Keep JAX's own handler quiet: the messages are collected, not printed.
        self._propagate = logger.propagate
        logger.propagate = False
        self._stack.enter_context(jax.log_compiles(True))
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self._start
        self._stack.close()
        logger = logging.getLogger("jax")
        logger.removeHandler(self._handler)
        logger.setLevel(self._previous_level)
        logger.propagate = self._propagate
        return False

    def summary(self) -> dict[str, float]:
        seconds = self._handler.seconds
        total = sum(seconds[s] for s in _STAGES.values())
        return {
            "wall_s": self.wall_s,
            **{stage: seconds[stage] for stage in _STAGES.values()},
            "compiling_s": total,
            "running_s": max(self.wall_s - total, 0.0),
            "compile_share": total / self.wall_s if self.wall_s else float("nan"),
            "programs": self._handler.counts["compile_s"],
            "cache_hits": self._handler.cache_hits,
        }


def main(argv: list[str]) -> int:
    from assimilax.cli import main as cli

    with CompileLog() as log:
        status = cli(argv)
    print("COMPILE-LOG " + json.dumps({"status": status, **log.summary()}))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
