"""The ``cove.*`` keys of an instance in an app stack: what it depends on,
when it counts as ready, how coved checks its health, when it restarts.

Pure parsing, shared by the config validator (a bad value is refused when
the key is set, never found at start), the engine that enforces them and
the Compose loader that writes them. The syntax:

- ``cove.depends``: ``NAME[:COND][:restart], ...`` where COND is
  ``started`` (running), ``ready`` (its ``cove.ready`` probe passed; the
  default), ``healthy`` (its ``cove.health`` probe passed) or
  ``completed`` (ran to exit 0); ``restart`` asks to be restarted after
  the dependency is restarted and ready again (Compose's ``restart: true``).
- ``cove.ready`` / ``cove.health``: a probe. ``tcp:PORT`` (a TCP connect
  to the instance's address), ``http:PORT[/PATH]`` (an HTTP GET answered
  2xx or 3xx), or else a command run inside the container (shell words;
  exit 0 passes).
- durations (``cove.ready.timeout``, ``cove.health.interval`` ...): Go's
  and Compose's ``1m30s``, ``500ms``, ``2h``, or a bare number of seconds.
- ``cove.restart``: ``no``, ``on-failure[:MAX]``, ``unless-stopped``,
  ``always`` (Docker's and Compose's names); ``cove.restart.max_per_minute``
  caps restarts by policy in any minute (default 10, as Incus).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from cove.model.errors import BadRequest
from cove.model.names import validate_instance_name

__all__ = [
    "APP_VALIDATORS",
    "CONDITIONS",
    "Dependency",
    "Probe",
    "RestartPolicy",
    "parse_depends",
    "parse_duration",
    "parse_probe",
    "parse_restart",
]

CONDITIONS = ("started", "ready", "healthy", "completed")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def parse_duration(value: str, key: str = "duration") -> float:
    """Seconds in ``value`` (``1m30s``, ``500ms``, ``10``); never negative.

    Raises: BadRequest naming ``key``.
    """
    v = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", v):
        return float(v)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(v):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(v):
        raise BadRequest(f"Invalid {key} {value!r}: a duration like 30s, 1m30s, 500ms "
                         "or a number of seconds")
    return total


@dataclass(frozen=True)
class Probe:
    """A readiness or health check: ``kind`` is ``tcp``, ``http`` or ``exec``."""

    kind: str
    port: int = 0
    path: str = "/"
    argv: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"tcp:{self.port}"
        if self.kind == "http":
            return f"http:{self.port}{self.path}"
        return shlex.join(self.argv)


def _port(text: str, key: str, value: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise BadRequest(f"Invalid {key} {value!r}: the port must be a number from 1 to 65535")
    return int(text)


def parse_probe(value: str, key: str = "cove.ready") -> Probe:
    """The probe in ``value``.

    Raises: BadRequest naming ``key``.
    """
    v = value.strip()
    if v.startswith("tcp:"):
        return Probe("tcp", port=_port(v[4:], key, value))
    if v.startswith("http:"):
        rest = v[5:]
        port, slash, path = rest.partition("/")
        return Probe("http", port=_port(port, key, value), path="/" + path if slash else "/")
    try:
        argv = tuple(shlex.split(v))
    except ValueError as e:
        raise BadRequest(f"Invalid {key} {value!r}: {e}") from None
    if not argv:
        raise BadRequest(f"Invalid {key}: empty command")
    return Probe("exec", argv=argv)


@dataclass(frozen=True)
class Dependency:
    """One entry of ``cove.depends``."""

    name: str
    condition: str = "ready"
    restart: bool = False

    def __str__(self) -> str:
        return self.name + ("" if self.condition == "ready" else ":" + self.condition) \
            + (":restart" if self.restart else "")


def parse_depends(value: str, key: str = "cove.depends") -> list[Dependency]:
    """The dependencies in ``value`` (empty for an empty value), in order.

    Raises: BadRequest naming the entry (bad name, unknown condition, a
    name given twice).
    """
    out: list[Dependency] = []
    seen: set[str] = set()
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, *flags = entry.split(":")
        try:
            validate_instance_name(name)
        except BadRequest as e:
            raise BadRequest(f"Invalid {key} entry {entry!r}: {e}") from None
        conditions = [f for f in flags if f != "restart"]
        bad = [f for f in conditions if f not in CONDITIONS]
        if bad or len(conditions) > 1 or len(flags) - len(conditions) > 1:
            raise BadRequest(f"Invalid {key} entry {entry!r}: after the name, at most one of "
                             f"{', '.join(CONDITIONS)} and at most one restart")
        condition = conditions[0] if conditions else "ready"
        restart = "restart" in flags
        if name in seen:
            raise BadRequest(f"Invalid {key}: {name!r} is named twice")
        seen.add(name)
        out.append(Dependency(name, condition, restart))
    return out


@dataclass(frozen=True)
class RestartPolicy:
    """``cove.restart``: ``mode`` is ``no``, ``on-failure``, ``unless-stopped``
    or ``always``; ``max_retries`` 0 means no cap (``on-failure:N``)."""

    mode: str = "no"
    max_retries: int = 0


_RESTART_MODES = ("no", "on-failure", "unless-stopped", "always")


def parse_restart(value: str, key: str = "cove.restart") -> RestartPolicy:
    """Raises: BadRequest naming ``key``."""
    mode, colon, count = value.strip().partition(":")
    if mode not in _RESTART_MODES or (colon and (mode != "on-failure" or not count.isdigit())):
        raise BadRequest(f"Invalid {key} {value!r}: one of no, on-failure[:MAX], "
                         "unless-stopped, always")
    return RestartPolicy(mode, int(count) if count else 0)


def _count(key: str) -> Callable[[str], object]:
    def parse(value: str) -> int:
        if not value.strip().isdigit():
            raise BadRequest(f"Invalid {key} {value!r}: a whole number")
        return int(value)
    return parse


def _duration(key: str) -> Callable[[str], object]:
    return lambda value: parse_duration(value, key)


def _probe(key: str) -> Callable[[str], object]:
    return lambda value: parse_probe(value, key)


# Registered into the config validator (``cove.model.config``).
APP_VALIDATORS: dict[str, Callable[[str], object]] = {
    "cove.depends": parse_depends,
    "cove.ready": _probe("cove.ready"),
    "cove.ready.timeout": _duration("cove.ready.timeout"),
    "cove.health": _probe("cove.health"),
    "cove.health.interval": _duration("cove.health.interval"),
    "cove.health.timeout": _duration("cove.health.timeout"),
    "cove.health.retries": _count("cove.health.retries"),
    "cove.health.start_period": _duration("cove.health.start_period"),
    "cove.health.start_interval": _duration("cove.health.start_interval"),
    "cove.restart": parse_restart,
    # a cap on restarts by policy in any 60 s (Incus' boot.autorestart: 10)
    "cove.restart.max_per_minute": _count("cove.restart.max_per_minute"),
}
