"""Forwarders: the non-NAT ``proxy`` devices of running instances, one
process each (``cove.network.forwarder``, LXD's forkproxy).

Design note: a forwarder is started when its instance's namespaces exist
(``InstanceNetworks.attach``, between ``runc create`` and ``runc start``,
with an undo), changed when the device is (hot-plug), and stopped when the
run is released. It exits by itself when the instance's init ends (a pidfd),
so a dead coved leaks none. It outlives coved like conmon: its argv carries
``--cove-proxy=<root id>:<key>:<instance>:<device>``, where the key hashes
the device and the init pid, and the next coved adopts the processes whose
key still matches a running instance's device and stops the rest
(``resume``). A forwarder reports on a pipe once it listens, so an address
already in use is a 409 of the request that added the device, not a
process that dies later.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import stat
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cove.engine._runs import RunTable
from cove.host import proc
from cove.model.errors import BadRequest, Conflict, InternalError
from cove.network.model import Proxy

__all__ = ["Forwarders"]

log = logging.getLogger("cove.engine")

_SCRIPT = Path(__file__).resolve().parent.parent / "network" / "forwarder.py"
_READY_TIMEOUT = 10.0
_STOP_TIMEOUT = 2.0


def _key(proxy: Proxy, pid: int) -> str:
    return hashlib.sha256(f"{proxy!r}/{pid}".encode()).hexdigest()[:12]


def _spec(proxy: Proxy, pid: int, status_fd: int) -> dict[str, Any]:
    def addr(a: Any) -> dict[str, Any]:
        return {"proto": a.proto, "host": str(a.host), "ports": list(a.ports), "path": a.path}
    return {"pid": pid, "bind": proxy.bind, "listen": addr(proxy.listen),
            "connect": addr(proxy.connect), "proxy_protocol": proxy.proxy_protocol,
            "uid": proxy.uid, "gid": proxy.gid, "mode": proxy.mode,
            "security_uid": proxy.security_uid, "security_gid": proxy.security_gid,
            "status_fd": status_fd}


class _Fwd:
    """One forwarder: its pid, key, a pidfd (signals cannot hit a reused pid),
    when coved started it its Popen (which reaps it), and the host socket
    file it listens on, if any (removed once it is gone: a forwarder that
    dropped its privileges, or was killed, cannot)."""

    __slots__ = ("child", "key", "pid", "pidfd", "sock")

    def __init__(self, pid: int, key: str, pidfd: int, proxy: Proxy | None,
                 child: Any = None) -> None:
        self.pid, self.key, self.pidfd, self.child = pid, key, pidfd, child
        self.sock = ""
        if proxy is not None and proxy.bind == "host" and proxy.listen.proto == "unix" \
                and not proxy.listen.abstract:
            self.sock = proxy.listen.path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a while; returns once it is gone."""
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    signal.pidfd_send_signal(self.pidfd, sig)
                except ProcessLookupError:
                    break
                if proc.readable([self.pidfd], _STOP_TIMEOUT):
                    break
            if self.child is not None:
                self.child.wait(_STOP_TIMEOUT)
        finally:
            os.close(self.pidfd)
            self.pidfd = -1
        if self.sock:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(self.sock).st_mode):
                    os.unlink(self.sock)


