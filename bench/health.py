"""coved's CPU with N instances whose health coved checks every 10 s
(never asserted; issue 11).

A coved on a fresh root ``/tmp/covetest-bench-health-XXXX`` gets busybox and
``--count`` running instances (no NIC, ``sleep``); coved's CPU (its own
utime+stime, and with its reaped children: the probe helpers) is read from
``/proc/PID/stat`` over ``--window`` seconds twice: first with no health
check, then with ``cove.health`` set on every instance (``--probe``,
default the command ``true`` run in the container through the exec
machinery, every ``--interval``). Everything made is removed at the end.

    sudo .venv/bin/python bench/health.py [--count 100] [--interval 10s] [--window 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from metrics import mkbusybox, wait_socket

from cove.client import Client

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> tuple[float, float]:
    """(own, own + reaped children) CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (utime + stime + cutime + cstime) / TICK


def _measure(pid: int, window: float) -> tuple[float, float]:
    t0, (a0, b0) = time.monotonic(), _cpu(pid)
    time.sleep(window)
    t1, (a1, b1) = time.monotonic(), _cpu(pid)
    return 100 * (a1 - a0) / (t1 - t0), 100 * (b1 - b0) / (t1 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--probe", default="true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="covetest-bench-health-"))
    log = open(root / "bench-coved.log", "wb")  # noqa: SIM115 - closed below
    coved = subprocess.Popen([sys.executable, "-m", "cove.server.main", "--root", str(root)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
    sock = root / "unix.socket"
    c = Client(str(sock))
    names = [f"covetest-h{i:03d}" for i in range(args.count)]
    made: list[str] = []
    try:
        wait_socket(sock)
        tar = mkbusybox(root / "busybox.tar.gz")
        c.import_image(str(tar), aliases=["busybox"])
        tar.unlink()

        def launch(name: str) -> None:
            r = c.raw("POST", "/1.0/instances", {
                "name": name, "source": {"type": "image", "alias": "busybox"},
                "config": {"cove.cmd": "sleep 1000000"},
                "devices": {"eth0": {"type": "none"}}, "start": True})
            c.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 300)
            made.append(name)

        t = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(launch, names))
        print(f"{len(made)} instances running after {time.monotonic() - t:.0f}s")
        time.sleep(5)
        base = _measure(coved.pid, args.window)
        for name in names:
            c.raw("PATCH", f"/1.0/instances/{name}", {"config": {
                "cove.health": args.probe, "cove.health.interval": args.interval}})
        time.sleep(2)
        checked = _measure(coved.pid, args.window)
        healthy = sum(1 for n in names
                      if (c.raw("GET", f"/1.0/instances/{n}/state").json()["metadata"]
                          .get("cove", {}).get("health", {}).get("status")) == "healthy")
        print(f"coved CPU over {args.window:.0f}s, {args.count} instances "
              f"(own / with reaped probe helpers):")
        print(f"  no health checks:           {base[0]:5.1f}% / {base[1]:5.1f}%")
        print(f"  cove.health={args.probe!r} every {args.interval}: "
              f"{checked[0]:5.1f}% / {checked[1]:5.1f}%   ({healthy} healthy)")
    finally:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: c.raw("PUT", f"/1.0/instances/{n}/state?wait=60",
                                          {"action": "stop", "force": True}), made))
            list(pool.map(lambda n: c.raw("DELETE", f"/1.0/instances/{n}?wait=60"), made))
        coved.send_signal(signal.SIGTERM)
        try:
            coved.wait(30)
        except subprocess.TimeoutExpired:
            coved.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
