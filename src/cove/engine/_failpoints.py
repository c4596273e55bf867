"""Failpoints: named places between two steps of a multi-step change where
a test can make coved die at once, to prove that the next coved leaves
either the old state or the new one.

``COVE_FAILPOINTS=rename.after-row,delete.after-row`` in coved's
environment arms those names: reaching one, coved SIGKILLs itself (no
cleanup handler runs, as with a power cut or the OOM killer). Unarmed, a
failpoint is one dict lookup.

``NAME=sleep:SECONDS`` makes the point a pause instead, to hold a long
action open while a test looks at it (its progress, a second caller).
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["failpoint"]



def _parse(spec: str) -> dict[str, float | None]:
    """``a,b=sleep:2`` → ``{"a": None, "b": 2.0}`` (None: kill); bad sleeps are kills."""
    armed: dict[str, float | None] = {}
    for part in spec.split(","):
        name, _, action = part.strip().partition("=")
        if not name:
            continue
        secs: float | None = None
        if action.startswith("sleep:"):
            try:
                secs = float(action[6:])
            except ValueError:
                secs = None
        armed[name] = secs
    return armed


_ARMED = _parse(os.environ.get("COVE_FAILPOINTS", ""))


def failpoint(name: str) -> None:
    """Die (or pause) here if ``name`` is armed."""
    if name in _ARMED:
        secs = _ARMED[name]
        if secs is not None:
            time.sleep(secs)
            return
        os.kill(os.getpid(), signal.SIGKILL)
