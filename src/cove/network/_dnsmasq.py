"""One dnsmasq per network, and the per-NIC files it reads.

Design note: dnsmasq runs as a daemon (its parent exits once the sockets are
bound, with a non-zero code when it cannot start), so coved learns of a bad
config at once and the resolver keeps serving while coved restarts, as the
containers do. coved is a child subreaper, so a daemonized dnsmasq becomes
coved's child: stopping it reaps it. Hosts files are written under a
sibling directory and renamed in, so dnsmasq's inotify sees each file once,
complete; a deleted file's names are dropped by dnsmasq at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from cove.host import proc
from cove.model.errors import InternalError

__all__ = ["Dnsmasq"]


def _state(stat: bytes) -> bytes:
    return stat[stat.rindex(b")") + 2:][:1]


def _alive(pid: int) -> bool:
    """Running (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return _state(f.read()) != b"Z"
    except OSError:
        return False


def _reap_daemonizers() -> None:
    """dnsmasq forks twice to daemonize; coved (a child subreaper) inherits the
    middle process when it exits: collect it, and only it."""
    proc.reap_zombie_children(b"dnsmasq")


def stray_pids(networks_dir: Path, keep: set[str]) -> list[int]:
    """dnsmasqs started from ``networks_dir/<name>/dnsmasq.conf`` for a
    ``<name>`` not in ``keep`` (their directory may be gone already)."""
    prefix = f"--conf-file={networks_dir}/".encode()
    out = []
    for pid, arg in proc.pids_with_arg(b"dnsmasq", prefix).items():
        name = arg[len(prefix):].split(b"/", 1)[0].decode(errors="replace")
        if name not in keep:
            out.append(pid)
    return out


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    proc.reap(pid, 1)


class Dnsmasq:
    """The dnsmasq of one network, living in ``dir`` (``<root>/networks/<name>``)."""

    def __init__(self, dir: Path) -> None:
        self.dir = Path(dir)
        self.conf = self.dir / "dnsmasq.conf"
        self.pid_file = self.dir / "dnsmasq.pid"
        self.log_file = self.dir / "dnsmasq.log"
        self.hosts_dir = self.dir / "hosts.d"
        self.tmp_dir = self.dir / "tmp"

    def prepare(self) -> None:
        for d in (self.dir, self.hosts_dir, self.tmp_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    def pid(self) -> int | None:
        """The pid of this network's dnsmasq if it runs (checked, not trusted)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return None
        if _state(stat) == b"Z":
            proc.reap(pid, 0)
            return None
        if not argv or os.path.basename(argv[0]) != b"dnsmasq" or \
                f"--conf-file={self.conf}".encode() not in argv:
            return None
        return pid

    def start(self, conf_text: str) -> None:
        """(Re)start with ``conf_text``; returns once it serves.

        Raises:
            InternalError: dnsmasq refused to start (its message included).
        """
        self.prepare()
        self.stop()
        tmp = self.dir / "dnsmasq.conf.tmp"
        tmp.write_text(conf_text)
        os.replace(tmp, self.conf)
        try:
            proc.run(["dnsmasq", f"--conf-file={self.conf}"], timeout=15)
        except proc.CommandFailed as e:
            raise InternalError(f"dnsmasq for {self.dir.name} did not start: {e}") from None
        finally:
            _reap_daemonizers()
        if self.pid() is None:
            raise InternalError(f"dnsmasq for {self.dir.name} exited at once "
                                f"(see {self.log_file})")

    def stop(self) -> None:
        """Stop it if it runs (idempotent)."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while _alive(pid):
            proc.reap(pid, 0)
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                proc.reap(pid, 1)
                break
            time.sleep(0.005)
        self.pid_file.unlink(missing_ok=True)

    # -- hosts --------------------------------------------------------------------------
    def write_host(self, key: str, text: str) -> None:
        """Publish one NIC's names (``key`` names the file)."""
        tmp = self.tmp_dir / key
        tmp.write_text(text)
        os.replace(tmp, self.hosts_dir / key)

    def remove_host(self, key: str) -> None:
        (self.hosts_dir / key).unlink(missing_ok=True)

    def host_keys(self) -> list[str]:
        try:
            return sorted(os.listdir(self.hosts_dir))
        except OSError:
            return []
