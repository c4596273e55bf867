"""The LXD limit keys beyond memory/cpu/processes reach the cgroups at start
and live, and a key this host cannot enforce is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from covetest import Api, Coved, cgroup_parent, new_name

from cove.runtime import cgroups

V2 = cgroups.is_v2()


def cg(coved: Coved, name: str, controller: str, key: str) -> str:
    base = Path("/sys/fs/cgroup") if V2 else Path("/sys/fs/cgroup") / controller
    return (base / cgroup_parent(coved.root) / name / key).read_text().strip()


def _patch(api: Api, name: str, config: dict[str, str]) -> None:
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": config})


@pytest.mark.skipif(V2, reason="this file's memory assertions read cgroup v1 knobs")
def test_memory_enforce_and_swap(api: Api, coved: Coved) -> None:
    name = new_name("msw")
    api.launch(name, config={"limits.memory": "64MiB", "limits.memory.swap": "false"})
    mib = 2**20
    assert int(cg(coved, name, "memory", "memory.limit_in_bytes")) == 64 * mib
    assert int(cg(coved, name, "memory", "memory.memsw.limit_in_bytes")) == 64 * mib
    assert cg(coved, name, "memory", "memory.swappiness") == "0"
    # LXD's hard limit comes with a soft one 10% below
    assert int(cg(coved, name, "memory", "memory.soft_limit_in_bytes")) == \
        int(64 * mib * 0.9) // 4096 * 4096
    # live: the limit grows above the old memsw (runc orders the writes)
    _patch(api, name, {"limits.memory": "128MiB"})
    assert int(cg(coved, name, "memory", "memory.limit_in_bytes")) == 128 * mib
    assert int(cg(coved, name, "memory", "memory.memsw.limit_in_bytes")) == 128 * mib
    # swap back on: memsw unlimited, swappiness back to the default
    _patch(api, name, {"limits.memory.swap": "true"})
    assert int(cg(coved, name, "memory", "memory.memsw.limit_in_bytes")) > 2**60
    assert cg(coved, name, "memory", "memory.swappiness") == "60"
    # soft: no hard limit, the value becomes the soft limit; a 200 MiB buffer fits
    _patch(api, name, {"limits.memory.enforce": "soft"})
    assert int(cg(coved, name, "memory", "memory.limit_in_bytes")) > 2**60
    assert int(cg(coved, name, "memory", "memory.soft_limit_in_bytes")) == 128 * mib
    code, _, err = api.exec(name, ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
    assert code == 0, err
    _patch(api, name, {"limits.memory.enforce": "hard"})
    assert int(cg(coved, name, "memory", "memory.limit_in_bytes")) == 128 * mib
    code, _, _ = api.exec(name, ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])
    assert code == 137


def test_cpu_and_disk_priority(api: Api, coved: Coved) -> None:
    name = new_name("prio")
    config = {"limits.cpu.priority": "2"}
    disk = cgroups.find_file("blkio", ("io.weight", "io.bfq.weight") if V2
                             else ("blkio.weight", "blkio.bfq.weight"))
    if disk is not None:
        config["limits.disk.priority"] = "3"
    api.launch(name, config=config)
    shares, full = ("cpu.weight", 100) if V2 else ("cpu.shares", 1024)
    assert int(cg(coved, name, "cpu", shares)) == full - 8  # LXD: full - (10 - priority)
    _patch(api, name, {"limits.cpu.priority": "10"})
    assert int(cg(coved, name, "cpu", shares)) == full
    _patch(api, name, {"limits.cpu.priority": "0"})
    assert int(cg(coved, name, "cpu", shares)) == full - 10
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"limits.cpu.priority": ""}})
    assert int(cg(coved, name, "cpu", shares)) == full
    if disk is None:
        r = api.request("PATCH", f"/1.0/instances/{name}",
                        {"config": {"limits.disk.priority": "3"}})
        assert r.status == 400 and "cannot be enforced on this host" in r.error
        return
    weight = cg(coved, name, "blkio", disk).split()[-1]  # io.weight reads "default N"
    assert int(weight) == 300
    _patch(api, name, {"limits.disk.priority": "0"})
    assert int(cg(coved, name, "blkio", disk).split()[-1]) == 10


def test_limit_values_beyond_this_host_are_refused(api: Api) -> None:
    ncpu = len(cgroups_online())
    name = new_name("lim")
    for config, words in (
            ({"limits.cpu": "0-99999"}, "limits.cpu"),
            ({"limits.cpu": str(ncpu + 1)}, f"this host has {ncpu} CPUs"),
            ({"limits.cpu": f"{ncpu}"}, None),
            ({"limits.cpu": f"0,{ncpu + 5}"}, "not online"),
            ({"limits.memory": "99999999999TB"}, "limits.memory"),
            ({"limits.processes": str(2**64)}, "limits.processes"),
            ({"limits.cpu.allowance": "5ms/5000ms"}, "limits.cpu.allowance"),
            ({"limits.cpu.priority": "11"}, "limits.cpu.priority"),
            ({"limits.disk.priority": "-1"}, "limits.disk.priority"),
            ({"limits.memory.enforce": "medium"}, "limits.memory.enforce"),
            ({"limits.memory.swap": "maybe"}, "limits.memory.swap")):
        r = api.request("POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "alias": "busybox"}, "config": config})
        if words is None:
            assert r.status == 202, r.body
            api.made.append(name)
            api.wait(r)
            api.remove(name)
            continue
        assert r.status == 400, (config, r.status, r.body)
        assert words in r.error, (config, r.error)
        assert api.request("GET", f"/1.0/instances/{name}").status == 404


def cgroups_online() -> set[int]:
    from cove.model.config import cpu_set

    return cpu_set(Path("/sys/devices/system/cpu/online").read_text())
