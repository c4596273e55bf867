"""The non-NAT proxy device side by side: cove's forwarder and LXD's forkproxy.

    sudo .venv/bin/python bench/proxy.py [--mib 1024] [--rounds 2000] [--no-lxd]

Both get the same device, ``listen=tcp:127.0.0.1:PORT connect=tcp:127.0.0.1:9000``,
on a busybox container; the server at 127.0.0.1:9000 *inside* each container is
this script itself, started in the container's network namespace with
``nsenter -n`` (busybox's own servers copy 4 KiB at a time and would be what
is measured). A "direct" row is the same client and server with no proxy,
on the host's loopback. Measured, per target:

- upload: the client sends N MiB, the server counts them and answers the
  count (MB/s from the first byte to the answer);
- download: the server sends N MiB, the client counts them;
- round trip: 1-byte request, 1-byte answer, on one connection (median and
  99th percentile over --rounds);
- connect: a new connection and one round trip on it (median over 200).

LXD is a private one (``LXD_DIR`` in a temporary directory: its own socket,
a ``dir`` pool, no network), so a conformance run's LXD on the same machine
is never reused or stopped by the bench; cove runs as a real coved on a
fresh root (``tests/integration/covetest.py``). Nothing is asserted; the numbers are
printed and written to ``bench/results/proxy-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "integration")]

CHUNK = 1 << 20


# -- the server (run in a container's netns by nsenter) ------------------------------------
def serve(port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=_session, args=(c,), daemon=True).start()


def _session(c: socket.socket) -> None:
    buf = bytearray(CHUNK)
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = c.recv(1)
        if mode == b"U":  # upload: "U<n>\n" then n bytes; answer the count
            head = b""
            while b"\n" not in head:
                head += c.recv(1)
            want, total = int(head), 0
            while total < want and (n := c.recv_into(buf)):
                total += n
            c.sendall(str(total).encode())
        elif mode == b"D":  # download: the client says how many bytes
            want = int(c.recv(32).split(b"\n")[0])
            data = bytes(CHUNK)
            while want > 0:
                n = min(want, CHUNK)
                c.sendall(data[:n])
                want -= n
        elif mode == b"P":  # ping-pong
            while b := c.recv(1):
                c.sendall(b)


# -- the client ------------------------------------------------------------------------
def upload(port: int, mib: int) -> float:
    data = bytes(CHUNK)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        t = time.perf_counter()
        # no half-close: LXD's forkproxy closes both ways when one ends
        s.sendall(b"U" + f"{mib * CHUNK}\n".encode())
        for _ in range(mib):
            s.sendall(data)
        got = int(s.recv(64))
        dt = time.perf_counter() - t
    assert got == mib * CHUNK, (got, mib)
    return mib * CHUNK / dt / 1e6


def download(port: int, mib: int) -> float:
    buf = bytearray(CHUNK)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        t = time.perf_counter()
        s.sendall(b"D" + f"{mib * CHUNK}\n".encode())
        total = 0
        while total < mib * CHUNK:
            n = s.recv_into(buf)
            if not n:
                break
            total += n
        dt = time.perf_counter() - t
    assert total == mib * CHUNK, (total, mib)
    return total / dt / 1e6


def round_trips(port: int, rounds: int) -> tuple[float, float]:
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"P")
        for _ in range(rounds):
            t = time.perf_counter()
            s.sendall(b"x")
            s.recv(1)
            times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


def connects(port: int, n: int = 200) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"Px")
            s.recv(1)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def measure(port: int, mib: int, rounds: int) -> dict[str, float]:
    upload(port, 16)  # warm up
    rtt, p99 = round_trips(port, rounds)
    return {"upload_MBps": max(upload(port, mib) for _ in range(2)),
            "download_MBps": max(download(port, mib) for _ in range(2)),
            "rtt_median_us": rtt, "rtt_p99_us": p99, "connect_rtt_us": connects(port)}


# -- targets -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(netns_pid: int | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--serve", "9000" if netns_pid else str(DIRECT)]
    if netns_pid:
        argv = ["nsenter", "-t", str(netns_pid), "-n", *argv]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
    return p


DIRECT = free_port()


def bench_cove(mib: int, rounds: int, busybox: Path, work: Path) -> dict[str, Any]:
    from conftest import CovedPool

    pool = CovedPool(work)
    server = None
    try:
        d = pool.new("benchproxy")
        d.api.import_image(busybox, "busybox")
        port = free_port()
        d.api.made.append("covetest-bench-proxy")
        d.api.run("POST", "/1.0/instances", {
            "name": "covetest-bench-proxy", "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": "sleep 100000"}, "start": True, "devices": {
                "p": {"type": "proxy", "listen": f"tcp:127.0.0.1:{port}",
                      "connect": "tcp:127.0.0.1:9000"}}})
        pid = int(d.api.state("covetest-bench-proxy")["pid"])
        server = start_server(pid)
        out = measure(port, mib, rounds)
        fwd = [p for p in os.listdir("/proc") if p.isdigit() and b"--cove-proxy=" in
               Path(f"/proc/{p}/cmdline").read_bytes()]
        out["forwarder_rss_kB"] = sum(_rss(int(p)) for p in fwd)
        return out
    finally:
        if server is not None:
            server.kill()
            server.wait()
        pool.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PrivateLxd:
    """An LXD of the bench's own: ``LXD_DIR`` in a temporary directory, so it
    has its own socket and nothing of it is seen by, or touches, the LXD of
    a conformance run on the same machine (which owns /var/lib/lxd); a
    ``dir`` pool in that directory, no network (a non-NAT proxy needs none)."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "lxd"
        self.dir.mkdir(mode=0o711)
        (work / "lxdconf").mkdir()
        self.env = dict(os.environ, LXD_DIR=str(self.dir), LXD_CONF=str(work / "lxdconf"))
        self.proc: subprocess.Popen[bytes] | None = None

    def lxc(self, *args: str, check: bool = True) -> bytes:
        p = subprocess.run(["lxc", *args], env=self.env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=300, check=False)
        if check and p.returncode != 0:
            raise RuntimeError(f"lxc {' '.join(args)}: {p.stderr.decode().strip()}")
        return p.stdout

    def start(self, busybox: Path) -> None:
        self.proc = subprocess.Popen(["lxd", "--group", "root", "--logfile",
                                      str(self.dir / "lxd.log")], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        subprocess.run(["lxd", "waitready", "--timeout", "90"], env=self.env, check=True,
                       timeout=120)
        self.lxc("storage", "create", "cvbench", "dir")
        self.lxc("profile", "device", "add", "default", "root", "disk", "path=/",
                 "pool=cvbench")
        self.lxc("image", "import", str(busybox), "--alias", "cvbench-busybox")

    def stop(self) -> None:
        if self.proc is None:
            return
        subprocess.run(["lxd", "shutdown", "--timeout", "60"], env=self.env,
                       capture_output=True, timeout=90, check=False)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        # what LXD left mounted under its directory goes before the directory does
        prefix = str(self.dir) + "/"
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)


