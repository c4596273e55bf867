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
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from _coved import private_coved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--tcp", action="store_true", help="a tcp: probe instead of a command")
    args = ap.parse_args()
    db, top = "covetest-bench-db", "covetest-bench-top"
    mark = "cat /proc/uptime > /tmp/ready"
    if args.tcp:
        db_cmd = f"sh -c 'rm -f /tmp/ready; sleep {args.delay}; {mark}; while true; do nc -l -p 7000 </dev/null; done'"
        probe = "tcp:7000"
    else:
        db_cmd = f"sh -c 'rm -f /tmp/ready; sleep {args.delay}; {mark}; exec sleep 100000'"
        probe = "test -f /tmp/ready"
    with private_coved("ready") as coved:
        c = coved.client
        coved.launch(db, {"cove.cmd": db_cmd, "cove.ready": probe}, start=False, nic=True)
        coved.launch(top, {"cove.cmd": "sh -c 'cat /proc/uptime > /tmp/t0; exec sleep 100000'",
                           "cove.depends": db}, start=False, nic=True)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
