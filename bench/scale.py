#!/usr/bin/env python3
"""cove with hundreds of containers running: how the costs grow with N (issue 14).

Usage::

    sudo .venv/bin/python bench/scale.py [--n 100,500,1000] [--nic | --no-nic]
        [--podman 200] [--parallel 50 --threads 10] [--keep] [--root DIR]

One private coved (root ``/tmp/covescale-XXXX``, or ``--root``) with the
busybox image; every container runs busybox ``/sbin/init``. Launches go
through ``cove.client.Client`` in this process (the API), one after the
other, up to each N of ``--n``; at each step, with N running:

* ``launch``: median and p95 of the launches of this step (the first step's
  first 20 are the *idle median* the ratios use);
* ``parallel``: ``--parallel`` launches on ``--threads`` threads (one client
  each): launches a second, the slowest and the median over the idle median;
  they are deleted again, so N stays N;
* ``runc`` (with ``--runc``): the floor in the same run, ``runc run -d`` of
  the same rootfs ``--parallel`` times on ``--threads`` threads with the N
  containers running (``bench/par_cpu.py``'s), over raw runc's own idle
  median (20 sequential ``runc run -d`` before the first launch): what any
  manager that creates containers with runc starts from on this machine;
* ``list``: ``cove list`` (the CLI, its own process), ``GET
  /1.0/instances?recursion=2`` and, if coved says it has
  ``instances_state_selective_recursion``, ``recursion=2;fields=state.network``
  (what ``cove list`` asks); medians of ``--reps``;
* ``exec``: ``true`` through the API and through ``cove exec``;
* ``memory``: host ``MemAvailable`` and ``Slab`` deltas from before the first
  launch, per container (includes conmon, the container's init, its cgroups,
  overlay, veth, and coved's own growth; anything else the host starts
  meanwhile counts too, so it means something on a quiet machine only);
  ``empty_memcg_kb``: what a new memory cgroup costs this host in the
  kernel's shrinker units (sized by the most shrinkers the host ever had,
  so by its history: every container pays it once), and the count of dying
  memory cgroups (see docs/performance.md, "Host memory per container");
* ``coved``: its RSS, threads, fds, and its CPU when nothing is asked of it
  (``--idle`` seconds of utime + stime);
* ``host``: the number of mounts in the host's mount table (anything else
  on the host that mounts counts too).

Then ``teardown``: every instance deleted (``cove delete --force`` in batches
of 25, as users do), instances a second. ``--podman N`` runs podman to N the
same way (private storage, ``--network none``, as ``bench/run.py``) for the
launch median and ``podman ps -a`` at N.

``--nic`` gives every instance ``eth0`` on the default network (the default
profile); ``--no-nic`` (the default) asks for none, as the peers get none.

Resumable: the results file is rewritten after every step; ``--keep`` leaves
coved and its instances running (its root is printed) and ``--root DIR``
continues on such a root, from as many instances as it already runs.

Results: ``bench/results/scale-<time>.json``; a table is printed. Nothing is
asserted. On a loaded machine say so next to the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _load(name: str, module: str) -> Any:
    """bench/<name>.py as a module (``module`` in sys.modules)."""
    spec = importlib.util.spec_from_file_location(module, REPO / "bench" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    return mod


def _load_run() -> Any:
    """bench/run.py as a module: its peers, artifacts and untimed helpers."""
    return _load("run", "covebench_run")


def runc_burst(art: Any, count: int, threads: int, tag: str) -> dict[str, Any]:
    """``count`` raw ``runc run -d`` on ``threads`` threads (deleted again):
    ``bench/par_cpu.py``'s floor."""
    par = _load("par_cpu", "covebench_par")
    return dict(par.runc_floor(art, argparse.Namespace(parallel=count, threads=threads), tag))


R = _load_run()
log = R.log


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def p95(xs: list[float]) -> float:
    if len(xs) < 2:
        return xs[0] if xs else 0.0
    return statistics.quantiles(xs, n=20)[-1]


def med(xs: Any) -> float:
    return round(statistics.median(xs), 2)


