#!/usr/bin/env python3
"""CPU per launch during parallel launches, and where it goes (issue 14).

Usage::

    sudo .venv/bin/python bench/par_cpu.py [--src src[,/tmp/cove-old/src]] [--n 0,200]
        [--parallel 50 --threads 10] [--rounds 2] [--nic] [--perf] [--pyspy] [--runc]
        [--tmpdir /var/tmp]

One root (``/tmp/covescale-par-XXXX``), the busybox image, coved started
from each ``--src`` tree in turn (paired A/B when two are given: the same
root and the same running containers, alternated, ABBA, per round). coved runs in
a cpuacct cgroup of its own, so everything it starts (conmon, runc create,
start and init, ip, nft...) is charged there until runc moves the
container's processes into the container's cgroup (under the root's parent
cgroup, which keeps the charge of removed children). For each N of ``--n``
(filled by the first tree) and each round and tree: ``--parallel`` launches
on ``--threads`` threads, then deleted again. Recorded: rate, median and
slowest latency, CPU ms per launch (coved's cgroup + the containers'
parent cgroup), coved's own CPU (its threads) and its reaped children's,
the whole machine's busy CPU (other people's included: the load) and the
load average.

``--perf``: ``perf record -a`` during the burst of the first tree, and the
samples of coved's process tree split by command and user/kernel.
``--pyspy``: ``py-spy record -f raw`` of coved during that burst (its CPU,
not its waits: ``bench/results/par-pyspy-*.txt``, flamegraph input).
``--perf-g``: also ``perf record -a -g`` during that burst, kept
(``bench/results/par-perfg-*.data``, for ``perf report --comms ...``).
``--wchan``: with ``--perf``, every 5 ms the state and kernel wait
channel of each task in those cgroups (what launches wait on off the CPU).
``--nice N``: coved (and so conmon and runc) and the bench at niceness N.
``--runc``: the floor, ``runc run -d`` of the same rootfs ``--parallel``
times on ``--threads`` threads, in a cpuacct cgroup of its own likewise.
``--ab-env A,B``: the paired A/B is of the first tree's coved under two
environments instead (``COVE_MONITOR=conmon,COVE_MONITOR=cove``).

Results: ``bench/results/par-cpu-<time>.json``; nothing is asserted. Under
load the CPU figures hold better than the times (CPU is charged to whom it
ran for), but contention inflates both: say the load with them.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cove.client import Client

CPUACCT = Path("/sys/fs/cgroup/cpuacct")
HZ = os.sysconf("SC_CLK_TCK")


def _run_mod() -> Any:
    spec = importlib.util.spec_from_file_location("covebench_run", REPO / "bench" / "run.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["covebench_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def cg_usage(path: Path) -> int:
    try:
        return int((path / "cpuacct.usage").read_text())
    except (OSError, ValueError):
        return 0


def host_busy() -> float:
    """Seconds of non-idle CPU of the whole machine so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / HZ


def pstat(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) of ``pid``, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return ((int(fields[11]) + int(fields[12])) / HZ, (int(fields[13]) + int(fields[14])) / HZ)


class Coved:
    """coved of one source tree on the root, in the cpuacct cgroup ``cg``."""

    def __init__(self, root: Path, src: str, cg: Path,
                 env: dict[str, str] | None = None) -> None:
        self.root, self.src, self.cg = root, src, cg
        self.env = env or {}
        self.p: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        env = dict(os.environ, PYTHONPATH=str(Path(self.src).resolve()), **self.env)
        procs = str(self.cg / "cgroup.procs")

        def into_cg() -> None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        self.p = subprocess.Popen([str(REPO / ".venv" / "bin" / "coved"), "--root",
                                   str(self.root)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(self.root / "coved-bench.log", "ab"),
                                  preexec_fn=into_cg)  # noqa: PLW1509 - before threads
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.client().server()
                return self
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        raise RuntimeError("coved did not answer")

    def client(self) -> Client:
        return Client(str(self.root / "unix.socket"))

    def __exit__(self, *exc: object) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)
        (self.root / "unix.socket").unlink(missing_ok=True)


def launch(c: Client, name: str, nic: bool) -> float:
    t = time.perf_counter()
    op = c.create_instance(name, {"type": "image", "alias": "busybox"},
                           devices=None if nic else {"eth0": {"type": "none"}}, start=True)
    op.wait()
    op.raise_for_error()
    return (time.perf_counter() - t) * 1000


def running(c: Client) -> list[str]:
    return [i["name"] for i in c.instances(1) if isinstance(i, dict)]


