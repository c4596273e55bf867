"""A private coved for a bench: the setup most benches share.

``private_coved("snap")`` starts coved on a fresh temporary root, waits
for its socket, imports the busybox test image as ``busybox``, and on the
way out removes every instance the bench launched through it, stops coved
and deletes the root: a bench that fails half-way leaves nothing behind.
The CPU counters read ``/proc/PID/stat`` so a bench can charge a daemon for
its own work (and that of the helpers it reaped) while the machine runs
other things.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from metrics import mkbusybox, wait_socket

from cove.client import Client
from cove.model.errors import CoveError, NotFound

__all__ = ["BenchCoved", "cpu_seconds", "private_coved", "timed"]

_TICK = os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took (wall clock)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU seconds of ``pid``, with those of the children it has reaped
    (tar, gzip, probe helpers) unless ``children`` is False."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15 if children else 13]) / _TICK


class BenchCoved:
    """A coved the bench owns: ``client``, ``pid``, ``root``; ``launch`` and
    ``remove`` keep the list of instances to clean up."""

    def __init__(self, root: Path, proc: subprocess.Popen[bytes], client: Client) -> None:
        self.root = root
        self.client = client
        self._proc = proc
        self.made: list[str] = []

    @property
    def pid(self) -> int:
        return self._proc.pid

    def launch(self, name: str, config: dict[str, str] | None = None, *, start: bool = True,
               nic: bool = False, timeout: float = 300) -> None:
        """Create ``name`` from busybox (``cove.cmd`` a long sleep unless
        ``config`` says otherwise; no NIC unless ``nic``) and wait for it."""
        body: dict[str, Any] = {
            "name": name, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": "sleep 1000000", **(config or {})}, "start": start}
        if not nic:
            body["devices"] = {"eth0": {"type": "none"}}
        r = self.client.raw("POST", "/1.0/instances", body)
        self.client.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], timeout)
        self.made.append(name)

    def remove(self, name: str) -> None:
        """Stop (forced) and delete ``name``; gone already is fine."""
        with contextlib.suppress(NotFound):
            with contextlib.suppress(CoveError):
                self.client.change_state(name, "stop", force=True).wait(60)
            self.client.delete_instance(name).wait(120)
        if name in self.made:
            self.made.remove(name)


@contextlib.contextmanager
def private_coved(tag: str) -> Iterator[BenchCoved]:
    """A coved on ``/tmp/covebench-TAG-*`` with busybox imported (see the module)."""
    root = Path(tempfile.mkdtemp(prefix=f"covebench-{tag}-"))
    log = open(root / "bench-coved.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "cove.server.main", "--root", str(root)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    sock = root / "unix.socket"
    client = Client(str(sock))
    coved = BenchCoved(root, proc, client)
    try:
        wait_socket(sock)
        tar = mkbusybox(root / "busybox.tar.gz")
        client.import_image(str(tar), aliases=["busybox"])
        tar.unlink()
        yield coved
    finally:
        for name in reversed(list(coved.made)):
            with contextlib.suppress(CoveError, OSError):
                coved.remove(name)
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
