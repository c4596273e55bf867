#!/usr/bin/env python3
"""Host memory per container, broken down (issue 14): what grows with N.

Usage::

    sudo .venv/bin/python bench/mem.py [--n 100,300] [--mode cove|runc|podman]
        [--root DIR] [--keep] [--drop-caches]

Launches busybox ``/sbin/init`` containers without a NIC up to each N of
``--n`` and, before the first and at each step, takes:

* ``/proc/slabinfo``, per cache (``active_objs * objsize``);
* ``/proc/meminfo``: MemAvailable, Slab, Percpu, PageTables, KernelStack,
  Shmem, AnonPages, ...;
* the PSS (``/proc/PID/smaps_rollup``) of every process of the run, by role:
  coved, conmon, the containers' inits, anything else in their cgroups;
* the charges of two memory cgroups (v1): ``monitors``, one made for the
  run that this process, coved, conmon and runc run in (the bench moves
  itself there first), and ``containers``, cove's parent of the containers'
  cgroups. Charges are only ours whatever else the host does, so these
  are the figures to trust on a busy machine; they hold what the kernel
  accounts to a cgroup (``__GFP_ACCOUNT``): not all of it (see
  docs/performance.md, "Host memory per container").

The result is the *slope* between two steps (per container, in KiB), which
cancels what the host did before; other people's containers started or
stopped meanwhile still count in the host-wide slab and meminfo figures.
In ``cove`` mode a last snapshot after one ``recursion=2`` listing gives
what a listed running instance adds (coved keeps its counter files open).
``--drop-caches`` drops reclaimable dentries and inodes (host-wide) before
each snapshot.

Modes: ``cove`` (a private coved, the API as ``bench/scale.py``), ``runc``
(raw ``runc run -d`` with the very ``config.json`` cove generated for a
container of the same image, an overlay each, no conmon; in a private mount
namespace), ``podman`` (private storage, ``--network none``).

Results: ``bench/results/mem-<mode>-<time>.json`` and a table of the caches
and counters that grew by at least 1 KiB per container.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

_MEMINFO = ("MemAvailable", "MemFree", "Slab", "SReclaimable", "SUnreclaim", "Percpu",
            "PageTables", "KernelStack", "Shmem", "AnonPages", "Mapped", "Cached",
            "Buffers", "VmallocUsed")


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"covebench_{name}",
                                                  REPO / "bench" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[f"covebench_{name}"] = mod
    spec.loader.exec_module(mod)
    return mod


S = _load("scale")
R = S.R
log = R.log


def slabinfo() -> dict[str, int]:
    """Bytes per slab cache (objects allocated, times their size)."""
    out: dict[str, int] = {}
    with open("/proc/slabinfo") as f:
        for line in f:
            if line.startswith(("slabinfo", "#")):
                continue
            parts = line.split()
            out[parts[0]] = out.get(parts[0], 0) + int(parts[1]) * int(parts[3])
    return out


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, val = line.split(":", 1)
            if key in _MEMINFO:
                out[key] = int(val.split()[0])
    return out


def pss(pid: int) -> dict[str, int]:
    """smaps_rollup's Pss (and its anon part) in KiB; {} if it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key in ("Pss", "Pss_Anon", "Pss_File", "Rss"):
                    out[key] = int(val.split()[0])
    except OSError:
        return {}
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cgroup(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctl, path = line.rstrip("\n").split(":", 2)
                if "memory" in ctl.split(","):
                    return path
    except OSError:
        pass
    return ""


def processes(marker: str, cmd_marker: str,
              coved: int | None) -> dict[str, dict[str, int]]:
    """PSS totals by role: every process whose memory cgroup carries
    ``marker`` (the containers' cgroup parent) or whose command line carries
    ``cmd_marker`` (the run's root), coved by pid."""
    roles: dict[str, dict[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = _comm(pid)
        if pid == coved:
            role = "coved"
        elif marker in _cgroup(pid):
            role = "init" if comm == "init" else f"in-ctr:{comm}"
        elif cmd_marker in cmd:
            role = comm or "?"
        else:
            continue
        p = pss(pid)
        r = roles.setdefault(role, {"count": 0})
        r["count"] += 1
        for k, v in p.items():
            r[k] = r.get(k, 0) + v
    return roles


MEMCG = "/sys/fs/cgroup/memory"


def memcg(rel: str) -> dict[str, int]:
    """A v1 memory cgroup's charges (hierarchical), in KiB: what its tasks
    and those of its children allocated, kernel objects included where the
    kernel accounts them (``__GFP_ACCOUNT``), whoever else runs meanwhile."""
    d = os.path.join(MEMCG, rel.strip("/"))
    out: dict[str, int] = {}
    try:
        for key in ("memory.usage_in_bytes", "memory.kmem.usage_in_bytes"):
            with open(os.path.join(d, key)) as f:
                out[key.split(".", 1)[1].replace(".", "_").removesuffix("_in_bytes")] = \
                    int(f.read()) // 1024
        with open(os.path.join(d, "memory.stat")) as f:
            for line in f:
                k, v = line.split()
                if k in ("total_rss", "total_cache", "total_shmem", "total_mapped_file"):
                    out[k] = int(v) // 1024
    except OSError:
        pass
    return out


def snapshot(marker: str, cmd_marker: str, coved: int | None,
             groups: dict[str, str]) -> dict[str, Any]:
    return {"time": time.time(), "loadavg": os.getloadavg(), "slab": slabinfo(),
            "meminfo": meminfo(), "procs": processes(marker, cmd_marker, coved),
            "memcg": {role: memcg(rel) for role, rel in groups.items()}}


def slope(a: dict[str, Any], b: dict[str, Any], dn: int) -> dict[str, Any]:
    """Per-container growth (KiB) from snapshot ``a`` to ``b``, ``dn`` apart."""
    slab = {k: round((b["slab"].get(k, 0) - a["slab"].get(k, 0)) / 1024 / dn, 2)
            for k in set(a["slab"]) | set(b["slab"])}
    mem = {k: round((b["meminfo"][k] - a["meminfo"][k]) / dn, 2) for k in b["meminfo"]}
    cg = {role: {k: round((v - a["memcg"].get(role, {}).get(k, 0)) / dn, 2)
                 for k, v in b["memcg"][role].items()} for role in b["memcg"]}
    procs = {}
    for role in set(a["procs"]) | set(b["procs"]):
        pa, pb = a["procs"].get(role, {}), b["procs"].get(role, {})
        procs[role] = {k: round((pb.get(k, 0) - pa.get(k, 0)) / dn, 2)
                       for k in set(pa) | set(pb)}
    return {"dn": dn, "slab": {k: v for k, v in sorted(slab.items(), key=lambda x: -x[1])
                               if abs(v) >= 0.05},
            "meminfo": mem, "procs": procs, "memcg": cg}


# -- drivers ------------------------------------------------------------------

class CoveRun:
    def __init__(self, root: Path | None, work: Path, tag: str) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="covetest-mem-", dir="/tmp"))
        self.cove = S.Cove(self.root, tag, nic=False)
        self.art = R.Artifacts(work, tag)
        self.count = 0

    def setup(self) -> None:
        self.cove.start(self.art)
        self.count = len(self.cove.names())
        self.cove.seq = self.count

    @property
    def marker(self) -> str:
        return self.root.name  # in conmon's command line (its paths)

    def cgroup_marker(self) -> str:
        # the container cgroups' parent, as cove names it (cove-<hash of root>)
        path = _cgroup(self.init_pids()[0])
        return path.strip("/").split("/")[0] if path else self.marker

    def init_pids(self) -> list[int]:
        out = []
        for f in (self.root / "run" / "pids").glob("*.pid"):  # conmon's pid files
            try:
                out.append(int(f.read_text().strip()))
            except (OSError, ValueError):
                pass
        return out

    def coved(self) -> int | None:
        return self.cove.cli.coved_pid()

    def launch_to(self, n: int) -> None:
        while self.count < n:
            self.cove.launch(self.cove.next_name())
            self.count += 1

    def teardown(self) -> None:
        R.log(f"teardown: {self.cove.cli.teardown()}")
        shutil.rmtree(self.root, ignore_errors=True)


class RuncRun:
    """Raw ``runc run -d``: cove's own config.json of a first container
    (launched through a private coved and then deleted), a fresh overlay per
    container on the same image layers, no monitor."""

    def __init__(self, work: Path, tag: str) -> None:
        self.work = work
        self.tag = tag
        self.cove = CoveRun(None, work, tag)
        self.runc_root = work / "runc"
        self.count = 0
        self.config: dict[str, Any] = {}
        self.lowers = ""

    def setup(self) -> None:
        self.cove.setup()
        self.cove.launch_to(1)
        inst = self.cove.root / "instances"
        cfg = next(inst.glob("*/config.json"))
        self.config = json.loads(cfg.read_text())
        with open(f"/proc/{self.cove.init_pids()[0]}/mountinfo") as f:
            mnt = [line.split() for line in f]
        # the overlay's lowerdir, from the container's own root mount
        for m in mnt:
            if m[4] == "/":
                opts = m[-1]
                self.lowers = next(o.split("=", 1)[1] for o in opts.split(",")
                                   if o.startswith("lowerdir="))
        self.cove.cove.delete(self.cove.cove.names())
        self.runc_root.mkdir()

    marker = "covememrunc"

    def cgroup_marker(self) -> str:
        return self.marker

    def init_pids(self) -> list[int]:
        out = []
        for d in self.runc_root.glob("*/state.json"):
            out.append(int(json.loads(d.read_text())["init_process_pid"]))
        return out

    def coved(self) -> int | None:
        return None

    def launch_to(self, n: int) -> None:
        while self.count < n:
            name = f"r{self.count}"
            b = self.work / "b" / name
            for d in ("upper", "work", "rootfs"):
                (b / d).mkdir(parents=True)
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={self.lowers},upperdir={b}/upper,workdir={b}/work",
                            str(b / "rootfs")], check=True)
            cfg = json.loads(json.dumps(self.config))
            cfg["root"]["path"] = str(b / "rootfs")
            cfg["linux"]["cgroupsPath"] = f"/{self.marker}/{name}"
            cfg["hostname"] = name
            # no console: runc would want a socket to hand its pty to (conmon's job)
            cfg["process"]["terminal"] = False
            (b / "config.json").write_text(json.dumps(cfg))
            subprocess.run(["runc", "--root", str(self.runc_root), "run", "-d", "--bundle",
                            str(b), name], check=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL)
            self.count += 1

    def teardown(self) -> None:
        # every bundle made, also one whose runc failed
        for b in sorted((self.work / "b").glob("r*")):
            subprocess.run(["runc", "--root", str(self.runc_root), "delete", "--force",
                            b.name], check=False)
            subprocess.run(["umount", str(b / "rootfs")], check=False)
        for ctl in os.listdir("/sys/fs/cgroup"):
            p = Path("/sys/fs/cgroup") / ctl / self.marker
            if p.is_dir():
                for sub in p.iterdir():
                    if sub.is_dir():
                        sub.rmdir()
                p.rmdir()
        self.cove.teardown()


