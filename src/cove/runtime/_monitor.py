"""cove-monitor: one process monitors many containers, in place of a conmon each.

Design note: of what a container costs beyond runc, its monitor is the part
that is cove's choice (docs/performance.md, "Host memory per container",
"cove's own monitor" and "One monitor for many containers"): conmon is
~200 KiB of private memory per container (glib, the dynamic loader's
relocations) and ~7 ms of CPU per start; even a small static monitor of
cove's own was ~72 KiB of private memory and ~150 KiB of kernel memory
(task, stack, page tables) per container. So cove's monitor (``monitor.c``,
``mon_io.c`` next to this file) serves up to K containers in one process
(K = 32, ``COVE_MONITOR_SHARE=K``), as containerd's shim v2 serves a pod,
and a container costs it only its fds and a small struct.

What a container and the rest of cove see stays per container, as conmon's
files and protocols, so nothing else in cove changes and containers started
under conmon (or an older cove-monitor, one per container) keep working
next to these: the monitor pid file (``pids/<id>.conmon``: the serving
monitor's pid, removed by it as the last thing it does for the container),
the JSON line on the sync pipe, the k8s-file log and its size cap, the
attach socket and the ``ctl`` fifo (see ``_console``), the exit file
``exits/<id>``. It writes no ``oom`` marker file, which cove never reads
(OOM kills are counted from the cgroup, ``cgroup_metrics``).

Lifetime (``SharedMonitors``): coved starts a monitor with one end of a
socket pair and sends it K creates (each the conmon-style options, the sync
pipe and the creating thread's mount namespace); then it closes its end
("retires" it) and starts the next. A monitor exits once its connection is
closed (retired, or coved gone) and its last container has ended; coved
also retires the current one when its last container is deleted, so no idle
monitor stays behind. A restarted coved starts new ones and never talks to the old. Being coved's
children (coved is a subreaper anyway), they are reaped by one thread here.

It is built like cove-nsexec (``_nsexec.build``: gcc on first use into
``<cove root>/run/bin/cove-monitor-<digest of every file>``, statically
linked when the C library allows, checked with ``--version``).
``COVE_MONITOR=conmon`` keeps conmon; without gcc, or when the build fails,
cove uses conmon and logs that once.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from cove.host import proc
from cove.runtime import _nsexec

__all__ = ["SOURCES", "VERSION", "Monitor", "SharedMonitors", "build", "is_ours", "share"]


_HERE = Path(__file__).parent
SOURCES = (_HERE / "monitor.h", _HERE / "monitor.c", _HERE / "mon_io.c")
VERSION = "cove-monitor 2"
DEFAULT_SHARE = 32


def build(out_dir: Path, *, cc: str = "gcc", strict: bool = False) -> Path:
    """Compile cove-monitor into ``out_dir`` unless there; return its path.

    Raises:
        _nsexec.BuildError: no compiler, it does not compile, or does not run.
    """
    return _nsexec.build(out_dir, cc=cc, strict=strict, source=SOURCES,
                         name="cove-monitor", version=VERSION)


def share() -> int:
    """How many containers one monitor is sent (``COVE_MONITOR_SHARE``, at least 1)."""
    try:
        return max(1, int(os.environ.get("COVE_MONITOR_SHARE", DEFAULT_SHARE)))
    except ValueError:
        return DEFAULT_SHARE


class Monitor:
    """The monitor program of one cove root: built on first use, then cached.

    ``path()`` never raises: the program's path, or None when containers
    are to be monitored by conmon (``COVE_MONITOR=conmon``, or it cannot be
    had: logged once). Thread-safe.
    """

    def __init__(self, bin_dir: Path, cc: str = "gcc") -> None:
        self.bin_dir = Path(bin_dir)
        self.cc = cc
        self._built = _nsexec.BuiltOnce(
            lambda: build(self.bin_dir, cc=self.cc),
            "containers are monitored by conmon (more memory and CPU per container)")

    def path(self) -> str | None:
        if os.environ.get("COVE_MONITOR", "cove") == "conmon":
            return None
        return self._built.path()


class _Reaper:
    """Waits for the monitors this process started (one thread, pidfds), so
    none is left a zombie; the thread ends when none is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}  # pidfd -> monitor
        self._pids: set[int] = set()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread: threading.Thread | None = None

    def add(self, p: subprocess.Popen[bytes]) -> None:
        fd = os.pidfd_open(p.pid)
        with self._lock:
            self._procs[fd] = p
            self._pids.add(p.pid)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="monitor-reaper",
                                                daemon=True)
                self._thread.start()
        os.write(self._wake_w, b"x")

    def owns(self, pid: int) -> bool:
        with self._lock:
            return pid in self._pids

    def _loop(self) -> None:
        while True:
            with self._lock:
                fds = list(self._procs)
                if not fds:
                    self._thread = None
                    return
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            for fd in fds:
                poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    p = self._procs.pop(fd)
                p.wait()
                os.close(fd)
                with self._lock:
                    self._pids.discard(p.pid)