def delete(c: Client, names: list[str]) -> None:
    for nm in names:
        c.change_state(nm, "stop", force=True).wait()
        c.delete_instance(nm).wait()


_FORK = re.compile(r"PERF_RECORD_FORK\((\d+):(\d+)\):\((\d+):(\d+)\)")
_SAMPLE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+[0-9a-f]+\s+\((.*)\)\s*$")


def perf_split(data: Path, root_pid: int) -> dict[str, Any]:
    """Samples of ``root_pid``'s process tree by command, user/kernel; and
    the kernel threads' (kworkers: work done for anyone) for context."""
    out = subprocess.run(["perf", "script", "-i", str(data), "--show-task-events",
                          "-F", "comm,pid,tid,ip,dso"], capture_output=True, text=True,
                         check=False).stdout
    parent: dict[int, int] = {}
    samples: list[tuple[str, int, bool]] = []
    for line in out.splitlines():
        m = _FORK.search(line)
        if m:
            pid, tid, ppid = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if pid == tid and pid != ppid:
                parent[pid] = ppid
            continue
        s = _SAMPLE.match(line)
        if s:
            samples.append((s.group(1), int(s.group(2)), "kernel" in s.group(4)))
    mine: dict[int, bool] = {root_pid: True}

    def is_mine(pid: int) -> bool:
        seen = []
        p = pid
        while p not in mine and p in parent and p > 1 and len(seen) < 64:
            seen.append(p)
            p = parent[p]
        ok = mine.get(p, False)
        for q in seen:
            mine[q] = ok
        return ok

    by: collections.Counter[str] = collections.Counter()
    total = 0
    for comm, pid, kernel in samples:
        total += 1
        if pid == 0:
            continue
        if is_mine(pid):
            key = "coved" if pid == root_pid else re.sub(r"\d+", "N", comm)
            by[f"{key} {'kernel' if kernel else 'user'}"] += 1
        elif comm.startswith(("kworker", "ksoftirq", "rcu")):
            by[f"[{re.sub(r'/.*', '', comm)}] kernel"] += 1
    return {"samples_all": total, "by": dict(by.most_common())}


def wchan_sampler(cgs: dict[str, Path], stop: threading.Event,
                  counts: collections.Counter[str]) -> None:
    """Every 5 ms: each task of the bench's cgroups by command, state (R
    runnable, S sleeping, D uninterruptible) and the kernel function it
    sleeps in: what launches wait on when they do not use the CPU."""
    while not stop.wait(0.005):
        pids: list[str] = []
        for cg in cgs.values():
            for f in [cg / "cgroup.procs", *cg.glob("*/cgroup.procs")]:
                try:
                    pids += f.read_text().split()
                except OSError:
                    continue
        for pid in pids:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat", "rb") as fh:
                        st = fh.read()
                    with open(f"/proc/{pid}/task/{tid}/wchan") as fh:
                        wchan = fh.read().strip()
                except OSError:
                    continue
                comm = st[st.index(b"(") + 1:st.rindex(b")")].decode(errors="replace")
                state = st[st.rindex(b")") + 2:st.rindex(b")") + 3].decode()
                if state == "S" and wchan in ("do_epoll_wait", "do_sys_poll", "hrtimer_nanosleep",
                                              "futex_do_wait", "do_select", "pipe_read",
                                              "do_wait", "0", "unix_stream_read_generic"):
                    key = f"{re.sub(r'[0-9]+', 'N', comm)} S idle/wait:{wchan}"
                else:
                    key = f"{re.sub(r'[0-9]+', 'N', comm)} {state} {wchan}"
                counts[key] += 1