def bench_lxd(mib: int, rounds: int, busybox: Path, work: Path) -> dict[str, Any]:
    lxd = PrivateLxd(work)
    name = "cvbench-proxy"
    server = None
    try:
        lxd.start(busybox)
        port = free_port()
        lxd.lxc("launch", "cvbench-busybox", name)
        # with no NIC LXD leaves the loopback down (cove brings it up always)
        lxd.lxc("exec", name, "--", "ip", "link", "set", "lo", "up")
        lxd.lxc("config", "device", "add", name, "p", "proxy",
                f"listen=tcp:127.0.0.1:{port}", "connect=tcp:127.0.0.1:9000")
        state = json.loads(lxd.lxc("query", f"/1.0/instances/{name}/state"))
        server = start_server(int(state["pid"]))
        out = measure(port, mib, rounds)
        mine = f"tcp:127.0.0.1:{port}".encode()
        fwd = [p for p in os.listdir("/proc") if p.isdigit() and mine in
               Path(f"/proc/{p}/cmdline").read_bytes()]
        out["forwarder_rss_kB"] = sum(_rss(int(p)) for p in fwd)
        out["version"] = "LXD " + json.loads(lxd.lxc("query", "/1.0"))["environment"][
            "server_version"]
        return out
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return {"skipped": f"LXD: {e}"}
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if lxd.proc is not None:
            lxd.lxc("delete", "--force", name, check=False)
            lxd.lxc("image", "delete", "cvbench-busybox", check=False)
            lxd.lxc("profile", "device", "remove", "default", "root", check=False)
            lxd.lxc("storage", "delete", "cvbench", check=False)
        lxd.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", type=int)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--no-lxd", action="store_true")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    import importlib.util
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="covetest-benchproxy-"))
    work.chmod(0o711)  # an unprivileged LXD container walks to its rootfs through it
    try:
        spec = importlib.util.spec_from_file_location("mkbusybox",
                                                      REPO / "scripts" / "mkbusybox.py")
        assert spec and spec.loader
        mk = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mk)
        busybox = mk.build_busybox_image(work / "busybox.tar.gz")
        results: dict[str, Any] = {"mib": args.mib, "rounds": args.rounds,
                                   "load": os.getloadavg()[0]}
        direct = start_server(None)
        try:
            results["direct"] = measure(DIRECT, args.mib, args.rounds)
        finally:
            direct.kill()
            direct.wait()
        results["cove"] = bench_cove(args.mib, args.rounds, busybox, work)
        if not args.no_lxd:
            results["lxd"] = bench_lxd(args.mib, args.rounds, busybox, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"proxy-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