_reaper = _Reaper()


def is_ours(pid: int) -> bool:
    """True if ``pid`` is a serving monitor this process started and has not
    reaped yet (so nothing else may wait for or reap it)."""
    return _reaper.owns(pid)


class _Serving:
    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.sent = 0
        self.cids: set[str] = set()  # sent, not deleted yet


class SharedMonitors:
    """The monitors one coved started for a cove root (see module note).

    Thread-safe. ``close()`` retires the current one (containers keep their
    monitors); a later ``create`` starts another.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._lock = threading.Lock()
        self._current: _Serving | None = None

    def create(self, program: str, cid: str, options: list[str], sync_w: int,
               host_ns: Callable[[], int]) -> int:
        """Hand container ``cid``'s create (conmon-style ``options``; ``sync_w``
        the sync pipe's write end) to the current monitor, starting one if
        there is none, it took its share or it is gone; the create runs in
        the calling thread's mount namespace. ``host_ns`` opens a new fd of
        coved's own (-1: none), called only when a monitor is started (it
        leaves the creating thread's namespace for that one). Returns
        the monitor's pid. The answer comes on the sync pipe.

        Raises:
            OSError: no monitor could be started or take the create.
        """
        payload = b"\0".join(o.encode() for o in options)
        ns = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with self._lock:
                for attempt in (1, 2):
                    m = self._current or self._start(program, host_ns)
                    try:
                        socket.send_fds(m.sock, [payload], [sync_w, ns])
                    except OSError:  # it is gone (killed): a new one takes it
                        self._retire()
                        if attempt == 2:
                            raise
                        continue
                    m.sent += 1
                    m.cids.add(cid)
                    if m.sent >= share():
                        self._retire()
                    return m.pid
        finally:
            os.close(ns)
        raise AssertionError("unreachable")

    def _start(self, program: str, host_ns_of: Callable[[], int]) -> _Serving:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        host_ns = host_ns_of()
        try:
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
            passed = [theirs.fileno()]
            if host_ns >= 0:  # it starts in the creating thread's namespace
                env["_COVE_MNTNS"] = str(host_ns)
                passed.append(host_ns)
            # the state dir only names the root on its command line (ps, tests)
            p = proc.spawn([program, "--serve", str(theirs.fileno()), str(self.state_dir)],
                           pass_fds=tuple(passed), env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            if host_ns >= 0:
                os.close(host_ns)
        _reaper.add(p)
        self._current = _Serving(ours, p.pid)
        return self._current

    def _retire(self) -> None:
        if self._current is not None:
            self._current.sock.close()
            self._current = None

    def forget(self, cid: str) -> None:
        """``cid`` was deleted. The current monitor is retired when that was
        its last container, so that no idle monitor stays behind: a later
        create starts another (idempotent)."""
        with self._lock:
            m = self._current
            if m is not None and cid in m.cids:
                m.cids.discard(cid)
                if not m.cids:
                    self._retire()

    def close(self) -> None:
        """Retire the current monitor (idempotent); it serves its containers
        to their end."""
        with self._lock:
            self._retire()
