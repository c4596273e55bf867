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
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from _coved import cpu_seconds, private_coved


def _measure(pid: int, window: float) -> tuple[float, float]:
    """coved's CPU in percent over ``window``: (own, own + reaped children)."""
    t0, a0, b0 = time.monotonic(), cpu_seconds(pid, children=False), cpu_seconds(pid)
    time.sleep(window)
    t1, a1, b1 = time.monotonic(), cpu_seconds(pid, children=False), cpu_seconds(pid)
    return 100 * (a1 - a0) / (t1 - t0), 100 * (b1 - b0) / (t1 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--probe", default="true")
    args = ap.parse_args()
    names = [f"covetest-h{i:03d}" for i in range(args.count)]
    with private_coved("health") as coved:
        c = coved.client
        try:
            t = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(coved.launch, names))
            print(f"{len(coved.made)} instances running after {time.monotonic() - t:.0f}s")
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
        finally:  # in parallel: a hundred one by one takes minutes
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(coved.remove, list(coved.made)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
