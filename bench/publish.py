"""Publish and image export of an instance with a 100 MiB upper layer: a
private coved against the real LXD's ``dir`` pool, in one run (never
asserted).

Both get busybox and one stopped instance, with ``--mib`` MiB of random
data (files of 1 MiB) written into its own files from the host side (cove:
its upper layer; LXD: its rootfs in the pool), so neither pays for a
container writing. Each of ``--runs`` rounds times, through the same
``cove.client.RestDriver`` calls on both: ``publish`` (LXD: its default
``gzip`` image; also ``--compression none`` through ``lxc publish``), and
``export_image`` into a fresh directory; then the image is deleted.

cove publishes a layer (the upper copied, the parent shared) and hashes the
flattened tarball once; LXD writes the whole rootfs into a compressed
tarball. Results (medians, ratios) are printed and written to
``bench/results/publish.txt``. The LXD side makes only ``covetest-pubbench*``
things (a ``dir`` pool, an image alias, an instance) and removes them.

    sudo .venv/bin/python bench/publish.py [--mib 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from metrics import mkbusybox, wait_socket

from cove.client import RestDriver

LXD_SOCKET = "/var/lib/lxd/unix.socket"
POOL = "covetest-pubbench"
NAME = "covetest-pubbench"
IMAGE = "covetest-pubbench-bb"


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _fill(top: Path, mib: int) -> None:
    data = top / "data"
    data.mkdir()
    for i in range(mib):
        (data / f"f{i}").write_bytes(os.urandom(1 << 20))
    os.sync()


def _lxc(*args: str) -> str:
    return subprocess.run(["lxc", *args], capture_output=True, text=True, check=True,
                          timeout=600).stdout


def _rounds(driver: RestDriver, runs: int, work: Path, tag: str,
            publish: Callable[[], str] | None = None) -> tuple[list[float], list[float]]:
    pub, exp = [], []
    for i in range(runs):
        fps: list[str] = []
        make = publish or (lambda: driver.publish(NAME).fingerprint)
        pub.append(_timed(lambda fps=fps, make=make: fps.append(make())))
        out = work / f"{tag}-{i}"
        out.mkdir()
        exp.append(_timed(lambda out=out, fp=fps[0]: driver.export_image(fp, out)))
        shutil.rmtree(out)
        driver.delete_image(fps[0])
    return pub, exp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="covebench-pub-"))
    work = root / "work"
    work.mkdir()
    log = open(root / "bench-coved.log", "wb")  # noqa: SIM115 - closed below
    coved = subprocess.Popen([sys.executable, "-m", "cove.server.main", "--root", str(root)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
    sock = root / "unix.socket"
    cove = RestDriver(str(sock))
    lxd = RestDriver(LXD_SOCKET) if os.path.exists(LXD_SOCKET) else None
    lxd_made = False
    lines: list[str] = []
    try:
        wait_socket(sock)
        tar = mkbusybox(root / "busybox.tar.gz")
        cove.import_image(tar, aliases=["busybox"])
        cove.create_container(NAME, alias="busybox", autostart=False)
        _fill(root / "instances" / NAME / "upper", args.mib)
        results = {"cove": _rounds(cove, args.runs, work, "cove")}
        if lxd is not None:
            _lxc("storage", "create", POOL, "dir")
            lxd_made = True
            lxd.import_image(tar, aliases=[IMAGE])
            _lxc("init", IMAGE, NAME, "--no-profiles", "-s", POOL)
            _fill(Path(f"/var/lib/lxd/storage-pools/{POOL}/containers/{NAME}/rootfs"),
                  args.mib)
            results["lxd dir (gzip)"] = _rounds(lxd, args.runs, work, "lxd")

            def plain() -> str:
                out = _lxc("publish", NAME, "--compression", "none")
                return out.strip().rsplit(" ", 1)[-1]

            results["lxd dir (none)"] = _rounds(lxd, args.runs, work, "lxdn", plain)
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(root)], capture_output=True,
                            text=True, check=False).stdout.strip()
        lines.append(f"publish and export, upper layer {args.mib} MiB of random data, "
                     f"{args.runs} runs, median; cove root on {fs}; "
                     f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                     "taken on a 2-core machine under load (other test runs): noisy")
        base_pub = statistics.median(results["cove"][0])
        base_exp = statistics.median(results["cove"][1])
        for who, (pub, exp) in results.items():
            p, e = statistics.median(pub), statistics.median(exp)
            lines.append(f"  {who:16s} publish {p * 1e3:9.1f} ms ({p / base_pub:5.2f}x cove)"
                         f"   export {e * 1e3:9.1f} ms ({e / base_exp:5.2f}x cove)")
        print("\n".join(lines))
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        with open(out / "publish.txt", "a") as f:
            f.write("\n".join(lines) + "\n\n")
    finally:
        with contextlib.suppress(Exception):
            cove.delete_container(NAME)
        cove.close()
        if lxd is not None:
            with contextlib.suppress(Exception):
                lxd.delete_container(NAME)
            with contextlib.suppress(Exception):
                lxd.delete_image(lxd.alias(IMAGE).target)
            if lxd_made:
                subprocess.run(["lxc", "storage", "delete", POOL], capture_output=True,
                               check=False)
            lxd.close()
        os.kill(coved.pid, signal.SIGTERM)
        coved.wait(60)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
