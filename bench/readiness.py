"""Readiness latency of a dependency-ordered start (never asserted; issue 11):
from the moment a dependency becomes ready to the moment its dependent's
command runs.

A coved on a fresh root ``/tmp/covetest-bench-ready-XXXX`` gets busybox and
two instances: ``db`` writes ``/tmp/ready`` ``--delay`` seconds after it
starts (``cove.ready`` is ``test -f /tmp/ready``, a command run through the
exec machinery, or ``--tcp``: ``tcp:7000``, busybox ``nc`` listening from
then on, probed from the host at the instance's address) and ``top`` depends on it. Each of ``--runs`` rounds starts
``top`` from cold and reads both moments from the host's uptime, which the
containers see unchanged (``/proc/uptime`` is not namespaced). Prints the
median and worst latency and the whole start's time. Everything made is
removed at the end.

    sudo .venv/bin/python bench/readiness.py [--runs 10] [--delay 1] [--tcp]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from metrics import mkbusybox, wait_socket

from cove.client import Client


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--tcp", action="store_true", help="a tcp: probe instead of a command")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="covetest-bench-ready-"))
    log = open(root / "bench-coved.log", "wb")  # noqa: SIM115 - closed below
    coved = subprocess.Popen([sys.executable, "-m", "cove.server.main", "--root", str(root)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
    sock = root / "unix.socket"
    c = Client(str(sock))
    db, top = "covetest-bench-db", "covetest-bench-top"
    made: list[str] = []
    mark = "cat /proc/uptime > /tmp/ready"
    if args.tcp:
        db_cmd = f"sh -c 'rm -f /tmp/ready; sleep {args.delay}; {mark}; while true; do nc -l -p 7000 </dev/null; done'"
        probe = "tcp:7000"
    else:
        db_cmd = f"sh -c 'rm -f /tmp/ready; sleep {args.delay}; {mark}; exec sleep 100000'"
        probe = "test -f /tmp/ready"
    try:
        wait_socket(sock)
        tar = mkbusybox(root / "busybox.tar.gz")
        c.import_image(str(tar), aliases=["busybox"])
        tar.unlink()
        for name, config in ((db, {"cove.cmd": db_cmd, "cove.ready": probe}),
                             (top, {"cove.cmd": "sh -c 'cat /proc/uptime > /tmp/t0; "
                                               "exec sleep 100000'", "cove.depends": db})):
            r = c.raw("POST", "/1.0/instances", {
                "name": name, "source": {"type": "image", "alias": "busybox"},
                "config": config})
            c.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 120)
            made.append(name)
        latency, whole = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            c.change_state(top, "start").wait()
            whole.append(time.perf_counter() - t)
            ready = float(c.exec(db, ["cat", "/tmp/ready"]).stdout.split()[0])
            started = float(c.exec(top, ["cat", "/tmp/t0"]).stdout.split()[0])
            latency.append(started - ready)
            c.change_state(db, "stop", force=True).wait()  # top first
        print(f"probe {probe!r}, ready {args.delay:g}s after start, {args.runs} runs:")
        print(f"  readiness latency (ready -> dependent's command runs): median "
              f"{statistics.median(latency) * 1000:.0f} ms, worst {max(latency) * 1000:.0f} ms")
        print(f"  whole ordered start: median {statistics.median(whole):.2f}s")
    finally:
        for name in reversed(made):
            c.raw("PUT", f"/1.0/instances/{name}/state?wait=60",
                  {"action": "stop", "force": True})
            c.raw("DELETE", f"/1.0/instances/{name}?wait=60")
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
