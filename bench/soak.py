#!/usr/bin/env python3
"""coved's memory under a steady mix of API calls: does its RSS settle?

Usage: ``sudo .venv/bin/python bench/soak.py [--minutes 60] [--rate 20]``

A private coved (root ``/tmp/covesoak-XXXX``) with the busybox image gets
``--rate`` requests a second for ``--minutes``: lists (recursion 0, 1, 2),
instance and operation reads, launches and deletes of a few containers
(at most ``--keep`` at once), exec without websockets, file pushes and
pulls, config patches, and bad requests (404s and 400s). coved's RSS, its
threads and fds and the operations it lists are sampled every 10 s. The
verdict compares the RSS at the end with the RSS after warm-up (the first
fifth of the run, at most five minutes): the target is growth within 10%.

Results go to ``bench/results/soak-<time>.json``. Everything made here is
removed at the end (instances through coved, then the root). Not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class _Conn(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self._path)
        self.sock = s


class Api:
    def __init__(self, sock: str) -> None:
        self.sock = sock

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = _Conn(self.sock)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, bytes):
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw

    def wait(self, doc: Any) -> None:
        if isinstance(doc, dict) and doc.get("type") == "async":
            op = doc["operation"].rsplit("/", 1)[-1]
            self.call("GET", f"/1.0/operations/{op}/wait?timeout=60")


def _proc(pid: int) -> dict[str, int]:
    out = {"threads": 0, "rss_kb": 0, "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    return out


def _mix(api: Api, names: list[str], keep: int, step: int) -> None:
    """One request of the mix; ``step`` picks which."""
    kind = step % 12
    if kind in (0, 1, 2):
        api.call("GET", f"/1.0/instances?recursion={kind}")
    elif kind == 3 and len(names) < keep:
        name = f"covesoak-{secrets.token_hex(3)}"
        _, doc = api.call("POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "alias": "busybox"}, "start": True})
        api.wait(doc)
        names.append(name)
    elif kind == 4 and names:
        _, doc = api.call("POST", f"/1.0/instances/{names[0]}/exec", {
            "command": ["true"], "wait-for-websocket": False, "record-output": False})
        api.wait(doc)
    elif kind == 5 and names:
        api.call("POST", f"/1.0/instances/{names[-1]}/files?path=/tmp/soak",
                 b"x" * 4096, {"Content-Type": "application/octet-stream"})
        api.call("GET", f"/1.0/instances/{names[-1]}/files?path=/tmp/soak")
    elif kind == 6 and names:
        api.call("PATCH", f"/1.0/instances/{names[0]}",
                 {"config": {"user.soak": str(step)}})
    elif kind == 7:
        api.call("GET", "/1.0/operations?recursion=1")
    elif kind == 8:
        api.call("GET", "/1.0/instances/covesoak-missing")
        api.call("POST", "/1.0/instances", {"name": "bad name!"})
    elif kind == 9 and len(names) >= keep:
        name = names.pop(0)
        _, doc = api.call("PUT", f"/1.0/instances/{name}/state",
                          {"action": "stop", "force": True})
        api.wait(doc)
        _, doc = api.call("DELETE", f"/1.0/instances/{name}")
        api.wait(doc)
    elif kind == 10 and names:
        api.call("GET", f"/1.0/instances/{names[0]}/state")
    else:
        api.call("GET", "/1.0")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=20.0, help="requests per second")
    p.add_argument("--keep", type=int, default=5, help="instances alive at most")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="covesoak-"))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    work = Path(tempfile.mkdtemp(prefix="covesoak-work-"))  # the image and coved's log
    log = open(work / "coved.log", "wb")  # noqa: SIM115 - closed at the end
    coved = subprocess.Popen([sys.executable, "-m", "cove.server.main", "--root", str(root)],
                             stdout=log, stderr=log, env=env, start_new_session=True)
    api = Api(str(root / "unix.socket"))
    names: list[str] = []
    samples: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                api.call("GET", "/1.0")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        spec = importlib.util.spec_from_file_location("mkbusybox", REPO / "scripts/mkbusybox.py")
        assert spec is not None and spec.loader is not None
        mk = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mk)
        tar = mk.build_busybox_image(work / "busybox.tar.gz")
        _, doc = api.call("POST", "/1.0/images", tar.read_bytes(),
                          {"Content-Type": "application/octet-stream"})
        api.wait(doc)
        _, doc = api.call("GET", "/1.0/images")
        fp = doc["metadata"][0].rsplit("/", 1)[-1]
        api.call("POST", "/1.0/images/aliases", {"name": "busybox", "target": fp})
        start = time.monotonic()
        end = start + args.minutes * 60
        warm = start + min(args.minutes * 60 / 5, 300)
        next_sample = start
        step = 0
        while (now := time.monotonic()) < end:
            if now >= next_sample:
                _, ops = api.call("GET", "/1.0/operations")
                count = sum(len(v) for v in (ops.get("metadata") or {}).values())
                samples.append({"t": round(now - start, 1), "operations": count,
                                "warm": now >= warm, **_proc(coved.pid)})
                print(f"{samples[-1]}", flush=True)
                next_sample += 10
            _mix(api, names, args.keep, step)
            step += 1
            time.sleep(max(0.0, start + step / args.rate - time.monotonic()))
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                _, doc = api.call("PUT", f"/1.0/instances/{name}/state",
                                  {"action": "stop", "force": True})
                api.wait(doc)
                api.wait(api.call("DELETE", f"/1.0/instances/{name}")[1])
        coved.terminate()
        coved.wait(30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    after_warm = [s for s in samples if s["warm"]]
    if after_warm:
        base, last = after_warm[0]["rss_kb"], samples[-1]["rss_kb"]
        growth = (last - base) / base * 100
        print(f"RSS after warm-up {base} kB, at the end {last} kB: {growth:+.1f}% "
              f"({'within' if abs(growth) <= 10 else 'OUTSIDE'} the 10% target); "
              f"{step} requests")
    out = REPO / "bench/results" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "requests": step, "samples": samples},
                              indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
