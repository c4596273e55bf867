"""limits.memory, limits.processes and limits.cpu reach the cgroups and hold."""

from __future__ import annotations

import time
from pathlib import Path

from covetest import Api, Coved, cgroup_parent, new_name, wait_until


def cg(coved: Coved, name: str, controller: str, key: str) -> str:
    return (Path("/sys/fs/cgroup") / controller / cgroup_parent(coved.root) / name / key) \
        .read_text().strip()


def test_memory_limit(api: Api, coved: Coved) -> None:
    name = new_name("mem")
    api.launch(name, config={"limits.memory": "64MiB"})
    assert int(cg(coved, name, "memory", "memory.limit_in_bytes")) == 64 * 2**20
    # a 32 MiB buffer fits, a 200 MiB one gets the process OOM-killed
    code, _, err = api.exec(name, ["dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1"])
    assert code == 0, err
    stray = Path.cwd() / "oom"  # conmon's OOM marker, if written where coved runs
    existed = stray.exists()
    code, _, _ = api.exec(name, ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
    assert code == 137
    assert int(cg(coved, name, "memory", "memory.failcnt")) > 0
    time.sleep(0.2)
    assert existed or not stray.exists(), "an 'oom' file was written outside cove's root"
    assert api.status(name) == "Running"  # the container itself lives on
    # raised live, the same allocation now succeeds
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"limits.memory": "512MiB"}})
    assert int(cg(coved, name, "memory", "memory.limit_in_bytes")) == 512 * 2**20
    code, _, err = api.exec(name, ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
    assert code == 0, err


def test_process_limit(api: Api, coved: Coved) -> None:
    name = new_name("pids")
    api.launch(name, config={"limits.processes": "10"})
    assert cg(coved, name, "pids", "pids.max") == "10"
    script = "for i in $(seq 50); do sleep 100 >/dev/null 2>&1 & done; exit 0"
    api.exec(name, ["sh", "-c", script])
    procs = [int(p) for p in cg(coved, name, "pids", "cgroup.procs").split()]
    assert 2 <= len(procs) <= 10, procs
    sleepers = [p for p in procs
                if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"100"]]
    assert 1 <= len(sleepers) < 10, sleepers
    assert int(cg(coved, name, "pids", "pids.current")) <= 10
    events = dict(line.split() for line in cg(coved, name, "pids", "pids.events").splitlines())
    assert int(events["max"]) > 0  # forks were refused
    # raised live: room for more
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"limits.processes": "100"}})
    assert cg(coved, name, "pids", "pids.max") == "100"
    api.exec(name, ["sh", "-c", "for i in $(seq 30); do sleep 100 >/dev/null 2>&1 & done"])
    assert len(cg(coved, name, "pids", "cgroup.procs").split()) >= 30


def _cpu_seconds(coved: Coved, name: str) -> float:
    return int(cg(coved, name, "cpuacct", "cpuacct.usage")) / 1e9


def test_cpu_limit(api: Api, coved: Coved) -> None:
    name = new_name("cpu")
    api.launch(name, config={"limits.cpu": "1"})
    assert cg(coved, name, "cpu", "cpu.cfs_quota_us") == "100000"
    assert cg(coved, name, "cpu", "cpu.cfs_period_us") == "100000"
    # two busy loops on a 2-core host get about one core between them
    api.exec(name, ["sh", "-c", "for i in 1 2; do (while :; do :; done) >/dev/null 2>&1 & done"])
    wait_until(lambda: len(cg(coved, name, "pids", "cgroup.procs").split()) >= 3,
               what="the busy loops to start")
    used0, t0 = _cpu_seconds(coved, name), time.monotonic()
    time.sleep(1.5)
    rate = (_cpu_seconds(coved, name) - used0) / (time.monotonic() - t0)
    assert rate < 1.3, f"{rate:.2f} CPUs used under limits.cpu=1"

    # live: half a CPU through an allowance, then a cpuset
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"limits.cpu.allowance": "50%"}})
    assert cg(coved, name, "cpu", "cpu.cfs_quota_us") == "50000"
    used0, t0 = _cpu_seconds(coved, name), time.monotonic()
    time.sleep(1.5)
    rate = (_cpu_seconds(coved, name) - used0) / (time.monotonic() - t0)
    assert rate < 0.75, f"{rate:.2f} CPUs used under limits.cpu.allowance=50%"

    api.action(name, "stop", force=True)
    api.sync("PATCH", f"/1.0/instances/{name}",
             {"config": {"limits.cpu": "0-0", "limits.cpu.allowance": ""}})  # LXD: pin with a range
    api.action(name, "start")
    assert cg(coved, name, "cpuset", "cpuset.cpus") == "0"
    assert cg(coved, name, "cpu", "cpu.cfs_quota_us") == "-1"
