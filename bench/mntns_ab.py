#!/usr/bin/env python3
"""Paired A/B of launch latency with N running: two cove source trees on one root.

Usage::

    sudo .venv/bin/python bench/mntns_ab.py --a /tmp/cove-base/src --b src \\
        --n 100,300 --launches 20 --rounds 3 [--fill a|b]

One root (``/tmp/covescale-ab-XXXX``), the busybox image. For each N of
``--n``: instances are launched up to N by the version ``--fill`` (default
``a``: with the base version every running rootfs is in the host's mount
table, as it is when that version runs them); then ``--rounds`` rounds, each
version in turn: its coved is started on the root (containers keep running
across coved restarts), ``--launches`` launches are timed one after the
other and deleted again, its coved is stopped. Also at N=0 first (the idle
median of each version). Recorded per version and N: the launch median and
p95, the host's mount count, and the mount count of a new container's
monitor (conmon) namespace, i.e. the table runc copied. Results go to
``bench/results/mntns-ab-<time>.json``; nothing is asserted. Run on a quiet
machine for figures, or say how loaded it was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import importlib.util

from cove.client import Client


def _artifacts(work: Path) -> Any:
    """The busybox image as bench/run.py builds it."""
    spec = importlib.util.spec_from_file_location("covebench_run", REPO / "bench" / "run.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["covebench_run"] = mod
    spec.loader.exec_module(mod)
    return mod.Artifacts(work, "ab")


def _mounts(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        return sum(1 for _ in f)


class Coved:
    def __init__(self, root: Path, src: str) -> None:
        self.root, self.src = root, src
        self.p: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Client:
        env = dict(os.environ, PYTHONPATH=str(Path(self.src).resolve()))
        self.p = subprocess.Popen([str(REPO / ".venv" / "bin" / "coved"), "--root", str(self.root)],
                                  env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(self.root / f"coved-{Path(self.src).parent.name}.log",
                                              "ab"))
        sock = self.root / "unix.socket"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = Client(str(sock))
                c.server()
                return c
            except Exception:  # noqa: BLE001 - not up yet, whatever it says
                time.sleep(0.1)
        raise RuntimeError("coved did not answer")

    def __exit__(self, *exc: object) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)
        (self.root / "unix.socket").unlink(missing_ok=True)


def _launch(c: Client, name: str) -> float:
    t = time.perf_counter()
    op = c.create_instance(name, {"type": "image", "alias": "busybox"},
                           devices={"eth0": {"type": "none"}}, start=True)
    op.wait()
    op.raise_for_error()
    return (time.perf_counter() - t) * 1000


def _conmon_mounts(root: Path, name: str) -> int | None:
    try:
        return _mounts(int((root / "run" / "pids" / f"{name}.conmon").read_text()))
    except (OSError, ValueError):
        return None


def _running(c: Client) -> list[str]:
    return [i["name"] for i in c.instances(1) if isinstance(i, dict)]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True, help="src/ of version a (the base)")
    p.add_argument("--b", required=True, help="src/ of version b (the change)")
    p.add_argument("--n", default="100,300")
    p.add_argument("--launches", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fill", choices=("a", "b"), default="a")
    p.add_argument("--note", default="")
    args = p.parse_args()
    srcs = {"a": args.a, "b": args.b}
    root = Path(tempfile.mkdtemp(prefix="covescale-ab-", dir="/tmp"))
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "note": args.note, "srcs": srcs, "fill": args.fill,
                           "loadavg_start": os.getloadavg(), "steps": []}
    res_path = REPO / "bench" / "results" / f"mntns-ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    res_path.parent.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="covescale-ab-art-", dir="/tmp"))
    art = _artifacts(work)
    seq = 0
    try:
        with Coved(root, srcs[args.fill]) as c:
            c.import_image(str(art.unified), aliases=["busybox"])
        for n in [0, *(int(x) for x in args.n.split(","))]:
            with Coved(root, srcs[args.fill]) as c:
                have = len(_running(c))
                while have < n:
                    seq += 1
                    _launch(c, f"f{seq}")
                    have += 1
            step: dict[str, Any] = {"n": n, "loadavg": os.getloadavg(), "rounds": []}
            for r in range(args.rounds):
                for v in ("a", "b"):
                    with Coved(root, srcs[v]) as c:
                        names = []
                        lat = []
                        for _ in range(args.launches):
                            seq += 1
                            names.append(f"t{seq}")
                            lat.append(_launch(c, names[-1]))
                        rec = {"version": v, "round": r, "median": round(statistics.median(lat), 2),
                               "p95": round(sorted(lat)[int(0.95 * (len(lat) - 1))], 2),
                               "host_mounts": _mounts(),
                               "conmon_ns_mounts": _conmon_mounts(root, names[-1]),
                               "samples": [round(x, 2) for x in lat]}
                        for nm in names:
                            c.change_state(nm, "stop", force=True).wait()
                            c.delete_instance(nm).wait()
                        step["rounds"].append(rec)
                        print(json.dumps({k: rec[k] for k in rec if k != "samples"} | {"n": n}),
                              flush=True)
            out["steps"].append(step)
            res_path.write_text(json.dumps(out, indent=1))
    finally:
        out["loadavg_end"] = os.getloadavg()
        res_path.write_text(json.dumps(out, indent=1))
        shutil.rmtree(work, ignore_errors=True)
        print(f"results: {res_path}", flush=True)
        cleanup(root, srcs["b"])


def cleanup(root: Path, src: str) -> None:
    """Every instance deleted, the image too, coved stopped, the root removed."""
    with Coved(root, src) as c:
        for name in _running(c):
            c.change_state(name, "stop", force=True).wait()
            c.delete_instance(name).wait()
        for img in c.images():
            c.delete_image(img["fingerprint"] if isinstance(img, dict) else img.rsplit("/", 1)[1]
                           ).wait()
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
