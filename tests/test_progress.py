"""Progress meters in logs: no carriage-return refreshes when standard error is
not a terminal, one plain line per `log_every` seconds and one at the end."""

import io
import sys

import pytest

import assimilax._progress as progress_module
from assimilax import NoProgress, TqdmProgress


class _Clock:
    """A `time.perf_counter` that the test advances by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_tqdm_progress_writes_plain_lines_to_a_log(monkeypatch):
    log, clock = io.StringIO(), _Clock()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    bar = TqdmProgress(log_every=10.0).open(total=100, desc="fit")
    for _ in range(100):  # 100 steps of 1 s each: lines at 10, 20, ..., 100 s
        clock.now += 1.0
        bar.update(1, loss="0.5")
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no refreshes, no ANSI codes
    lines = text.splitlines()
    assert len(lines) == 11  # ten periodic lines and the closing one
    assert lines[0] == "fit: 10/100 (10.0 s, loss=0.5)"
    assert lines[-1] == "fit: 100/100 (100.0 s, loss=0.5)"


def test_tqdm_progress_resumed_and_quick_runs_write_one_line(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = TqdmProgress().open(total=50, initial=40, desc="cycle")
    for _ in range(10):  # well within the default 30 s
        bar.update(1)
    bar.close()
    (line,) = log.getvalue().splitlines()
    assert line.startswith("cycle: 50/50 (")


def test_tqdm_progress_is_a_bar_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = TqdmProgress().open(total=3, desc="fit")
    for _ in range(3):
        bar.update(1, loss="0.1")
    bar.close()
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_no_progress_writes_nothing(capsys):
    bar = NoProgress().open(total=5, desc="fit")
    bar.update(5)
    bar.close()
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match=r"log_every=\.\.\.\) must be > 0"):
        TqdmProgress(log_every=0.0)