class PodmanRun:
    def __init__(self, work: Path, tag: str) -> None:
        self.pm = R.Podman(tag, work)
        self.art = R.Artifacts(work, tag)
        self.count = 0
        self.marker = work.name  # in its conmons' command lines (the storage paths)

    def setup(self) -> None:
        self.pm.setup(self.art)

    def cgroup_marker(self) -> str:
        return "libpod_parent"  # shared with any other podman on the host

    def coved(self) -> int | None:
        return None

    def launch_to(self, n: int) -> None:
        while self.count < n:
            self.pm.do_launch(self.pm.name(self.count))
            self.count += 1

    def teardown(self) -> None:
        self.pm.delete_many([self.pm.name(i) for i in range(self.count)])
        self.pm.teardown()


def table(res: dict[str, Any]) -> str:
    lines = []
    for s in res["slopes"] + ([res["listed"]] if "listed" in res else []):
        lines.append(f"-- {res['mode']}: {s['from']} -> {s['to']}, KiB per container")
        m = s["meminfo"]
        lines.append("   meminfo: " + ", ".join(
            f"{k} {-v if k in ('MemAvailable', 'MemFree') else v}" for k, v in m.items()))
        lines.append("   slab: " + ", ".join(f"{k} {v}" for k, v in s["slab"].items()
                                            if abs(v) >= 1))
        lines.append("   memcg: " + "; ".join(
            f"{role} " + ", ".join(f"{k} {v}" for k, v in d.items())
            for role, d in s["memcg"].items()))
        lines.append("   pss: " + ", ".join(
            f"{r} {v.get('Pss', 0)} (x{v.get('count', 0)})" for r, v in s["procs"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="100,300")
    p.add_argument("--mode", choices=("cove", "runc", "podman"), default="cove")
    p.add_argument("--root", type=Path, help="cove: continue on this root")
    p.add_argument("--keep", action="store_true", help="cove: leave coved running")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds to wait before each snapshot (RCU frees, kworkers)")
    p.add_argument("--drop-caches", action="store_true",
                   help="drop reclaimable dentries and inodes (host-wide) before each "
                        "snapshot, so that what is left is what the containers pin")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root")
    if args.mode == "runc" and not os.environ.get("COVEMEM_NS"):
        # the overlays go in a private mount namespace, not the host's table
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "slave", sys.executable,
                               *sys.argv], dict(os.environ, COVEMEM_NS="1"))
    ns = sorted(int(x) for x in args.n.split(",") if x.strip())
    tag = os.urandom(2).hex()
    # This process and all it starts (coved, conmon, runc: not the
    # containers, which runc puts in their own cgroups) in a memory cgroup of
    # the run's own, so that their charges are told apart from other people's.
    own = f"covetest-mem-{tag}"
    os.mkdir(os.path.join(MEMCG, own))
    with open(os.path.join(MEMCG, own, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    work = Path(tempfile.mkdtemp(prefix="covetest-memwork-", dir="/tmp"))
    run: Any
    if args.mode == "cove":
        run = CoveRun(args.root, work, tag)
    elif args.mode == "runc":
        run = RuncRun(work, tag)
    else:
        run = PodmanRun(work, tag)
    out = REPO / "bench" / "results" / f"mem-{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"mode": args.mode, "n": ns, "kernel": os.uname().release,
                           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "snapshots": [], "slopes": []}
    try:
        run.setup()
        snaps = []
        marker: str | None = None
        for n in [run.count, *ns]:
            run.launch_to(n)
            if marker is None and run.count:
                marker = run.cgroup_marker()
            time.sleep(args.settle)
            if args.drop_caches:
                with open("/proc/sys/vm/drop_caches", "w") as f:
                    f.write("2\n")  # reclaimable dentries/inodes: the unpinned ones go
                time.sleep(1)
            groups = {"monitors": own}
            if marker:
                groups["containers"] = marker
            snaps.append((n, snapshot(marker or run.marker, run.marker, run.coved(), groups)))
            log(f"snapshot at {n}, load {os.getloadavg()}")
        if args.mode == "cove" and run.count:
            # what a listing adds: coved keeps each running instance's
            # counter files open from then on (runtime/cgroup_counters.py)
            run.cove.client.raw("GET", "/1.0/instances?recursion=2")
            time.sleep(args.settle)
            listed = snapshot(marker or run.marker, run.marker, run.coved(),
                              {"monitors": own, "containers": marker or own})
            s = slope(snaps[-1][1], listed, run.count)
            s.update({"from": run.count, "to": f"{run.count} listed (per instance)"})
            res["listed"] = s
        for (n1, a), (n2, b) in itertools.pairwise(snaps):
            if n2 > n1:
                s = slope(a, b, n2 - n1)
                s.update({"from": n1, "to": n2})
                res["slopes"].append(s)
        res["snapshots"] = [{"n": n, "loadavg": s["loadavg"], "meminfo": s["meminfo"],
                             "procs": s["procs"]} for n, s in snaps]
    finally:
        if not (args.keep and args.mode == "cove"):
            run.teardown()
        else:
            log(f"kept: {run.root}")
        shutil.rmtree(work, ignore_errors=True)
        with open(os.path.join(MEMCG, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        try:
            os.rmdir(os.path.join(MEMCG, own))
        except OSError as e:  # a process of the run is left in it
            log(f"memory cgroup {own} left: {e}")
        out.write_text(json.dumps(res, indent=1))
    print(table(res))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
