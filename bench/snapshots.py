"""Snapshot, restore and delete of an instance with a 100 MiB upper layer,
timed against a private coved (never asserted).

A coved on a fresh root ``/tmp/covebench-snap-XXXX`` (same filesystem as
/tmp) gets busybox, one running instance writes ``--mib`` MiB of random data
into its upper layer (files of 1 MiB), and each of ``--runs`` rounds times
a snapshot (instance running, so frozen for the copy), a restore (which
stops and restarts it) and a snapshot delete, through ``cove.client``. It
prints the medians and the filesystem of the root, since the copy is a
reflink (O(1)) on btrfs/XFS and a full copy of the upper layer on ext4.

LXD's ``dir`` pool (``lxc snapshot`` rsyncs the whole rootfs) is not run
here yet: with LXD installed, compare by hand with
``lxc launch IMAGE c; lxc exec c -- dd ...; time lxc snapshot c``.

    sudo .venv/bin/python bench/snapshots.py [--mib 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from _coved import private_coved, timed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    name = "covebench-snap"
    with private_coved("snap") as coved:
        c = coved.client
        coved.launch(name)
        script = (f"mkdir /data; i=0; while [ $i -lt {args.mib} ]; do "
                  "head -c 1048576 /dev/urandom > /data/f$i; i=$((i+1)); done; sync")
        res = c.exec(name, ["sh", "-c", script])
        assert res.exit_code == 0, res
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(coved.root)], capture_output=True,
                            text=True, check=False).stdout.strip()
        snap, restore, delete = [], [], []
        for i in range(args.runs):
            snap.append(timed(lambda i=i: c.create_snapshot(name, f"s{i}").wait()))
            restore.append(timed(lambda i=i: c.restore_snapshot(name, f"s{i}").wait()))
            delete.append(timed(lambda i=i: c.delete_snapshot(name, f"s{i}").wait()))
        print(f"root on {fs}, upper layer {args.mib} MiB, {args.runs} runs (median):")
        for what, xs in (("snapshot (running, frozen for the copy)", snap),
                         ("restore (stop, swap, start)", restore),
                         ("delete snapshot", delete)):
            print(f"  {what:42s} {statistics.median(xs) * 1e3:9.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
