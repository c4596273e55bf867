"""A progress bar for a long operation, drawn from what coved reports.

coved (like LXD) puts an operation's progress in its metadata:
``{"progress": {"stage": "Copying the upper layer", "percent": "42",
"text": "44040192 of 104857600 bytes"}}``. ``wait`` polls the operation
about once a second (``/wait?timeout=1``: it answers at once when the
operation ends, so a short one is not slowed) and redraws one line on
stderr; with ``--quiet``, or stderr not a terminal, it only waits.
LXD's ``/wait`` takes whole seconds, so the same loop works against it.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from cove.cli.context import Context
    from cove.client import Operation

__all__ = ["Bar", "line", "wait"]

_WIDTH = 24


def line(progress: Any, label: str = "") -> str:
    """One progress line from ``metadata.progress`` (``""`` when there is none)."""
    if not isinstance(progress, dict):
        return ""
    stage = str(progress.get("stage") or label)
    text = str(progress.get("text") or "")
    try:
        pct = max(0, min(100, int(str(progress.get("percent")))))
    except ValueError:
        return f"{stage}: {text}" if text else stage
    filled = pct * _WIDTH // 100
    bar = "[" + "#" * filled + "-" * (_WIDTH - filled) + "]"
    return f"{stage} {bar} {pct:3d}%" + (f" {text}" if text else "")


class Bar:
    """One line redrawn in place; ``clear()`` leaves the terminal as it was."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = ""

    def show(self, text: str) -> None:
        if text and text != self.shown:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.shown = text

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = ""


def wait(ctx: Context, op: Operation, label: str = "") -> Operation:
    """Wait for ``op`` to end, drawing its progress; raise what ``op.wait`` raises."""
    if ctx.quiet or not ctx.err.isatty() or op.done:
        return op.wait()
    from cove.model.errors import Timeout

    bar = Bar(ctx.err)
    started = time.monotonic()
    try:
        while True:
            try:
                return op.wait(1)
            except Timeout:
                op.refresh()
            shown = line(op.metadata.get("progress"), label)
            if not shown and label:
                shown = f"{label} ({time.monotonic() - started:.0f}s)"
            bar.show(shown)
    finally:
        bar.clear()
