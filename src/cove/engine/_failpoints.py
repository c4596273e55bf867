"""Failpoints: named places between two steps of a multi-step change where
a test can make coved die at once, to prove that the next coved leaves
either the old state or the new one.

``COVE_FAILPOINTS=rename.after-row,delete.after-row`` in coved's
environment arms those names: reaching one, coved SIGKILLs itself (no
cleanup handler runs, as with a power cut or the OOM killer). Unarmed, a
failpoint is one set lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["failpoint"]

_ARMED = frozenset(p.strip() for p in os.environ.get("COVE_FAILPOINTS", "").split(",")
                   if p.strip())


def failpoint(name: str) -> None:
    """Die here if ``name`` is armed."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
