"""When a ``snapshots.schedule`` is due (pure).

A schedule is what ``cove.model.config.parse_schedule`` accepts: cron
expressions of five fields (minute, hour, day of month, month, day of week;
``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S`` and comma lists) or aliases. As
LXD does (``snapshot_schedule_aliases``), ``@hourly``, ``@daily``... run at
a minute (and hour) fixed per instance from a hash of its name, so many
instances do not all snapshot at once. ``@startup`` is due when coved
starts, ``@never`` never.
"""

from __future__ import annotations

import hashlib
import time

__all__ = ["due", "expand_alias"]

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def expand_alias(expr: str, seed: str) -> str:
    """A cron expression for ``expr`` ("" for ``@startup``/``@never``)."""
    if not expr.startswith("@"):
        return expr
    h = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16)
    minute, hour = h % 60, (h // 60) % 24
    return {"@hourly": f"{minute} * * * *", "@daily": f"{minute} {hour} * * *",
            "@midnight": f"{minute} 0 * * *", "@weekly": f"{minute} {hour} * * 0",
            "@monthly": f"{minute} {hour} 1 * *", "@annually": f"{minute} {hour} 1 1 *",
            "@yearly": f"{minute} {hour} 1 1 *"}.get(expr, "")


def _field(spec: str, value: int, low: int, high: int) -> bool:
    for part in spec.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if rng == "*":
            a, b = low, high
        elif "-" in rng:
            a_s, b_s = rng.split("-", 1)
            a, b = int(a_s), int(b_s)
        else:
            a = int(rng)
            b = high if step_s else a
        if step > 0 and a <= value <= b and (value - a) % step == 0:
            return True
    return False


def _cron(expr: str, tm: time.struct_time) -> bool:
    fields = expr.split()
    if len(fields) != 5:
        return False
    minute, hour, dom, month, dow = fields
    wday = (tm.tm_wday + 1) % 7  # struct_time: Monday 0; cron: Sunday 0 (and 7)
    if not (_field(minute, tm.tm_min, 0, 59) and _field(hour, tm.tm_hour, 0, 23)
            and _field(month, tm.tm_mon, 1, 12)):
        return False
    dom_ok = _field(dom, tm.tm_mday, 1, 31)
    dow_ok = _field(dow, wday, 0, 7) or (wday == 0 and _field(dow, 7, 0, 7))
    if dom != "*" and dow != "*":
        return dom_ok or dow_ok  # cron's rule: either restricted day field
    return dom_ok and dow_ok


def due(schedule: str, tm: time.struct_time, seed: str, *, startup: bool = False) -> bool:
    """Whether ``schedule`` fires in the minute ``tm`` (local time), for the
    instance ``seed``; ``startup``: coved has just started."""
    for expr in (e.strip() for e in schedule.split(",") if e.strip()):
        if expr == "@startup":
            if startup:
                return True
            continue
        cron = expand_alias(expr, seed)
        if cron and _cron(cron, tm):
            return True
    return False
