"""What runs now: the in-memory truth about running instances, and where
each instance lives on disk.

Design note: the database says what should exist; ``RunTable`` says what
coved knows to be running (init pid, a stop event, how many users hold the
rootfs mounted). The lifecycle, the reconciler, file access and the
network all read it; only the lifecycle and the reconciler change it, each
under the instance's ``mutex`` (a short internal lock, not an operation
lock: the exit watcher takes it too).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ROOT", "Paths", "RunTable"]

DEFAULT_ROOT = Path("/var/lib/cove")


class Paths:
    """Where a root keeps each instance's files and cgroup. Pure."""

    def __init__(self, root: Path) -> None:
        self.root = root
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        self.cgroup_parent = "cove" if root == DEFAULT_ROOT else f"cove-{digest}"

    def instance_dir(self, name: str) -> Path:
        """``instances/NAME``: upper/, work/, rootfs/, config.json, console.log, logs/."""
        return self.root / "instances" / name

    def exec_log_dir(self, name: str) -> Path:
        """Where exec records outputs (inside the instance's directory, so
        delete and rename take them along)."""
        return self.instance_dir(name) / "logs"

    def cgroups_path(self, name: str) -> str:
        """The instance's cgroup, under the root's parent cgroup."""
        return f"/{self.cgroup_parent}/{name}"


class RunTable:
    """Running instances by name. Thread-safe.

    ``pid``, ``stopped``, ``mount_refs`` and ``root_pids`` are read and written by their
    owners under ``mutex(name)``.
    """

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}  # name -> init pid
        self.stopped: dict[str, threading.Event] = {}  # set when the run ends
        self.mount_refs: dict[str, int] = {}  # users of a stopped one's mounted rootfs
        # a created one's init (pid, start time): its /proc/PID/root is the rootfs
        self.root_pids: dict[str, tuple[int, int | None]] = {}
        self.restarting: set[str] = set()  # ephemeral ones kept across a stop
        # name -> [its lock, how many hold it or wait for it]: an entry goes
        # when nobody does, so names that come and go (every launch makes
        # one) do not pile up locks for the life of coved.
        self._mutexes: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def mutex(self, name: str) -> Iterator[None]:
        """Hold the instance's bookkeeping lock (re-entrant)."""
        with self._lock:
            entry = self._mutexes.get(name)
            if entry is None:
                entry = self._mutexes[name] = [threading.RLock(), 0]
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._mutexes[name]

    def mutexes(self) -> int:
        """How many instance locks exist now (held or awaited)."""
        with self._lock:
            return len(self._mutexes)

    def running(self) -> set[str]:
        """Names of the instances coved knows to be running (a snapshot)."""
        return set(self.pids)

    def pid(self, name: str) -> int:
        """The init pid of ``name``, 0 when it does not run."""
        return self.pids.get(name, 0)
