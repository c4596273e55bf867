"""Instance config keys: which exist, what values they take, what they mean.

Keys follow LXD's names where LXD has one (``limits.memory``,
``environment.*``, ``boot.autostart``); cove's own live under ``cove.*``.
``volatile.*`` and ``image.*`` are written by the server and accepted back
unchanged, as LXD does, so a client can PUT what it GOT.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cove.model.app_keys import APP_VALIDATORS
from cove.model.errors import BadRequest

__all__ = [
    "Resources",
    "command_from_config",
    "cpu_set",
    "environment_from_config",
    "parse_cpu",
    "parse_cpu_priority",
    "parse_disk_priority",
    "parse_enforce",
    "parse_expiry",
    "parse_memory",
    "parse_schedule",
    "parse_signal",
    "parse_size",
    "resources_from_config",
    "truthy",
    "validate_config",
]

_UNITS = {
    "": 1, "B": 1,
    "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KB": 10**3,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
    "k": 2**10, "K": 2**10, "m": 2**20, "M": 2**20, "g": 2**30, "G": 2**30,
}
_INT64_MAX = 2**63 - 1
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_memory(value: str, host_total: int | None = None) -> int:
    """Parse ``limits.memory``: ``256MB``, ``1GiB``, ``512M``, bytes, or ``50%``."""
    v = value.strip()
    if v.endswith("%"):
        try:
            pct = float(v[:-1])
        except ValueError:
            raise BadRequest(f"Invalid limits.memory {value!r}") from None
        if not 0 < pct <= 100:
            raise BadRequest(f"Invalid limits.memory {value!r}: percentage must be in (0, 100]")
        total = host_total if host_total is not None else _host_memory()
        return int(total * pct / 100)
    m = _SIZE.match(v)
    if not m or m.group(2) not in _UNITS:
        raise BadRequest(f"Invalid limits.memory {value!r}: use a size like 256MB, 1GiB or 50%")
    n = int(float(m.group(1)) * _UNITS[m.group(2)])
    if n < 4 * 2**20:
        raise BadRequest(f"Invalid limits.memory {value!r}: at least 4MiB")
    if n > _INT64_MAX:  # the kernel and runc take an int64; more is no limit but an error
        raise BadRequest(f"Invalid limits.memory {value!r}: more than 8EiB")
    return n


def parse_size(value: str, key: str) -> int:
    """A size in bytes: ``20GiB``, ``500MB``, ``1024``.

    Raises:
        BadRequest: naming ``key``, for anything else (or zero).
    """
    m = _SIZE.match(value)
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise BadRequest(f"Invalid {key} {value!r}: use a size like 500MB or 20GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _host_memory() -> int:  # pragma: no cover - trivial I/O
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


_MAX_CPUS = 8192  # the kernel's NR_CPUS ceiling; the host's own count is checked later


def cpu_set(text: str) -> set[int]:
    """``0-2,5`` -> {0, 1, 2, 5} (a list the kernel writes, as in ``cpu/online``).
    The caller has checked the syntax; a bad one raises ValueError."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        lo = int(a)
        hi = int(b) if b else lo
        out.update(range(lo, min(hi, _MAX_CPUS) + 1))
        if hi >= _MAX_CPUS:
            out.add(hi)
    return out


def parse_cpu(value: str) -> tuple[float | None, str | None]:
    """Parse ``limits.cpu``: a count (``2``) or a set (``0-1,3``).

    Returns ``(count, None)`` or ``(None, cpuset)``.
    """
    v = value.strip()
    if re.fullmatch(r"\d+", v):
        n = int(v)
        if n < 1:
            raise BadRequest(f"Invalid limits.cpu {value!r}: at least 1")
        return float(n), None
    if re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", v):
        for part in v.split(","):
            if "-" in part:
                a, b = part.split("-")
                if int(a) > int(b):
                    raise BadRequest(f"Invalid limits.cpu {value!r}: range {part} is backwards")
        if max(cpu_set(v)) >= _MAX_CPUS:
            raise BadRequest(f"Invalid limits.cpu {value!r}: no CPU has a number that high")
        return None, v
    raise BadRequest(f"Invalid limits.cpu {value!r}: use a count like 2 or a set like 0-1,3")


def parse_allowance(value: str) -> tuple[int, int]:
    """Parse ``limits.cpu.allowance`` (``50%`` or ``25ms/100ms``) into (quota, period) in us.

    The period is what the kernel takes (1 ms to 1 s); the quota at least 1 ms.
    """
    v = value.strip()
    m = re.fullmatch(r"(\d+)ms/(\d+)ms", v)
    if m:
        quota, period = int(m.group(1)) * 1000, int(m.group(2)) * 1000
        if quota < 1000 or not 1000 <= period <= 1_000_000:
            raise BadRequest(f"Invalid limits.cpu.allowance {value!r}: the period must be "
                             "1ms to 1000ms and the quota at least 1ms")
        if quota > _MAX_QUOTA:
            raise BadRequest(f"Invalid limits.cpu.allowance {value!r}: quota too large")
        return quota, period
    m = re.fullmatch(r"(\d+)%", v)
    if m and 0 < int(m.group(1)) <= 100 * _MAX_CPUS:
        return int(m.group(1)) * 1000, 100_000
    raise BadRequest(f"Invalid limits.cpu.allowance {value!r}: use 50% or 25ms/100ms")


