"""50 instances launched and deleted through the REST API leave the host as
they found it, and coved as well (file descriptors, threads)."""

from __future__ import annotations

import os
from pathlib import Path

from covetest import (
    Coved,
    assert_no_leaks,
    cgroup_dirs,
    conmon_pids,
    monitors_of,
    mounts_under,
    new_name,
    runc_ids,
    wait_until,
)

N = 50


# Per-thread SQLite connections and pyroute2 sockets (with their event loops)
# are released only when the GC collects them, so their fds float with GC
# timing; test_engine.py::test_operations_leave_no_fds_behind pins that down
# deterministically. Everything else must be back exactly.
_GC_LAZY = ("cove.db", "socket", "anon_inode:[eventpoll]")


def _fd_kinds(pid: int) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target if target.startswith("anon_inode") else \
            target.split(":")[0] if ":" in target else target
        if os.path.basename(kind).startswith("cove.db"):
            kind = "cove.db"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _settled(pid: int) -> dict[str, int]:
    return {k: v for k, v in _fd_kinds(pid).items() if k not in _GC_LAZY}


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _round(d: Coved) -> None:
    api = d.api
    names = [new_name("many") for _ in range(N)]
    started = set(names[::2])
    # every create at once: the operations run side by side in coved
    pending = []
    for n in names:
        config = {"cove.cmd": "sleep 1000"}
        r = api.request("POST", "/1.0/instances", {
            "name": n, "source": {"type": "image", "alias": "busybox"},
            "config": config, "start": n in started})
        assert r.status == 202, r.body
        pending.append(r)
    for r in pending:
        op = api.wait(r, 120)
        assert op["status"] == "Success", op
    listed = {i["name"]: i["status"] for i in api.sync("GET", "/1.0/instances?recursion=1")}
    assert listed == {n: "Running" if n in started else "Stopped" for n in names}
    assert sorted(runc_ids(d.root)) == sorted(started)
    assert sorted(set(monitors_of(d.root, started).values())) == sorted(conmon_pids(d.root))
    assert len(cgroup_dirs(d.root, started)) >= len(started)
    assert api.sh(min(started), "echo ok") == b"ok\n"

    pending = [api.request("PUT", f"/1.0/instances/{n}/state",
                           {"action": "stop", "force": True}) for n in sorted(started)]
    for r in pending:
        assert api.wait(r, 120)["status"] == "Success"
    pending = [api.request("DELETE", f"/1.0/instances/{n}") for n in names]
    for r in pending:
        op = api.wait(r, 120)
        assert op["status"] == "Success", op
    assert api.names() == []
    assert_no_leaks(d.root, timeout=10)


def test_fifty_instances_leave_nothing(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("many")
    d.api.import_image(busybox_tar, "busybox")
    pid = d.proc.pid
    _round(d)  # warm up: pools, caches, lazily made threads
    fds, threads = _settled(pid), _threads(pid)
    assert "anon_inode:[pidfd]" not in fds  # nothing is watched: nothing runs
    _round(d)
    wait_until(lambda: _threads(pid) <= threads + 2, timeout=10,
               what=f"coved's threads to settle (was {threads})")
    # pidfds, pipes, the log, the lock, rootfs handles: back exactly
    wait_until(lambda: _settled(pid) == fds, timeout=5,
               what=f"coved's fds to be {fds}, not {_settled(pid)}")
    # and the GC-lazy ones stay bounded, not growing with each round
    lazy = sum(v for k, v in _fd_kinds(pid).items() if k in _GC_LAZY)
    assert lazy <= 8 * N, f"coved holds {lazy} database and socket fds"
    assert mounts_under(d.root) == []
    assert sorted(os.listdir(d.root / "instances")) == []