def burst(c: Coved, args: argparse.Namespace, seq: list[int], tag: str,
          cgs: dict[str, Path], perf: bool, pyspy: bool) -> dict[str, Any]:
    names = []
    for _ in range(args.parallel):
        seq[0] += 1
        names.append(f"p{seq[0]}")
    assert c.p is not None
    pid = c.p.pid
    local = threading.local()

    def one(name: str) -> float:
        cl = getattr(local, "c", None)
        if cl is None:
            cl = local.c = c.client()
        return launch(cl, name, args.nic)

    extra: list[subprocess.Popen[bytes]] = []
    res_dir = REPO / "bench" / "results"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    perf_data = res_dir / f"par-perf-{stamp}.data"
    if perf:
        extra.append(subprocess.Popen(["perf", "record", "-a", "-F", "997", "-o", str(perf_data)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if perf and args.perf_g:
        extra.append(subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o",
                                       str(res_dir / f"par-perfg-{tag}-{stamp}.data")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if pyspy:
        extra.append(subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "py-spy"), "record", "--nonblocking", "-f", "raw", "-r", "200",
             "-o", str(res_dir / f"par-pyspy-{tag}-{stamp}.txt"), "--pid", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    # one launch first, so that caches a running coved has (an image's
    # parsed metadata, ...) are warm, as they are outside this bench
    warm = f"w{names[0]}"
    launch(c.client(), warm, args.nic)
    if extra:
        time.sleep(1.5)
    waits: collections.Counter[str] = collections.Counter()
    stop = threading.Event()
    sampler = threading.Thread(target=wchan_sampler, args=(cgs, stop, waits), daemon=True)
    if perf and args.wchan:
        sampler.start()
    before = ({k: cg_usage(v) for k, v in cgs.items()}, pstat(pid), host_busy(),
              time.perf_counter())
    with ThreadPoolExecutor(args.threads) as pool:
        lat = list(pool.map(one, names))
    after = ({k: cg_usage(v) for k, v in cgs.items()}, pstat(pid), host_busy(),
             time.perf_counter())
    stop.set()
    if sampler.is_alive():
        sampler.join()
    for p in extra:
        p.send_signal(signal.SIGINT)
    for p in extra:
        p.wait(120)
    wall = after[3] - before[3]
    n = len(lat)
    cpu = {k: (after[0][k] - before[0][k]) / 1e6 / n for k in cgs}
    out: dict[str, Any] = {
        "tree": tag, "count": n, "threads": args.threads, "wall_s": round(wall, 3),
        "rate_per_s": round(n / wall, 1), "median_ms": round(statistics.median(lat), 1),
        "slowest_ms": round(max(lat), 1),
        "cpu_ms_per_launch": round(sum(cpu.values()), 1),
        "cpu_split_ms": {k: round(v, 1) for k, v in cpu.items()},
        "coved_own_ms": round((after[1][0] - before[1][0]) * 1000 / n, 1),
        "coved_reaped_children_ms": round((after[1][1] - before[1][1]) * 1000 / n, 1),
        "host_busy_cores": round((after[2] - before[2]) / wall, 2),
        # cores the launches kept busy: 2.0 on two cores is CPU-bound, less is waiting
        "own_cores": round(sum(cpu.values()) * n / 1000 / wall, 2),
        "loadavg": os.getloadavg()}
    if waits:
        out["waits"] = dict(waits.most_common(40))
    if perf:
        out["perf"] = perf_split(perf_data, pid)
        perf_data.unlink(missing_ok=True)
    delete(c.client(), [warm, *names])
    return out


def runc_floor(art: Any, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """``runc run -d`` of the busybox rootfs, ``--parallel`` on ``--threads``."""
    work = Path(tempfile.mkdtemp(prefix="covepar-runc-", dir="/tmp"))
    state = work / "state"
    state.mkdir()
    cg_name = f"covepar-runc-{tag}"
    cg = CPUACCT / cg_name
    cg.mkdir(exist_ok=True)
    subprocess.run(["runc", "spec", "--bundle", str(work)], check=True)
    spec = json.loads((work / "config.json").read_text())
    spec["root"] = {"path": str(art.rootfs), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/sbin/init"]
    names = [f"r{i}" for i in range(args.parallel)]
    for nm in names:
        b = work / nm
        b.mkdir()
        s = dict(spec, hostname=nm)
        s["linux"] = dict(spec["linux"], cgroupsPath=f"/{cg_name}/{nm}")
        (b / "config.json").write_text(json.dumps(s))

    def one(nm: str) -> float:
        t = time.perf_counter()
        subprocess.run(["runc", "--root", str(state), "run", "-d", "--bundle", str(work / nm), nm],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        return (time.perf_counter() - t) * 1000

    me = os.times()
    u0 = cg_usage(cg)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        lat = list(pool.map(one, names))
    wall = time.perf_counter() - t0
    u1 = cg_usage(cg)
    me2 = os.times()
    for nm in names:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", nm], check=False)
    shutil.rmtree(work, ignore_errors=True)
    # runc made the group in every v1 hierarchy, not only in cpuacct
    for group in [cg, *Path("/sys/fs/cgroup").glob(f"*/{cg_name}")]:
        if group.is_dir() and not group.is_symlink():
            for d in sorted(group.glob("*/"), reverse=True):
                d.rmdir()
            group.rmdir()
    runc_ms = ((me2.children_user + me2.children_system) - (me.children_user + me.children_system))
    return {"count": len(lat), "rate_per_s": round(len(lat) / wall, 1),
            "median_ms": round(statistics.median(lat), 1), "slowest_ms": round(max(lat), 1),
            "cpu_ms_per_launch": round(((u1 - u0) / 1e6 + runc_ms * 1000) / len(lat), 1),
            "split_ms": {"runc run (reaped)": round(runc_ms * 1000 / len(lat), 1),
                         "container cgroup": round((u1 - u0) / 1e6 / len(lat), 1)},
            "loadavg": os.getloadavg()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default="src", help="one tree, or two (a,b) for a paired A/B")
    p.add_argument("--n", default="0,200")
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--threads", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--nic", action="store_true", help="eth0 on the default network")
    p.add_argument("--perf", action="store_true")
    p.add_argument("--perf-g", action="store_true",
                   help="with --perf: also perf record -a -g, kept for perf report")
    p.add_argument("--pyspy", action="store_true")
    p.add_argument("--wchan", action="store_true",
                   help="with --perf: sample what each task of the launches waits in")
    p.add_argument("--runc", action="store_true", help="the raw runc floor too")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of coved and what it starts (e.g. -15: nearer a quiet "
                        "machine's timing on a loaded one; say so with the numbers)")
    p.add_argument("--tmpdir", default="/tmp",
                   help="where the root is made; /tmp's block groups are churned by every "
                        "suite's roots, and there ext4 spends ~10x the CPU on each new inode "
                        "(recently deleted inodes are skipped one by one)")
    p.add_argument("--note", default="")
    p.add_argument("--ab-env", default="",
                   help="A/B of the first tree under two environments: K=V,K=V")
    args = p.parse_args()
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root")
    srcs = [s for s in args.src.split(",") if s]
    variants: list[tuple[str, dict[str, str]]] = [(s, {}) for s in srcs]
    if args.ab_env:
        variants = [(srcs[0], dict([kv.split("=", 1)])) for kv in args.ab_env.split(",")]
    tag = f"{os.getpid()}"
    root = Path(tempfile.mkdtemp(prefix="covescale-par-", dir=args.tmpdir))
    work = Path(tempfile.mkdtemp(prefix="covescale-par-art-", dir="/tmp"))
    cg = CPUACCT / f"covepar-{tag}"
    cg.mkdir()
    import hashlib
    parent = CPUACCT / f"cove-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    cgs = {"coved+conmon+runc": cg, "containers": parent}
    res_path = REPO / "bench" / "results" / f"par-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    res_path.parent.mkdir(exist_ok=True)
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "note": args.note, "args": vars(args), "srcs": srcs,
                           "loadavg_start": os.getloadavg(), "steps": []}
    R = _run_mod()
    art = R.Artifacts(work, "par")
    seq = [0]
    try:
        if args.runc:
            out["runc"] = runc_floor(art, args, tag)
            print(json.dumps({"runc": out["runc"]}), flush=True)
        with Coved(root, srcs[0], cg) as c:
            c.client().import_image(str(art.unified), aliases=["busybox"])
        for n in (int(x) for x in args.n.split(",")):
            with Coved(root, srcs[0], cg) as c:
                cl = c.client()
                have = len(running(cl))
                while have < n:
                    seq[0] += 1
                    launch(cl, f"f{seq[0]}", args.nic)
                    have += 1
            step: dict[str, Any] = {"n": n, "bursts": []}
            out["steps"].append(step)
            for r in range(args.rounds):
                # ABBA: whichever runs second in a round ran ~1 ms of coved CPU
                # per launch dearer in both orders (a trend within the run)
                order = list(enumerate(variants))
                for i, (src, env) in (order if r % 2 == 0 else order[::-1]):
                    with Coved(root, src, cg, env) as c:
                        rec = burst(c, args, seq, f"{'ab'[i]}", cgs,
                                    args.perf and r == 0, args.pyspy and r == 0)
                    rec["round"] = r
                    rec["env"] = env
                    step["bursts"].append(rec)
                    print(json.dumps({"n": n} | rec), flush=True)
                    res_path.write_text(json.dumps(out, indent=1))
    finally:
        out["loadavg_end"] = os.getloadavg()
        res_path.write_text(json.dumps(out, indent=1))
        with Coved(root, srcs[0], cg) as c:
            cl = c.client()
            delete(cl, running(cl))
            for img in cl.images():
                cl.delete_image(img["fingerprint"] if isinstance(img, dict)
                                else img.rsplit("/", 1)[1]).wait()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        try:
            cg.rmdir()
        except OSError as e:
            print(f"cgroup {cg} left: {e}", flush=True)
        print(f"results: {res_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
