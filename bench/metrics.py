#!/usr/bin/env python3
"""What ``GET /1.0/metrics`` costs as running instances grow.

Usage: ``sudo .venv/bin/python bench/metrics.py [--levels 0,100,300] [--runs 3]``

A coved on a fresh root ``/tmp/covebench-metrics-XXXX`` gets busybox
containers with no NIC (``--network none``, one ``sleep`` each) up to each
level; at each level it times, medians of ``--runs``:

* ``scrape, cold``: ``GET /1.0/metrics`` over the unix socket when the
  engine's 8 s cache has expired (the bench waits it out first): what a
  Prometheus scraping every 15 s or more pays each time;
* ``scrape, cached``: the same request again at once (served from the cache);
* ``read only``: in this process, ``read_container_metrics`` of every running
  container plus building and rendering the samples, without HTTP or the
  store: the per-instance cost itself.

It prints ms in total and per instance, and the size of the text, and
extrapolates to 1,000 instances linearly from the highest level (the
per-instance cost is flat: a fixed set of files per container). Everything is
removed at the end (instances through coved, then coved, then the root).
Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cove.api import MetricSet
from cove.client import Client
from cove.engine._metrics import instance_samples
from cove.engine._runs import Paths
from cove.runtime.cgroup_metrics import partitions, read_container_metrics


def mkbusybox(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("mkbusybox", REPO / "scripts" / "mkbusybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return Path(mod.build_busybox_image(out))


def wait_socket(sock: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            Client(str(sock)).server()
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    raise SystemExit(f"coved did not answer on {sock}")


def scrape(c: Client) -> tuple[float, int]:
    t = time.perf_counter()
    r = c.raw("GET", "/1.0/metrics")
    dt = time.perf_counter() - t
    assert r.status == 200, r.body[:200]
    return dt, len(r.body)


def read_only(root: Path, pids: dict[str, int]) -> float:
    paths = Paths(root)
    t = time.perf_counter()
    parts = partitions()
    out = MetricSet()
    for name, pid in pids.items():
        m = read_container_metrics(paths.cgroups_path(name), pid, parts)
        instance_samples(out, {"name": name, "project": "default", "type": "container"}, m,
                         host_memory=1 << 34, fs=("/dev/x", "ext4", 1, 1, 1))
    out.render()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="0,100,300")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    root = Path(tempfile.mkdtemp(prefix="covebench-metrics-"))
    log = open(root / "bench-coved.log", "wb")  # noqa: SIM115 - closed below
    coved = subprocess.Popen([sys.executable, "-m", "cove.server.main", "--root", str(root)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
    sock = root / "unix.socket"
    c = Client(str(sock))
    names: list[str] = []
    rows: list[tuple[int, float, float, float, int]] = []
    try:
        wait_socket(sock)
        tar = mkbusybox(root / "busybox.tar.gz")
        c.import_image(str(tar), aliases=["busybox"])
        tar.unlink()

        def launch(i: int) -> str:
            name = f"covebench-m{i:04d}"
            cc = Client(str(sock))  # one connection per thread
            try:
                r = cc.raw("POST", "/1.0/instances", {
                    "name": name, "source": {"type": "image", "alias": "busybox"},
                    "config": {"cove.cmd": "sleep 1000000"},
                    "devices": {"eth0": {"type": "none"}}, "start": True})
                op = r.json()["operation"].rsplit("/", 1)[-1]
                cc.wait_operation(op, 120)
            finally:
                cc.close()
            return name

        for level in levels:
            with ThreadPoolExecutor(4) as pool:
                names += list(pool.map(launch, range(len(names), level)))
            deadline = time.monotonic() + 300
            while True:
                running = {i["name"]: i["state"]["pid"] for i in c.instances(recursion=2)
                           if i.get("status") == "Running" and i.get("state")}
                if len(running) >= level or time.monotonic() > deadline:
                    break
                time.sleep(1)
            cold, warm, direct = [], [], []
            size = 0
            for _ in range(args.runs):
                time.sleep(8.3)  # let the engine's cache expire
                dt, size = scrape(c)
                cold.append(dt)
                warm.append(scrape(c)[0])
                direct.append(read_only(root, running))
            row = (len(running), statistics.median(cold), statistics.median(warm),
                   statistics.median(direct), size)
            rows.append(row)
            n = max(row[0], 1)
            print(f"{row[0]:5d} running: scrape cold {row[1] * 1e3:8.1f} ms "
                  f"({row[1] * 1e3 / n:.2f} ms/instance), cached {row[2] * 1e3:6.1f} ms, "
                  f"read only {row[3] * 1e3:8.1f} ms ({row[3] * 1e3 / n:.2f} ms/instance), "
                  f"{row[4] / 1024:.0f} KiB", flush=True)
        top = rows[-1]
        if top[0]:
            per = top[1] / top[0]
            print(f"extrapolated to 1000 instances: scrape cold ~{per * 1000:.1f} s, "
                  f"text ~{top[4] / top[0] * 1000 / 1024 / 1024:.1f} MiB")
    finally:
        def remove(name: str) -> None:
            cc = Client(str(sock))
            try:
                for method, path, body in (
                        ("PUT", f"/1.0/instances/{name}/state",
                         {"action": "stop", "force": True}),
                        ("DELETE", f"/1.0/instances/{name}", None)):
                    r = cc.raw(method, path, body)
                    if r.status == 202:
                        with contextlib.suppress(Exception):
                            cc.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 60)
            finally:
                cc.close()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(remove, names))
        c.close()
        os.kill(coved.pid, signal.SIGTERM)
        coved.wait(60)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
