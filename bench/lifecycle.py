"""Snapshot, restore and copy of an instance with a 100 MiB upper layer,
cove against LXD's ``dir`` pool, in one run, through the same REST calls
(never asserted).

Each side gets one running busybox instance that writes ``--mib`` MiB of
random data (files of 1 MiB) into its root filesystem; then each of
``--runs`` rounds times, on cove and on LXD in turn (so load from elsewhere
hits both alike), every row of ``ROWS``: a snapshot of the running instance,
a restore of it (stop, restore, start), a copy of it while it runs (without
snapshots). What a row made is removed after it, untimed. Times are the
wall clock of the request and the wait for its operation, through
``cove.client.Client`` on each side's unix socket; the medians are printed
as a table with cove/LXD ratios, and the raw samples go to
``bench/results/lifecycle-<time>.json``.

cove copies the instance's upper layer only (the image's layers are
shared; ``cp -a --reflink=auto``: O(1) in data on btrfs/XFS, a full copy
of the upper on ext4); LXD's ``dir`` pool rsyncs the whole root filesystem.

Adding a row (publish, export, backup...) is one function::

    @row("export (running)")
    def export(side: Side, i: int) -> Callable[[], None] | None:
        side.op("POST", f"/1.0/instances/{side.inst}/backups", {"name": f"b{i}"})
        return lambda: side.op("DELETE", f"/1.0/instances/{side.inst}/backups/b{i}")

(its body is timed; the function it returns, if any, cleans up untimed.)

cove runs on a private coved (root ``/tmp/covebench-life-XXXX``). In the
LXD daemon already running, everything is named ``covetest-bench*`` (a
``dir`` pool, the instance and its copies; the busybox image unless it was
there already) and removed at the end, also on failure; nothing else in it
is touched. Without LXD, the LXD column is left out.

    sudo .venv/bin/python bench/lifecycle.py [--mib 100] [--runs 5] [--no-lxd]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from metrics import mkbusybox, wait_socket

from cove.client import Client
from cove.model.errors import CoveError, NotFound

LXD_SOCKET = Path("/var/lib/lxd/unix.socket")
PREFIX = "covetest-bench"

Cleanup = Callable[[], None] | None


class Side:
    """One daemon (cove or LXD) as the rows see it: ``inst`` runs, and
    ``op`` makes a request and waits for its operation."""

    def __init__(self, label: str, socket: Path) -> None:
        self.label = label
        self.client = Client(str(socket))
        self.inst = f"{PREFIX}-src"
        # what a copy is given (LXD's dir pool needs its root disk named)
        self.profiles: list[str] = []
        self.devices: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        """Remove what this side made. Idempotent."""
        self.client.close()

    def op(self, method: str, path: str, body: Any = None, timeout: float = 600) -> Any:
        """The request, and its operation waited for (a sync answer is fine too).

        Raises: CoveError (an error answer, or the operation failed).
        """
        r = self.client.raw(method, path, body)
        data = r.json() if r.body else {}
        if r.status >= 400:
            raise CoveError(f"{self.label}: {method} {path}: {data.get('error') or r.status}")
        if data.get("type") == "async":
            op = self.client.wait_operation(str(data["operation"]).rsplit("/", 1)[-1], timeout)
            return op.metadata
        return data.get("metadata")

    def wait_running(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = self.client.raw("GET", f"/1.0/instances/{self.inst}/state")
            status = (r.json().get("metadata") or {}).get("status") if r.status == 200 else None
            if status == "Running":
                return
            if time.monotonic() > deadline:
                raise CoveError(f"{self.label}: {self.inst} is {status}, not running")
            time.sleep(0.2)

    def fill(self, mib: int) -> None:
        self.wait_running()
        script = (f"mkdir -p /data; i=0; while [ $i -lt {mib} ]; do "
                  "head -c 1048576 /dev/urandom > /data/f$i; i=$((i+1)); done; sync")
        md = self.op("POST", f"/1.0/instances/{self.inst}/exec", {
            "command": ["sh", "-c", script], "environment": {}, "interactive": False,
            "wait-for-websocket": False, "record-output": True})
        if (md or {}).get("return", 0) != 0:
            raise CoveError(f"{self.label}: filling the instance failed: {md}")

    def remove(self, name: str) -> None:
        """Stop and delete ``name``; fine if it is gone."""
        with contextlib.suppress(CoveError):
            self.op("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "force": True})
        with contextlib.suppress(CoveError):
            self.op("DELETE", f"/1.0/instances/{name}")


# -- the rows: each times its body and returns its untimed cleanup ------------------------------

ROWS: list[tuple[str, Callable[[Side, int], Cleanup]]] = []


def row(label: str) -> Callable[[Callable[[Side, int], Cleanup]],
                                Callable[[Side, int], Cleanup]]:
    """Register a row: ``fn(side, i)`` is timed; the callable it returns (if
    any) is run after, untimed, to remove what it made."""
    def add(fn: Callable[[Side, int], Cleanup]) -> Callable[[Side, int], Cleanup]:
        ROWS.append((label, fn))
        return fn
    return add


@row("snapshot (running: frozen for the copy)")
def snapshot(side: Side, i: int) -> Cleanup:
    side.op("POST", f"/1.0/instances/{side.inst}/snapshots", {"name": f"s{i}"})
    return None  # the restore row uses it, and deletes it


@row("restore (running: stop, restore, start)")
def restore(side: Side, i: int) -> Cleanup:
    side.op("PUT", f"/1.0/instances/{side.inst}", {"restore": f"s{i}"})
    return lambda: side.op("DELETE", f"/1.0/instances/{side.inst}/snapshots/s{i}")


@row("copy (running, instance only)")
def copy(side: Side, i: int) -> Cleanup:
    name = f"{PREFIX}-cp{i}"
    side.op("POST", "/1.0/instances", {
        "name": name, "source": {"type": "copy", "source": side.inst, "instance_only": True},
        "profiles": side.profiles, "devices": side.devices})
    return lambda: side.remove(name)


# -- the two sides --------------------------------------------------------------------------------

class CoveSide(Side):
    def __init__(self, tarball: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="covebench-life-", dir="/tmp"))
        self._log = open(self.root / "bench-coved.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cove.server.main", "--root", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True)
        wait_socket(self.root / "unix.socket")
        super().__init__("cove", self.root / "unix.socket")
        spool = self.root / "busybox.tar.gz"
        shutil.copyfile(tarball, spool)
        self.client.import_image(str(spool), aliases=["busybox"])
        spool.unlink()
        self.op("POST", "/1.0/instances", {
            "name": self.inst, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": "sleep 1000000"}, "profiles": [], "start": True})

    def close(self) -> None:
        self.remove(self.inst)
        self.client.close()
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


class LxdSide(Side):
    """The running LXD; only ``covetest-bench*`` things are made and removed."""

    def __init__(self, tarball: Path) -> None:
        super().__init__("LXD", LXD_SOCKET)
        self.pool = PREFIX
        self.image_made = False
        self.devices = {"root": {"type": "disk", "path": "/", "pool": self.pool}}
        if self._exists(f"/1.0/instances/{self.inst}"):
            self.remove(self.inst)
        if not self._exists(f"/1.0/storage-pools/{self.pool}"):
            self.op("POST", "/1.0/storage-pools", {"name": self.pool, "driver": "dir"})
        self.fingerprint = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if not self._exists(f"/1.0/images/{self.fingerprint}"):
            self.client.import_image(str(tarball))
            self.image_made = True
        self.op("POST", "/1.0/instances", {
            "name": self.inst, "source": {"type": "image", "fingerprint": self.fingerprint},
            "profiles": [], "devices": self.devices})
        self.op("PUT", f"/1.0/instances/{self.inst}/state", {"action": "start"})

    def _exists(self, path: str) -> bool:
        return self.client.raw("GET", path).status == 200

    def close(self) -> None:
        r = self.client.raw("GET", "/1.0/instances")
        for url in (r.json().get("metadata") or []) if r.status == 200 else []:
            name = str(url).rsplit("/", 1)[-1]
            if name.startswith(PREFIX):
                self.remove(name)
        if self.image_made:
            with contextlib.suppress(CoveError, NotFound):
                self.op("DELETE", f"/1.0/images/{self.fingerprint}")
        with contextlib.suppress(CoveError):
            self.op("DELETE", f"/1.0/storage-pools/{self.pool}")
        self.client.close()


def _fs(path: str) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=False).stdout.strip()


def _table(samples: dict[str, dict[str, list[float]]], labels: list[str]) -> str:
    head = f"{'':42s}" + "".join(f"{lab:>12s}" for lab in labels)
    if len(labels) == 2:
        head += f"{'cove/LXD':>10s}"
    lines = [head]
    for name, _ in ROWS:
        meds = [statistics.median(samples[lab][name]) * 1e3 for lab in labels]
        line = f"{name:42s}" + "".join(f"{m:9.1f} ms" for m in meds)
        if len(meds) == 2:
            line += f"{meds[0] / meds[1]:10.2f}"
        lines.append(line)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-lxd", action="store_true", help="cove only")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="covebench-life-work-", dir="/tmp"))
    sides: list[Side] = []
    try:
        tarball = mkbusybox(work / "busybox.tar.gz")
        sides.append(CoveSide(tarball))
        if not args.no_lxd and LXD_SOCKET.exists():
            sides.append(LxdSide(tarball))
        for side in sides:
            side.fill(args.mib)
        samples: dict[str, dict[str, list[float]]] = {
            s.label: {name: [] for name, _ in ROWS} for s in sides}
        for i in range(args.runs):
            for name, fn in ROWS:
                for side in sides:  # round-robin: load hits both alike
                    t = time.perf_counter()
                    cleanup = fn(side, i)
                    samples[side.label][name].append(time.perf_counter() - t)
                    if cleanup is not None:
                        cleanup()
        labels = [s.label for s in sides]
        print(f"upper layer {args.mib} MiB, {args.runs} runs, median; cove root on "
              f"{_fs('/tmp')}, LXD on {_fs('/var/lib/lxd')} ({platform.node()}, "
              f"{os.cpu_count()} CPUs)")
        print(_table(samples, labels))
        out = REPO / "bench" / "results" / f"lifecycle-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"mib": args.mib, "runs": args.runs, "samples": samples,
                                   "median_ms": {lab: {n: statistics.median(x) * 1e3
                                                       for n, x in rows.items()}
                                                 for lab, rows in samples.items()}},
                                  indent=1))
        print(f"results: {out}")
    finally:
        for side in sides:
            try:
                side.close()
            except Exception as e:  # noqa: BLE001 - report, and clean the others
                print(f"bench: cleaning {side.label} failed: {e}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
