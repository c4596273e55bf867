"""The LXD limit keys: values checked when set, mapped as LXD maps them."""

from __future__ import annotations

import pytest

from cove.engine._limits import HostLimits
from cove.model import config as cfg
from cove.model.errors import BadRequest


@pytest.mark.parametrize("config, words", [
    ({"limits.cpu": "0-99999"}, "no CPU has a number that high"),
    ({"limits.cpu": "3-1"}, "backwards"),
    ({"limits.memory": "99999999999TB"}, "more than 8EiB"),
    ({"limits.memory": "1MB"}, "at least 4MiB"),
    ({"limits.processes": str(2**63)}, "too large"),
    ({"limits.cpu.allowance": "0%"}, "use 50% or 25ms/100ms"),
    ({"limits.cpu.allowance": "5ms/5000ms"}, "the period must be 1ms to 1000ms"),
    ({"limits.cpu.allowance": "0ms/100ms"}, "the quota at least 1ms"),
    ({"limits.cpu.allowance": f"{2**50}ms/100ms"}, "quota too large"),
    ({"limits.cpu.priority": "11"}, "limits.cpu.priority '11': an integer from 0 to 10"),
    ({"limits.cpu.priority": "-1"}, "limits.cpu.priority"),
    ({"limits.disk.priority": "high"}, "limits.disk.priority 'high'"),
    ({"limits.memory.enforce": "medium"}, "limits.memory.enforce 'medium': hard or soft"),
    ({"limits.memory.swap": "maybe"}, "limits.memory.swap 'maybe': true or false"),
])
def test_bad_limit_values_name_the_key(config: dict[str, str], words: str) -> None:
    with pytest.raises(BadRequest, match=words.replace("(", r"\(")):
        cfg.validate_config(config)


def test_good_limit_values() -> None:
    good = {"limits.cpu.priority": "0", "limits.disk.priority": "10",
            "limits.memory.enforce": "soft", "limits.memory.swap": "false",
            "limits.cpu.allowance": "25ms/100ms", "limits.memory": "1GiB"}
    assert cfg.validate_config(good) == good


def test_memory_mapping_matches_lxd() -> None:
    gib = 2**30
    r = cfg.resources_from_config({"limits.memory": "1GiB"})
    assert (r.memory, r.memory_reservation, r.memory_swap) == (gib, int(gib * 0.9), None)
    r = cfg.resources_from_config({"limits.memory": "1GiB", "limits.memory.swap": "false"})
    assert (r.memory, r.memory_swap) == (gib, gib)  # memory + swap = memory: no swap
    r = cfg.resources_from_config({"limits.memory": "1GiB", "limits.memory.enforce": "soft"})
    assert (r.memory, r.memory_reservation, r.memory_swap) == (None, gib, None)
    r = cfg.resources_from_config({"limits.memory.swap": "false"})
    assert (r.memory, r.memory_reservation, r.memory_swap) == (None, None, None)


def _host(*, cpus: int = 2, disk: str | None = "blkio.bfq.weight", swap: bool = True,
          cpu_file: str | None = "cpu.shares") -> HostLimits:
    h = HostLimits()
    h._v2 = False
    h._cpus = set(range(cpus))
    h._disk_file = disk
    h._swap = swap
    h._cpu_file = cpu_file
    return h


def test_host_check_refuses_what_this_host_cannot_do() -> None:
    h = _host(cpus=2)
    h.check({"limits.cpu": "2"})
    h.check({"limits.cpu": "0-1"})
    with pytest.raises(BadRequest, match=r"limits.cpu '3': this host has 2 CPUs"):
        h.check({"limits.cpu": "3"})
    with pytest.raises(BadRequest, match="CPU 4 is not online"):
        h.check({"limits.cpu": "0,4"})
    nodisk = _host(disk=None)
    with pytest.raises(BadRequest, match="limits.disk.priority cannot be enforced on this "
                                         "host: its cgroups have no blkio.weight or "
                                         "blkio.bfq.weight"):
        nodisk.check({"limits.disk.priority": "5"})
    noswap = _host(swap=False)
    noswap.check({"limits.memory.swap": "true"})
    with pytest.raises(BadRequest, match="swapaccount=1"):
        noswap.check({"limits.memory.swap": "false"})
    with pytest.raises(BadRequest, match="limits.cpu.priority cannot be enforced"):
        _host(cpu_file=None).check({"limits.cpu.priority": "1"})
    # only what changes is checked: an instance keeps its old keys on such a host
    nodisk.check({"limits.disk.priority": "5", "user.x": "1"}, {"limits.disk.priority": "5"})


def test_apply_writes_lxds_values(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[str, str, str, str]] = []
    monkeypatch.setattr("cove.runtime.cgroups.write_value",
                        lambda c, r, f, v: writes.append((c, r, f, v)))
    h = _host()
    h.apply("/cove/c1", {"limits.cpu.priority": "3", "limits.disk.priority": "0",
                         "limits.memory.swap": "false"})
    assert writes == [("cpu", "/cove/c1", "cpu.shares", "1017"),
                      ("blkio", "/cove/c1", "blkio.bfq.weight", "10"),
                      ("memory", "/cove/c1", "memory.swappiness", "0")]
    writes.clear()
    # live: only the changed keys, an unset one back to the default
    h.apply("/cove/c1", {"limits.disk.priority": "0"},
            {"limits.cpu.priority": "3", "limits.disk.priority": "0"})
    assert writes == [("cpu", "/cove/c1", "cpu.shares", "1024")]
    writes.clear()
    h.apply("/cove/c1", {}, None)
    assert writes == []


def test_apply_on_cgroup_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[str, str, str, str]] = []
    monkeypatch.setattr("cove.runtime.cgroups.write_value",
                        lambda c, r, f, v: writes.append((c, r, f, v)))
    h = _host(disk="io.weight", cpu_file="cpu.weight")
    h._v2 = True
    h.apply("/cove/c1", {"limits.cpu.priority": "3", "limits.disk.priority": "2",
                         "limits.memory.swap": "false"})
    assert writes == [("cpu", "/cove/c1", "cpu.weight", "93"),
                      ("blkio", "/cove/c1", "io.weight", "200"),
                      ("memory", "/cove/c1", "memory.swap.max", "0")]
    writes.clear()
    # limits.memory removed: runc cannot lift v2's soft limit (memory.low), so it is written
    h.apply("/cove/c1", {}, {"limits.memory": "1GiB"})
    assert writes == [("memory", "/cove/c1", "memory.low", "0")]
