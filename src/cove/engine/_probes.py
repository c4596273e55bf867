"""Running one readiness or health probe (``cove.ready``, ``cove.health``).

Design note: a probe never outlives its check. A command runs through the
exec machinery (``Access.exec``, a session cgroup where the host has one)
and is killed with every process it started at its timeout; TCP and HTTP
probes are sockets from the host to the instance's address with the
timeout as their socket timeout. The output kept is the last 4 KiB, which
is what a failed start and ``cove info`` show.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from cove.api import InstanceExecPost
from cove.engine.types import ExecSession
from cove.host import proc
from cove.model.app_keys import Probe
from cove.model.errors import CoveError
from cove.model.projects import split_key

__all__ = ["ExecRunner", "ProbeResult", "Prober"]

_KEEP = 4096


class ExecRunner(Protocol):
    """What a probe needs of the access service: an exec."""

    def exec(self, name: str, req: InstanceExecPost, *, project: str = "default") -> ExecSession:
        ...


class ProbeResult:
    """``ok`` and the probe's last output (or why it failed)."""

    __slots__ = ("ok", "output")

    def __init__(self, ok: bool, output: str) -> None:
        self.ok = ok
        self.output = output

    def __repr__(self) -> str:
        return f"ProbeResult({self.ok}, {self.output!r})"


class Prober:
    """Runs probes against instances. Thread-safe (no state)."""

    def __init__(self, access: ExecRunner,
                 network_state: Callable[[str], dict[str, Any] | None]) -> None:
        self._access = access
        self._network_state = network_state  # key -> LXD's state.network

    def run(self, key: str, probe: Probe, timeout: float) -> ProbeResult:
        """Run ``probe`` against the instance keyed ``key`` for at most
        ``timeout`` seconds. Never raises for a failing probe."""
        try:
            if probe.kind == "exec":
                return self._exec(key, probe, timeout)
            address = self.address(key)
            if address is None:
                return ProbeResult(False, "the instance has no IPv4 address")
            if probe.kind == "tcp":
                with socket.create_connection((address, probe.port), timeout=timeout):
                    return ProbeResult(True, f"connected to {address}:{probe.port}")
            return _http(address, probe, timeout)
        except (OSError, http.client.HTTPException) as e:
            return ProbeResult(False, f"{type(e).__name__}: {e}")
        except CoveError as e:
            return ProbeResult(False, str(e))

    def address(self, key: str) -> str | None:
        """The first global IPv4 address of the running instance, or None."""
        net = self._network_state(key) or {}
        for nic, st in sorted(net.items()):
            if nic == "lo":
                continue
            for a in st.get("addresses", []):
                if a.get("family") == "inet" and a.get("scope", "global") == "global":
                    return str(a["address"])
        return None

    def _exec(self, key: str, probe: Probe, timeout: float) -> ProbeResult:
        project, name = split_key(key)
        session = self._access.exec(name, InstanceExecPost(command=list(probe.argv)),
                                    project=project)
        try:
            out, finished = _drain(session, time.monotonic() + timeout)
            code = session.wait(1 if finished else 0)
            if not finished or code is None:
                session.kill()  # the whole tree, not just the command
                session.wait(5)
                return ProbeResult(False, f"{out}timed out after {timeout:g}s".strip())
            return ProbeResult(code == 0, out if code == 0 else f"{out}exit status {code}")
        finally:
            if session.wait(0) is None:
                session.kill()
            session.close()


def _drain(session: ExecSession, deadline: float) -> tuple[str, bool]:
    """Read stdout and stderr until both end or ``deadline``; the tail of
    what came, and whether both ended."""
    fds = [fd for fd in (session.stdout_fd, session.stderr_fd) if fd is not None]
    buf = b""
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return _text(buf), False
        for fd in proc.readable(fds, left):
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                fds.remove(fd)
            buf = (buf + chunk)[-_KEEP:]
    # both pipes closed: the command ended, or left a child holding none
    while time.monotonic() < deadline:
        if session.wait(0.05) is not None:
            return _text(buf), True
    return _text(buf), False


def _text(buf: bytes) -> str:
    return buf.decode(errors="replace")


def _http(address: str, probe: Probe, timeout: float) -> ProbeResult:
    conn = http.client.HTTPConnection(address, probe.port, timeout=timeout)
    try:
        conn.request("GET", probe.path, headers={"User-Agent": "cove-probe"})
        resp = conn.getresponse()
        body = resp.read(_KEEP)
    finally:
        with contextlib.suppress(OSError):
            conn.close()
    text = f"HTTP {resp.status} {resp.reason}: " + _text(body)
    return ProbeResult(200 <= resp.status < 400, text[:_KEEP])
