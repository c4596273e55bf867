"""The CLI's operation progress bar: the line it draws, and when it draws none."""

from __future__ import annotations

import io
from typing import Any

from cove.cli._progress import Bar, line, wait
from cove.cli.context import Context
from cove.model.errors import Timeout


def test_line_from_lxd_progress() -> None:
    got = line({"stage": "Copying", "percent": "50", "text": "5 of 10 bytes"})
    assert got == "Copying [############------------]  50% 5 of 10 bytes"
    assert line({"stage": "Copying", "percent": "250"}).endswith("100%")
    assert line({"stage": "Unpacking", "text": "3 layers"}) == "Unpacking: 3 layers"
    assert line({"stage": "Stopping instance"}) == "Stopping instance"
    assert line(None) == "" and line("50%") == ""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Op:
    """Running for two polls, with progress, then done."""

    def __init__(self) -> None:
        self.polls = 0
        self.done = False
        self.metadata: dict[str, Any] = {}

    def wait(self, timeout: float | None = None) -> _Op:
        if timeout is None or self.polls >= 2:
            self.done = True
            return self
        raise Timeout("still running")

    def refresh(self) -> _Op:
        self.polls += 1
        self.metadata = {"progress": {"stage": "Copying", "percent": str(40 * self.polls)}}
        return self


def test_wait_draws_on_a_terminal_and_clears() -> None:
    err = _Tty()
    ctx = Context("/nonexistent", err=err, out=io.StringIO())
    op = _Op()
    assert wait(ctx, op) is op  # type: ignore[arg-type]
    drawn = err.getvalue()
    assert "Copying [" in drawn and " 40%" in drawn and " 80%" in drawn
    assert drawn.endswith("\r\x1b[K")


def test_wait_draws_nothing_off_a_terminal_or_quiet() -> None:
    for err, quiet in ((io.StringIO(), False), (_Tty(), True)):
        ctx = Context("/nonexistent", err=err, out=io.StringIO(), quiet=quiet)
        op = _Op()
        wait(ctx, op)  # type: ignore[arg-type]
        assert op.done and err.getvalue() == "" and op.polls == 0


def test_bar_redraws_only_on_change() -> None:
    out = io.StringIO()
    bar = Bar(out)
    bar.show("a")
    bar.show("a")
    bar.clear()
    bar.clear()
    assert out.getvalue() == "\r\x1b[Ka\r\x1b[K"