_MAX_QUOTA = 2**44 // 1000  # us: the kernel's ceiling for a CFS quota (max_cfs_runtime)


def parse_processes(value: str) -> int:
    v = value.strip()
    if not re.fullmatch(r"\d+", v) or int(v) < 1:
        raise BadRequest(f"Invalid limits.processes {value!r}: a positive integer")
    if int(v) > _INT64_MAX:
        raise BadRequest(f"Invalid limits.processes {value!r}: too large")
    return int(v)


def _priority(key: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        v = value.strip()
        if not re.fullmatch(r"\d+", v) or int(v) > 10:
            raise BadRequest(f"Invalid {key} {value!r}: an integer from 0 to 10")
        return int(v)
    return parse


parse_cpu_priority = _priority("limits.cpu.priority")
parse_disk_priority = _priority("limits.disk.priority")


def parse_enforce(value: str) -> str:
    """``limits.memory.enforce``: ``hard`` (the default) or ``soft``."""
    v = value.strip()
    if v not in ("hard", "soft"):
        raise BadRequest(f"Invalid limits.memory.enforce {value!r}: hard or soft")
    return v


def _swap(value: str) -> bool:
    try:
        return _bool(value)
    except BadRequest:
        raise BadRequest(f"Invalid limits.memory.swap {value!r}: true or false") from None


def parse_signal(value: str) -> int:
    """Parse a signal name or number (``SIGTERM``, ``TERM``, ``15``)."""
    v = value.strip().upper()
    if v.isdigit():
        n = int(v)
        if 1 <= n <= 64:
            return n
    else:
        name = v if v.startswith("SIG") else "SIG" + v
        try:
            return int(getattr(signal.Signals, name))
        except AttributeError:
            pass
    raise BadRequest(f"Invalid signal {value!r}: use a name like SIGTERM or a number")


_MAX_ID = 2**31 - 1  # runc (the OCI spec's uid/gid) takes a signed 32-bit number


def _id(value: str) -> int:
    v = value.strip()
    if not re.fullmatch(r"\d+", v) or int(v) > _MAX_ID:
        raise BadRequest(f"Invalid id {value!r}: a number from 0 to {_MAX_ID}")
    return int(v)


def _cmd(value: str) -> list[str]:
    try:
        words = shlex.split(value)
    except ValueError as e:
        raise BadRequest(f"Invalid cove.cmd {value!r}: {e}") from None
    if not words:
        raise BadRequest("Invalid cove.cmd: empty command")
    return words


def _cwd(value: str) -> str:
    if not value.startswith("/"):
        raise BadRequest(f"Invalid cove.cwd {value!r}: must be an absolute path")
    return value


_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _hostname(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise BadRequest(f"Invalid cove.hostname {value!r}: a DNS label (letters, digits, '-')")
    return value


def _aliases(value: str) -> list[str]:
    """``cove.dns.aliases``: more names of the instance in its networks' DNS."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    for n in names:
        if not _DNS_LABEL.match(n):
            raise BadRequest(f"Invalid cove.dns.aliases entry {n!r}: a DNS label "
                             "(letters, digits, '-')")
    return names


def _bool(value: str) -> bool:
    if value.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off", ""):
        raise BadRequest(f"Invalid boolean {value!r}: use true or false")
    return truthy(value)


_EXPIRY = re.compile(r"^(\d+)([MHdwmy])$")
_EXPIRY_UNIT = {"M": 60, "H": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400,
                "y": 365 * 86400}


def parse_expiry(value: str, now: float = 0.0, field: str = "snapshots.expiry") -> float:
    """LXD's snapshot expiry (``1M 2H 3d 4w 5m 6y``: minutes, hours, days,
    weeks, months, years, summed) as a time from ``now``; 0 for an empty
    value (never expires).

    Raises: BadRequest naming ``field``.
    """
    total = 0
    for part in value.split():
        m = _EXPIRY.match(part)
        if m is None:
            raise BadRequest(f"Invalid value for {field!r}: {value!r} "
                             "(use e.g. '1M 2H 3d 4w 5m 6y')")
        total += int(m.group(1)) * _EXPIRY_UNIT[m.group(2)]
    return now + total if total else 0.0


_SCHEDULE_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@annually",
                     "@yearly", "@startup", "@never")
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def parse_schedule(value: str) -> list[str]:
    """LXD's ``snapshots.schedule``: comma-separated cron expressions (five
    fields) or aliases (``@hourly``...). Returns the expressions.

    Raises: BadRequest naming the key.
    """
    out = []
    for expr in (e.strip() for e in value.split(",") if e.strip()):
        fields = expr.split()
        if expr in _SCHEDULE_ALIASES or (
                len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)):
            out.append(expr)
            continue
        raise BadRequest(f"Invalid value for 'snapshots.schedule': {expr!r} "
                         "(a cron expression of five fields or @hourly, @daily...)")
    return out


def _pattern(value: str) -> str:
    if "/" in value:
        raise BadRequest(f"Invalid value for 'snapshots.pattern': {value!r} (no '/')")
    return value


_VALIDATORS: dict[str, Callable[[str], object]] = {
    "snapshots.expiry": parse_expiry,
    "snapshots.schedule": parse_schedule,
    "snapshots.schedule.stopped": _bool,
    "snapshots.pattern": _pattern,
    "limits.memory": parse_memory,
    "limits.cpu": parse_cpu,
    "limits.cpu.allowance": parse_allowance,
    "limits.processes": parse_processes,
    "limits.cpu.priority": parse_cpu_priority,
    "limits.disk.priority": parse_disk_priority,
    "limits.memory.enforce": parse_enforce,
    "limits.memory.swap": _swap,
    "boot.autostart": _bool,
    "security.privileged": _bool,
    "cove.cmd": _cmd,
    "cove.cwd": _cwd,
    "cove.uid": _id,
    "cove.gid": _id,
    "cove.halt": parse_signal,
    "cove.hostname": _hostname,
    "cove.dns.aliases": _aliases,
    **APP_VALIDATORS,
}
_FREE_PREFIXES = ("environment.", "user.", "volatile.", "image.")
# Keys LXD clients send that have no effect here but must not be refused.
_ACCEPTED = {"boot.autostart.delay", "boot.autostart.priority", "boot.host_shutdown_timeout"}


def validate_config(config: Mapping[str, object]) -> dict[str, str]:
    """Check every key and value; return the config with values as strings.

    Raises:
        BadRequest: naming the first unknown key or bad value.
    """
    if not isinstance(config, Mapping):
        raise BadRequest("config must be an object of string keys and values")
    out: dict[str, str] = {}
    for key, raw in config.items():
        if not isinstance(key, str):
            raise BadRequest(f"Invalid config key {key!r}")
        if isinstance(raw, bool):
            value = "true" if raw else "false"
        elif isinstance(raw, (str, int, float)):
            value = str(raw)
        else:
            raise BadRequest(f"Invalid value for {key!r}: must be a string")
        if "\0" in key or "\0" in value:
            raise BadRequest(f"Invalid config key {key[:60]!r}: a NUL byte in the key or value")
        check = _VALIDATORS.get(key)
        if check is not None:
            if value != "":
                check(value)
        elif key.startswith(_FREE_PREFIXES):
            if key.startswith("environment.") and (len(key) == len("environment.")
                                                   or "=" in key):
                raise BadRequest(f"Invalid config key {key!r}: an environment variable name "
                                 "is not empty and has no '='")
        elif key not in _ACCEPTED:
            raise BadRequest(f"Unknown configuration key: {key}")
        out[key] = value
    return out


@dataclass(frozen=True)
class Resources:
    """cgroup limits derived from config; None means unlimited."""

    memory: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpus: str | None = None
    pids: int | None = None
    # soft limit (v1 memory.soft_limit_in_bytes, v2 memory.low: runc's mapping)
    memory_reservation: int | None = None
    # memory + swap (v1 memsw); equal to ``memory`` means no swap
    memory_swap: int | None = None


def resources_from_config(config: Mapping[str, str], ncpu: int | None = None) -> Resources:
    """Turn the ``limits.*`` keys into what runc sets (a pure function).

    As LXD: ``limits.memory.enforce=soft`` makes ``limits.memory`` a soft
    limit only; ``hard`` (the default) sets it and a soft limit 10% below.
    ``limits.memory.swap=false`` with a memory limit caps memory+swap at the
    limit. The priorities are not here: they are written to the cgroup by
    the engine (``engine/_limits.py``), as runc maps them differently on v2.
    """
    memory = parse_memory(config["limits.memory"]) if config.get("limits.memory") else None
    reservation = swap = None
    if memory is not None:
        if config.get("limits.memory.enforce", "").strip() == "soft":
            memory, reservation = None, memory
        else:
            reservation = int(memory * 0.9)
            if config.get("limits.memory.swap", "") != "" and \
                    not truthy(config["limits.memory.swap"]):
                swap = memory
    quota = period = None
    cpus = None
    if config.get("limits.cpu"):
        count, cpus = parse_cpu(config["limits.cpu"])
        if count is not None:
            period = 100_000
            quota = int(count * period)
    if config.get("limits.cpu.allowance"):
        quota, period = parse_allowance(config["limits.cpu.allowance"])
    pids = parse_processes(config["limits.processes"]) if config.get("limits.processes") else None
    return Resources(memory=memory, cpu_quota=quota, cpu_period=period, cpus=cpus, pids=pids,
                     memory_reservation=reservation, memory_swap=swap)


def command_from_config(config: Mapping[str, str], image_cmd: list[str]) -> list[str]:
    """The init command: ``cove.cmd`` split as shell words, else the image's."""
    if config.get("cove.cmd"):
        return _cmd(config["cove.cmd"])
    return list(image_cmd)


def environment_from_config(config: Mapping[str, str]) -> dict[str, str]:
    return {k[len("environment."):]: v for k, v in config.items() if k.startswith("environment.")}