def timed(fn: Any, *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return ms(time.perf_counter() - t)


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, val = line.split(":", 1)
            if key in ("MemAvailable", "Slab", "MemFree"):
                out[key] = int(val.split()[0])
    return out


def proc(pid: int) -> dict[str, int]:
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    return out


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _memcg_dir() -> str:
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    return "/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/memory"


def _slab_objects(cache: str) -> int:
    with open("/proc/slabinfo") as f:
        for line in f:
            if line.startswith(cache + " "):
                return int(line.split()[1])
    return 0


def memcg_cost(count: int = 20) -> dict[str, Any]:
    """What a new memory cgroup costs this host in the kernel's shrinker
    units (``kmalloc-1k`` objects: one per 64 shrinker ids up to the highest
    the host ever had, never lowered before a reboot; docs/performance.md,
    "Host memory per container"), measured by making ``count`` empty ones;
    and how many memory cgroups are dying (removed, still held by charges)."""
    base = _memcg_dir()
    names = [os.path.join(base, f"covebench-memcg-{secrets.token_hex(3)}-{i}")
             for i in range(count)]
    before = _slab_objects("kmalloc-1k")
    try:
        for n in names:
            os.mkdir(n)
        after = _slab_objects("kmalloc-1k")
    finally:
        for n in names:
            with contextlib.suppress(OSError):
                os.rmdir(n)
    live = sum(1 for _ in os.walk(base))
    total = 0
    with open("/proc/cgroups") as f:
        for line in f:
            if line.startswith("memory\t"):
                total = int(line.split()[2])
    return {"empty_memcg_kb": round((after - before) / count, 1),
            "dying_memcgs": max(total - live, 0) if total else None}


def host_mounts() -> int:
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


class Cove:
    """The private coved, its CLI and one API client per thread."""

    def __init__(self, root: Path, tag: str, nic: bool) -> None:
        from cove.client import Client

        self.root = root
        self.tag = tag
        self.art: Any = None  # the run's artifacts, once started
        self.cli = R.CoveCLI(tag, root)
        self.nic = nic
        self.devices = None if nic else {"eth0": {"type": "none"}}
        self._client_cls = Client
        self._local = threading.local()
        self.seq = 0

    @property
    def client(self) -> Any:
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = self._client_cls(str(self.root / "unix.socket"))
        return c

    def start(self, art: Any) -> None:
        self.art = art
        if not self.cli.alive() and not (self.root / "cove.db").exists():
            self.cli.setup(art)  # a new root: coved starts, the image goes in
            return
        if not self.cli.alive():  # a kept root whose coved went: start it again
            env = dict(self.cli.env)
            env.pop("COVE_NO_AUTOSTART")
            R.run([self.cli.cli, "list", "-f", "csv"], env=env)
        self.cli.started = True

    def names(self) -> list[str]:
        return [i["name"] for i in self.client.instances(1) if isinstance(i, dict)]

    def next_name(self) -> str:
        self.seq += 1
        return f"s{self.seq}"

    def launch(self, name: str) -> float:
        t = time.perf_counter()
        op = self.client.create_instance(name, {"type": "image", "alias": "busybox"},
                                         devices=self.devices, start=True)
        op.wait()
        op.raise_for_error()
        return ms(time.perf_counter() - t)

    def delete(self, names: list[str]) -> None:
        self.cli.delete_many(names)


def step(cove: Cove, n: int, res: dict[str, Any], args: argparse.Namespace,
         base_mem: dict[str, int]) -> dict[str, Any]:
    running = len(cove.names())
    lat = []
    while running < n:
        lat.append(cove.launch(cove.next_name()))
        running += 1
        if running % 50 == 0:
            log(f"{running} running, last launch {lat[-1]} ms")
    if "idle_median" not in res and len(lat) >= 20:
        res["idle_median"] = statistics.median(lat[:20])
    idle = res.get("idle_median") or 0.0
    out: dict[str, Any] = {"n": n, "launched": len(lat)}
    if lat:
        out["launch"] = {"median": round(statistics.median(lat), 2),
                         "p95": round(p95(lat), 2),
                         "last50_median": round(statistics.median(lat[-50:]), 2),
                         "samples": lat}
    pid = cove.cli.coved_pid()
    # Parallel launches: independent names on independent connections.
    if args.parallel:
        names = [cove.next_name() for _ in range(args.parallel)]
        t = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            par = list(pool.map(cove.launch, names))
        wall = time.perf_counter() - t
        out["parallel"] = {"count": len(par), "threads": args.threads,
                           "rate_per_s": round(len(par) / wall, 1),
                           "median": med(par), "slowest": max(par),
                           "slowest_over_idle": round(max(par) / idle, 2) if idle else None,
                           "median_over_idle": round(statistics.median(par) / idle, 2)
                           if idle else None}
        cove.delete(names)
        if args.runc:
            floor = runc_burst(cove.art, args.parallel, args.threads, f"{cove.tag}{n}")
            ridle = res.get("runc_idle_median")
            floor["slowest_over_runc_idle"] = round(floor["slowest_ms"] / ridle, 2) \
                if ridle else None
            floor["cove_rate_over_runc"] = round(
                out["parallel"]["rate_per_s"] / floor["rate_per_s"], 2)
            out["runc_parallel"] = floor
    # Listing.
    out["list_cli"] = med(timed(cove.cli.do_list, "") for _ in range(args.reps))
    out["list_api_r2"] = med(
        timed(cove.client.raw, "GET", "/1.0/instances?recursion=2") for _ in range(args.reps))
    out["list_api_r1"] = med(
        timed(cove.client.raw, "GET", "/1.0/instances?recursion=1") for _ in range(args.reps))
    if "instances_state_selective_recursion" in (cove.client.server().get("api_extensions")
                                                 or []):
        out["list_api_fields"] = med(
            timed(cove.client.raw, "GET",
                  "/1.0/instances?recursion=2%3Bfields%3Dstate.network")
            for _ in range(args.reps))
    # Exec.
    target = cove.names()[0]
    out["exec_api"] = med(
        timed(cove.client.exec, target, ["true"]) for _ in range(args.reps))
    out["exec_cli"] = med(
        timed(cove.cli.do_exec, target) for _ in range(args.reps))
    # Memory, per container, from before the first launch.
    mem = meminfo()
    out["memory"] = {
        "mem_available_delta_kb": base_mem["MemAvailable"] - mem["MemAvailable"],
        "slab_delta_kb": mem["Slab"] - base_mem["Slab"],
        "per_container_kb": round((base_mem["MemAvailable"] - mem["MemAvailable"]) / n, 1),
        "slab_per_container_kb": round((mem["Slab"] - base_mem["Slab"]) / n, 1),
        **memcg_cost()}
    if pid:
        out["coved"] = proc(pid)
        hz = os.sysconf("SC_CLK_TCK")
        before = cpu_ticks(pid)
        time.sleep(args.idle)
        out["coved"]["idle_cpu_percent"] = round(
            (cpu_ticks(pid) - before) / hz / args.idle * 100, 2)
    out["host_mounts"] = host_mounts()
    return out


def podman_run(art: Any, work: Path, tag: str, ns: list[int], reps: int) -> dict[str, Any]:
    pm = R.Podman(tag, work)
    out: dict[str, Any] = {"version": pm.version(), "steps": []}
    try:
        pm.setup(art)
        count = 0
        for n in ns:
            lat = []
            while count < n:
                lat.append(timed(pm.do_launch, pm.name(count)))
                count += 1
            out["steps"].append({
                "n": n, "launch_median": med(lat) if lat else None,
                "launch_p95": round(p95(lat), 2) if lat else None,
                "list": med(timed(pm.do_list, "") for _ in range(reps))})
            log(f"podman at {n}: {out['steps'][-1]}")
        t = time.perf_counter()
        pm.delete_many([pm.name(i) for i in range(count)])
        out["teardown_per_s"] = round(count / (time.perf_counter() - t), 1)
    finally:
        out["problems"] = pm.teardown()
    return out


def table(res: dict[str, Any]) -> str:
    rows = [("N", "launch med", "p95", "par/s", "slow/idle", "runc par/s", "runc slow/idle",
             "list CLI", "API r2",
             "API fields", "exec API", "exec CLI", "MiB/ctr", "RSS MiB", "thr", "fds",
             "idle CPU%", "mounts")]
    for s in res["steps"]:
        launch = s.get("launch", {})
        par = s.get("parallel", {})
        c = s.get("coved", {})
        rows.append(tuple(str(x) for x in (
            s["n"], launch.get("median", "-"), launch.get("p95", "-"),
            par.get("rate_per_s", "-"), par.get("slowest_over_idle", "-"),
            s.get("runc_parallel", {}).get("rate_per_s", "-"),
            s.get("runc_parallel", {}).get("slowest_over_runc_idle", "-"),
            s["list_cli"], s["list_api_r2"], s.get("list_api_fields", "-"),
            s["exec_api"], s["exec_cli"],
            round(s["memory"]["per_container_kb"] / 1024, 2),
            round(c.get("rss_kb", 0) / 1024, 1), c.get("threads", "-"), c.get("fds", "-"),
            c.get("idle_cpu_percent", "-"), s["host_mounts"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    if "teardown_per_s" in res:
        lines.append(f"teardown: {res['teardown_per_s']} instances/s")
    if res.get("podman"):
        for s in res["podman"]["steps"]:
            lines.append(f"podman at {s['n']}: launch median {s['launch_median']} ms, "
                         f"p95 {s['launch_p95']} ms, ps -a {s['list']} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="100,500,1000", help="comma-separated steps")
    p.add_argument("--nic", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--podman", type=int, default=0, help="podman to this N (0: not run)")
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--threads", type=int, default=10)
    p.add_argument("--runc", action="store_true",
                   help="raw runc's parallel launches too, with the N running")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU sampling")
    p.add_argument("--keep", action="store_true", help="leave coved and its instances")
    p.add_argument("--root", type=Path, help="continue on this root (from --keep)")
    p.add_argument("--note", default="", help="e.g. 'under load: 7 other jobs'")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (runc, mounts, cgroups)")
    ns = sorted(int(x) for x in args.n.split(",") if x.strip())
    tag = secrets.token_hex(2)
    root = args.root or Path(tempfile.mkdtemp(prefix="covescale-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="covescale-work-", dir="/tmp"))
    out_file = REPO / "bench" / "results" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()}, "root": str(root),
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                    "loadavg": os.getloadavg(), "memcg": memcg_cost()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": []}

    def save() -> None:
        out_file.write_text(json.dumps(res, indent=1))

    # The memory baseline is the host's before the first launch on this root,
    # kept in the root so that a run continued with --root measures from it.
    base_file = root / "scale-baseline.json"
    if base_file.exists():
        base_mem = json.loads(base_file.read_text())
    else:
        base_mem = meminfo()
        base_file.write_text(json.dumps(base_mem))
    cove = Cove(root, tag, args.nic)
    kept = False
    try:
        art = R.Artifacts(work, tag)
        cove.start(art)
        if args.runc and "runc_idle_median" not in res:
            res["runc_idle"] = runc_burst(art, 20, 1, f"{tag}idle")
            res["runc_idle_median"] = res["runc_idle"]["median_ms"]
            log(f"raw runc, sequential: {res['runc_idle']}")
        existing = cove.names()
        cove.seq = max((int(x[1:]) for x in existing if x[1:].isdigit()), default=0)
        if existing:
            log(f"continuing with {len(existing)} instances in {root}")
        for n in ns:
            log(f"step to {n}")
            res["steps"].append(step(cove, n, res, args, base_mem))
            res["machine"]["loadavg_last"] = os.getloadavg()
            save()
            log(json.dumps({k: v for k, v in res["steps"][-1].items() if k != "launch"}))
        if args.keep:
            kept = True
        else:
            names = cove.names()
            t = time.perf_counter()
            cove.delete(names)
            res["teardown_per_s"] = round(len(names) / (time.perf_counter() - t), 1)
            save()
        if args.podman and not shutil.which("podman"):
            log("podman is not installed: its rows are skipped (bench/run.py --install)")
        elif args.podman:
            steps = sorted({n for n in ns if n < args.podman} | {args.podman})
            res["podman"] = podman_run(art, work, tag, steps, args.reps)
            save()
    finally:
        if kept:
            log(f"kept: coved on {root} (continue with --root {root})")
        else:
            problems = cove.cli.teardown()
            if problems:
                res["problems"] = problems
        with contextlib.suppress(OSError):
            subprocess.run(["rm", "-rf", str(work)], check=False)
        save()
    print(table(res))
    print(f"results: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
