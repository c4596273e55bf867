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
    mounts_under,
    new_name,
    runc_ids,
    wait_until,
)

N = 50


def _fds(pid: int) -> tuple[int, int]:
    """(fds of coved's SQLite database, every other fd)."""
    db = other = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if os.path.basename(target).startswith("cove.db"):
            db += 1
        else:
            other += 1
    return db, other


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
    assert len(conmon_pids(d.root)) == len(started)
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
    fds, threads = _fds(pid), _threads(pid)
    _round(d)
    wait_until(lambda: _threads(pid) <= threads + 2, timeout=10,
               what=f"coved's threads to settle (was {threads})")
    db, other = _fds(pid)
    # sockets, pipes, pidfds, log and rootfs handles: back where they were
    assert other <= fds[1] + 2, f"coved holds {other} fds, {fds[1]} after the first round"
    # SQLite connections are per thread and closed when the GC collects
    # them, so they float; they must stay bounded, not grow with each round
    assert db <= 4 * N, f"coved holds {db} database fds"
    assert mounts_under(d.root) == []
    assert sorted(os.listdir(d.root / "instances")) == []
