"""Export and import of an instance with a 100 MiB upper layer, cove against
LXD's ``dir`` pool in one run, timed (never asserted).

cove: a private coved on a fresh root ``/tmp/covebench-bk-XXXX`` gets
busybox; one running instance writes ``--mib`` MiB of random data (files of
1 MiB, so gzip cannot shrink them) into its upper layer. LXD: the running
daemon (``/var/lib/lxd/unix.socket``), the same image (imported unless there,
then removed), an instance ``covetest-bench-bk`` on a ``dir``
pool (``covetest`` when it exists, else a ``covetest-bench`` pool made and
removed here), the same data. Both are driven by the same client code
(``cove.client._backups``, what ``cove export``/``cove import`` run, the
calls ``lxc export``/``lxc import`` make): each of ``--runs`` rounds times

* export: make a backup (gzip), download it to a file, delete it;
* import: upload that file as a new instance and wait; then it is deleted.

Wall time is what a user waits on a loaded machine; CPU seconds (the
daemon's and its reaped children's: tar, gzip, cp) are what the work costs.
Medians, ratios cove/LXD and every sample go to
``bench/results/backups-<time>.json``. Names in LXD are ``covetest-bench*``
and everything made there is removed.

    sudo .venv/bin/python bench/backups.py [--mib 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from _coved import cpu_seconds, private_coved, timed
from metrics import mkbusybox

from cove.client import Client, _backups
from cove.model.errors import CoveError, InternalError, NotFound

LXD_SOCKET = "/var/lib/lxd/unix.socket"
NAME = "covetest-bench-bk"
COPY = "covetest-bench-bkc"


def _fill(run: Callable[[str], None], mib: int) -> None:
    run(f"mkdir -p /data; i=0; while [ $i -lt {mib} ]; do "
        "head -c 1048576 /dev/urandom > /data/f$i; i=$((i+1)); done; sync")


def _delete(c: Client, name: str) -> None:
    with contextlib.suppress(NotFound):
        with contextlib.suppress(CoveError):
            c.change_state(name, "stop", force=True).wait(60)
        c.delete_instance(name).wait(120)


def _rounds(c: Client, runs: int, work: Path, pid: int, pool: str = ""
            ) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"export": [], "import": [], "size": [],
                                   "export_cpu": [], "import_cpu": []}
    for _ in range(runs):
        f = work / "bench-backup.tar.gz"
        with open(f, "wb") as fh:
            cpu = cpu_seconds(pid)
            out["export"].append(timed(lambda fh=fh: _backups.export_instance(c, NAME, fh)))
            out["export_cpu"].append(cpu_seconds(pid) - cpu)
        out["size"].append(f.stat().st_size)
        cpu = cpu_seconds(pid)
        out["import"].append(timed(lambda f=f: _backups.import_backup(
            c, str(f), COPY, pool).wait(600)))
        out["import_cpu"].append(cpu_seconds(pid) - cpu)
        _delete(c, COPY)
        f.unlink()
    return out


def _cove(args: argparse.Namespace) -> dict[str, list[float]]:
    with private_coved("bk") as coved:
        coved.launch(NAME)

        def run(script: str) -> None:
            res = coved.client.exec(NAME, ["sh", "-c", script])
            assert res.exit_code == 0, res
        _fill(run, args.mib)
        try:
            return _rounds(coved.client, args.runs, coved.root, coved.pid)
        finally:
            coved.remove(COPY)


def _lxc(*args: str) -> None:
    p = subprocess.run(["lxc", *args], capture_output=True, timeout=600, check=False,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise InternalError(f"lxc {' '.join(args)}: {p.stderr.decode(errors='replace')}")


def _lxd(args: argparse.Namespace) -> dict[str, list[float]] | str:
    if not Path(LXD_SOCKET).exists():
        return "no LXD running (no /var/lib/lxd/unix.socket)"
    c = Client(LXD_SOCKET)
    pools = {p["name"] for p in c.raw("GET", "/1.0/storage-pools?recursion=1").json()
             ["metadata"]}
    pool, made_pool = "covetest", False
    work = Path(tempfile.mkdtemp(prefix="covebench-bk-lxd-"))
    fp = ""
    try:
        if pool not in pools:
            pool, made_pool = "covetest-bench", True
            c.raw("POST", "/1.0/storage-pools", {"name": pool, "driver": "dir"})
        tar = mkbusybox(work / "busybox.tar.gz")
        have = hashlib.sha256(tar.read_bytes()).hexdigest()
        if c.raw("GET", f"/1.0/images/{have}").status == 404:
            fp = c.import_image(str(tar))  # ours: deleted at the end
        r = c.raw("POST", "/1.0/instances", {
            "name": NAME, "source": {"type": "image", "fingerprint": have}, "profiles": [],
            "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}})
        c.wait_operation(r.json()["operation"].rsplit("/", 1)[-1], 300)
        c.change_state(NAME, "start").wait(120)  # LXD 5.0 has no "start" on create
        for _ in range(60):  # its init may still be setting up /dev
            if subprocess.run(["lxc", "exec", NAME, "--", "test", "-c", "/dev/urandom"],
                              capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.5)
        _fill(lambda script: _lxc("exec", NAME, "--", "sh", "-c", script), args.mib)
        lxd_pid = int(subprocess.run(["pidof", "-s", "lxd"], capture_output=True, text=True,
                                     check=True).stdout.split()[0])
        return _rounds(c, args.runs, work, lxd_pid, pool)
    finally:
        for name in (COPY, NAME):
            with contextlib.suppress(Exception):
                _delete(c, name)
        if fp:
            with contextlib.suppress(Exception):
                c.delete_image(fp).wait(60)
        if made_pool:
            with contextlib.suppress(Exception):
                c.raw("DELETE", f"/1.0/storage-pools/{pool}")
        c.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    fs = subprocess.run(["stat", "-f", "-c", "%T", tempfile.gettempdir()], capture_output=True,
                        text=True, check=False).stdout.strip()
    results: dict[str, Any] = {"mib": args.mib, "runs": args.runs, "tmp_fs": fs,
                               "load": os.getloadavg(), "cores": os.cpu_count()}
    for host, fn in (("lxd", _lxd), ("cove", _cove)):
        for attempt in range(3):
            # another covetest run's teardown deletes every covetest* instance
            # in LXD; a round that lost its instance is run again
            try:
                got = fn(args)
                break
            except CoveError as e:
                results.setdefault("retried", []).append(f"{host}: {e}")
                if attempt == 2:
                    got = f"failed 3 times: {e}"
        if isinstance(got, str):
            results[host] = {"skipped": got}
            continue
        results[host] = {k: {"median": statistics.median(v), "samples": v}
                         for k, v in got.items()}
    print(f"upper layer {args.mib} MiB of random data, {args.runs} runs (median), "
          f"load {results['load'][0]:.1f} on {results['cores']} cores:")
    for what in ("export", "import", "export_cpu", "import_cpu"):
        unit = "CPU s" if what.endswith("cpu") else "s"
        line = f"  {what:10s} cove {results['cove'][what]['median']:7.2f} {unit}"
        if "skipped" not in results["lxd"]:
            lxd = results["lxd"][what]["median"]
            ratio = results["cove"][what]["median"] / lxd if lxd else float("nan")
            results.setdefault("ratio_cove_over_lxd", {})[what] = ratio
            line += f"   LXD dir {lxd:7.2f} {unit}   cove/LXD {ratio:.2f}"
        print(line)
    out = REPO / "bench" / "results" / f"backups-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