class Forwarders:
    """The forwarder processes of one root. Thread-safe."""

    def __init__(self, root: Path, runs: RunTable) -> None:
        from cove.network.model import root_id

        self._tag = f"--cove-proxy={root_id(root)}:"
        self._runs = runs
        self._lock = threading.Lock()
        self._procs: dict[str, dict[str, _Fwd]] = {}  # instance -> device -> forwarder

    def start(self, name: str, pid: int, proxies: list[Proxy], undo: ExitStack) -> None:
        """Start a forwarder per non-NAT proxy of ``name`` (init ``pid``);
        ``undo`` stops them.

        Raises:
            Conflict: a listen address is in use.
            BadRequest: a listen address cannot be made (no such directory,
                a file in the way of a unix socket, ...).
        """
        undo.callback(self.stop, name)
        self._start_many(name, pid, [p for p in proxies if not p.nat])

    def sync(self, name: str, proxies: list[Proxy],
             previous: list[Proxy] | None = None) -> None:
        """Make the running ``name``'s forwarders match ``proxies`` (hot-plug:
        removed or changed devices are stopped first, so a changed one can
        take its old port again). When a new one cannot start and
        ``previous`` is given, the forwarders are put back to match it (the
        devices the store keeps) before raising. Raises as ``start``."""
        pid = self._runs.pid(name)
        if not pid:
            return
        try:
            self._converge(name, pid, proxies)
        except Exception:
            if previous is not None:
                try:
                    self._converge(name, pid, previous)
                except Exception:
                    log.exception("forwarders of %s could not be put back", name)
            raise

    def _converge(self, name: str, pid: int, proxies: list[Proxy]) -> None:
        want = {p.device: p for p in proxies if not p.nat}
        with self._lock:
            have = dict(self._procs.get(name, {}))
        for dev, fwd in have.items():
            if dev not in want or _key(want[dev], pid) != fwd.key:
                self._stop_one(name, dev, fwd)
        with self._lock:
            have = dict(self._procs.get(name, {}))
        self._start_many(name, pid, [p for dev, p in want.items() if dev not in have])

    def stop(self, name: str) -> None:
        """Stop every forwarder of ``name``. Idempotent."""
        with self._lock:
            devs = dict(self._procs.get(name, {}))
        for dev, fwd in devs.items():
            self._stop_one(name, dev, fwd)

    def pids(self, name: str) -> dict[str, int]:
        """The running forwarders of ``name``: device -> pid."""
        with self._lock:
            return {d: f.pid for d, f in self._procs.get(name, {}).items()}

    def resume(self, wanted: dict[str, list[Proxy]]) -> None:
        """At startup: adopt the forwarders a previous coved left whose
        device and instance run still match ``wanted`` (running instance ->
        its proxies), stop the others, and start the missing ones. Failures
        are logged (the instance keeps running without that device)."""
        tag = self._tag.encode()
        found = proc.pids_with_arg(None, tag)
        for fpid, arg in found.items():
            key, name, dev = arg.decode(errors="replace")[len(self._tag):].split(":", 2)
            pid = self._runs.pid(name)
            match = [p for p in wanted.get(name, []) if p.device == dev and not p.nat]
            with self._lock:
                known = self._procs.get(name, {}).get(dev)
            if known is not None and known.pid == fpid:
                continue
            try:
                fwd = _Fwd(fpid, key, os.pidfd_open(fpid), match[0] if match else None)
            except ProcessLookupError:
                continue
            # the pid was read from /proc before the pidfd was opened: if the
            # forwarder ended in between and the pid was reused, the argv differs
            if arg not in proc.argv_of(fpid):
                os.close(fwd.pidfd)
                continue
            if known is None and pid and match and _key(match[0], pid) == key:
                with self._lock:
                    self._procs.setdefault(name, {})[dev] = fwd
                log.info("adopted forwarder %d of %s device %s", fpid, name, dev)
                continue
            log.info("stopping stale forwarder %d of %s device %s", fpid, name, dev)
            fwd.stop()
        for name, proxies in wanted.items():
            try:
                self.sync(name, proxies)
            except Exception:
                log.exception("forwarders of %s could not be started", name)

    # -- one process ------------------------------------------------------------------------
    def _start_many(self, name: str, pid: int, proxies: list[Proxy]) -> None:
        """Spawn them all, then wait for each to listen: N devices cost one
        interpreter start, not N. On a failure the ones that did start are
        kept (recorded), so the caller's undo or rollback stops them."""
        started = []
        try:
            for p in proxies:
                started.append((p, *self._spawn(name, pid, p)))
        finally:
            failure = None
            for p, child, key, r in started:
                try:
                    report = self._read_status(r)
                finally:
                    os.close(r)
                if report.get("ok"):
                    # its Popen is kept: it reaps it, and nothing else can
                    with self._lock:
                        self._procs.setdefault(name, {})[p.device] = _Fwd(
                            child.pid, key, os.pidfd_open(child.pid), p, child)
                else:
                    child.kill()
                    child.wait()
                    failure = failure or (p, report)
        if failure is not None:
            self._fail(*failure)

    def _spawn(self, name: str, pid: int, p: Proxy) -> tuple[Any, str, int]:
        key = _key(p, pid)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            child = proc.spawn(
                [sys.executable, "-I", "-S", str(_SCRIPT),
                 f"{self._tag}{key}:{name}:{p.device}", json.dumps(_spec(p, pid, w))],
                pass_fds=(w,), stdin=proc.DEVNULL, stdout=proc.DEVNULL, stderr=proc.DEVNULL,
                cwd="/", start_new_session=True)  # not coved's process group: outlives it
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        return child, key, r

    @staticmethod
    def _read_status(fd: int) -> dict[str, Any]:
        buf = b""
        while not buf.endswith(b"\n"):
            if not proc.readable([fd], _READY_TIMEOUT):
                return {"errno": 0, "error": "the forwarder did not start in time"}
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
        try:
            out: dict[str, Any] = json.loads(buf or b"{}")
        except ValueError:
            out = {}
        return out or {"errno": 0, "error": "the forwarder exited before listening"}

    @staticmethod
    def _fail(p: Proxy, report: dict[str, Any]) -> None:
        import errno

        code = int(report.get("errno") or 0)
        what = f"Device {p.device!r}: cannot listen on {p.listen}: {report.get('error')}"
        if code == errno.EADDRINUSE:
            raise Conflict(f"Device {p.device!r}: {p.listen} is already in use")
        if code in (errno.ENOENT, errno.EEXIST, errno.EADDRNOTAVAIL, errno.EACCES,
                    errno.ENOTDIR, errno.EINVAL):
            raise BadRequest(what)
        raise InternalError(what)

    def _stop_one(self, name: str, dev: str, fwd: _Fwd) -> None:
        with self._lock:
            devs = self._procs.get(name, {})
            if devs.get(dev) is not fwd:
                return  # another thread took it out, and stops it
            devs.pop(dev)
            if not devs:
                self._procs.pop(name, None)
        fwd.stop()
