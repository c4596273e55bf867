#!/usr/bin/env python3
"""Paired A/B of ``GET /1.0/instances?recursion=2`` with N running: two cove
source trees on one root, alternated.

Usage::

    sudo .venv/bin/python bench/list_ab.py --a /tmp/cove-base/src --b src \\
        --n 300 --reps 20 --rounds 3 [--keep] [--root DIR]

One root (``/tmp/covescale-lab-XXXX``, or ``--root`` to go on with one left
by ``--keep``), the busybox image, N instances without a NIC launched one
after the other by version b. Then ``--rounds`` rounds, each version in turn:
its coved is started on the root (containers keep running across coved
restarts), two warm-up lists, then ``--reps`` timed requests back to back
through ``cove.client``'s transport (the body read whole, not decoded, as
``bench/scale.py`` times it), and coved's CPU (utime + stime) over them, and the bench's own (the
client reading the body).
Recorded per round and version: wall median and min, coved's CPU per
request, the body's size and a hash of it (the two versions must send the
same bytes but for the counters, which are masked for it: the bench
says so if they do not), and the load average. Then
everything is deleted (unless ``--keep``). Results go to
``bench/results/list-ab-<time>.json``; nothing is asserted. Run on a quiet
machine for figures, or say how loaded it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))

from mntns_ab import Coved, _artifacts, _launch, _running, cleanup

from cove.client import Client

PATH = "/1.0/instances?recursion=2"
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _body(c: Client, path: str) -> bytes:
    return bytes(c.raw("GET", path).body)


# the counters move between two requests: masked for comparing the bodies
_COUNTERS = re.compile(rb'"(usage|usage_peak|processes)": [0-9]+')


def _shape(body: bytes) -> str:
    return hashlib.sha256(_COUNTERS.sub(rb'"\1": 0', body)).hexdigest()[:16]


def _round(c: Client, pid: int, reps: int, path: str) -> dict[str, Any]:
    for _ in range(2):
        body = _body(c, path)
    lat = []
    cpu0, mine0 = _cpu_s(pid), time.process_time()
    for _ in range(reps):
        t = time.perf_counter()
        body = _body(c, path)
        lat.append((time.perf_counter() - t) * 1000)
    cpu = (_cpu_s(pid) - cpu0) * 1000 / reps
    client = (time.process_time() - mine0) * 1000 / reps
    return {"median": round(statistics.median(lat), 2), "min": round(min(lat), 2),
            "coved_cpu_ms": round(cpu, 1),
            "client_cpu_ms": round(client, 2), "bytes": len(body),
            "shape": _shape(body), "loadavg": os.getloadavg(),
            "samples": [round(x, 2) for x in lat]}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True, help="src/ of version a (the base)")
    p.add_argument("--b", required=True, help="src/ of version b (the change)")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--path", default=PATH)
    p.add_argument("--root", help="go on with a root left by --keep")
    p.add_argument("--keep", action="store_true", help="leave the root and its instances")
    p.add_argument("--note", default="")
    args = p.parse_args()
    srcs = {"a": args.a, "b": args.b}
    root = Path(args.root) if args.root else Path(
        tempfile.mkdtemp(prefix="covescale-lab-", dir="/tmp"))
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "note": args.note, "srcs": srcs, "n": args.n, "path": args.path,
                           "loadavg_start": os.getloadavg(), "rounds": []}
    res_path = REPO / "bench" / "results" / f"list-ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    res_path.parent.mkdir(exist_ok=True)
    try:
        with Coved(root, srcs["b"]) as c:
            if not c.images():
                work = Path(tempfile.mkdtemp(prefix="covescale-lab-art-", dir="/tmp"))
                try:
                    c.import_image(str(_artifacts(work).unified), aliases=["busybox"])
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            have = len(_running(c))
            seq = have
            while have < args.n:
                seq += 1
                _launch(c, f"l{seq}")
                have += 1
        for r in range(args.rounds):
            for v in ("a", "b"):
                coved = Coved(root, srcs[v])
                with coved as c:
                    assert coved.p is not None
                    rec = {"version": v, "round": r, **_round(c, coved.p.pid, args.reps,
                                                              args.path)}
                out["rounds"].append(rec)
                print(json.dumps({k: rec[k] for k in rec if k != "samples"}), flush=True)
                res_path.write_text(json.dumps(out, indent=1))
        if len({rec["shape"] for rec in out["rounds"]}) > 1:
            print("the two versions sent different bodies (or the state changed)", flush=True)
    finally:
        out["loadavg_end"] = os.getloadavg()
        res_path.write_text(json.dumps(out, indent=1))
        print(f"results: {res_path}", flush=True)
        if not args.keep:
            cleanup(root, srcs["b"])
        else:
            print(f"kept: {root}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
