"""Each running instance's rootfs is mounted only in its own mount namespaces
(issue 14): none in the host's table however many run, none in another
container's, and everything that reaches the files of a running instance
(files API, exec, a disk hot-plugged) goes through its init's root. A
stopped one's rootfs is mounted in coved's namespace only while in use, and
a start while it is in use shares that mount. A restarted engine finds its
running containers' files again. One in-process engine on a root of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import close_engine, leaks, mkroot, mounts_under, new_name, start_engine

from cove.api import InstanceExecPost, InstanceSource, InstancesPost
from cove.engine import Engine
from cove.model.errors import Conflict

N = 4


def _host_mount_points() -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return {line.split()[4] for line in f}


def _mount_points(pid: int) -> list[str]:
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f]


def _run(engine: Engine, name: str, *cmd: str) -> str:
    s = engine.access.exec(name, InstanceExecPost(command=list(cmd)))
    try:
        assert s.stdout_fd is not None
        out = b""
        while chunk := os.read(s.stdout_fd, 65536):  # small outputs: stderr cannot block it
            out += chunk
        assert s.wait(30) == 0
        return out.decode()
    finally:
        s.close()


def _read(engine: Engine, name: str, path: str) -> bytes:
    info = engine.access.file_get(name, path)
    assert info.fd is not None
    with open(info.fd, "rb") as f:
        return f.read()


class Env:
    """The module's engine; a test may replace it with a restarted one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine


@pytest.fixture(scope="module")
def env(busybox_tar: Path) -> Iterator[Env]:
    root = mkroot("rootfsns")
    box = Env(start_engine(root, busybox_tar))
    try:
        yield box
    finally:
        close_engine(box.engine, root)  # the module's last engine


@pytest.fixture
def engine(env: Env) -> Engine:
    return env.engine


def _launch(e: Engine, name: str, **devices: dict[str, str]) -> int:
    op = e.instances.create(InstancesPost(
        name=name, source=InstanceSource(type="image", alias="busybox"), start=True,
        config={"cove.cmd": "sleep 1000"}, devices={"eth0": {"type": "none"}, **devices}))
    assert op.wait(60)
    op.raise_for_error()
    state = e.runtime.state(name)
    assert state is not None and state.status == "running"
    return state.pid


def test_running_rootfs_only_in_its_own_namespace(engine: Engine, tmp_path: Path) -> None:
    root = engine.root
    host_before = _host_mount_points()
    share = tmp_path / "share"
    share.mkdir()
    (share / "hello").write_text("from the host\n")
    names = [new_name("ns") for _ in range(N)]
    pids = [_launch(engine, n, data={"type": "disk", "source": str(share), "path": "/mnt/data"})
            if i == 0 else _launch(engine, n) for i, n in enumerate(names)]
    # the host's table holds no overlay of cove's, however many run
    assert mounts_under(root) == []
    new = {m for m in _host_mount_points() - host_before if m.startswith(str(root))}
    assert new == set()
    for name, pid in zip(names, pids, strict=True):
        rootfs = str(root / "instances" / name / "rootfs")
        others = [str(root / "instances" / n) for n in names if n != name]
        inside = _mount_points(pid)
        # the container's own table: its own mounts only, no other instance's rootfs
        assert not [m for m in inside if any(m.startswith(o) for o in others)], inside
        assert "/" in inside and len(inside) < 40, inside
        monitor = int((root / "run" / "pids" / f"{name}.conmon").read_text())
        if os.environ.get("COVE_MONITOR") == "conmon":
            # conmon stays in the namespace the create ran in, with the overlay
            assert rootfs in _mount_points(monitor)
        else:  # cove-monitor leaves it once runc create is done, so it goes
            assert os.readlink(f"/proc/{monitor}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
        assert not [m for m in _mount_points(monitor) if any(m.startswith(o) for o in others)]
        # the files API and exec see one filesystem, through the init's root
        engine.access.file_put(name, "/root/marker", data=name.encode())
        assert _run(engine, name, "cat", "/root/marker") == name
        assert _read(engine, name, "/root/marker") == name.encode()
        assert (root / "instances" / name / "upper" / "root" / "marker").read_bytes() == \
            name.encode()  # written to its upper layer (what snapshots and publish copy)
        assert not os.path.ismount(rootfs)
    assert _run(engine, names[0], "cat", "/mnt/data/hello") == "from the host\n"
    # a disk hot-plugged into a running one: made and mounted through its root
    engine.instances.update(names[1], patch=True, devices={
        "hot": {"type": "disk", "source": str(share), "path": "/srv/hot"}})
    assert _run(engine, names[1], "cat", "/srv/hot/hello") == "from the host\n"
    assert mounts_under(root) == []
    for n in names:
        engine.instances.delete(n, force=True).wait(60)
    assert leaks(root, names) == []


def test_stopped_rootfs_mounted_only_while_used(engine: Engine) -> None:
    root = engine.root
    name = new_name("st")
    _launch(engine, name)
    engine.instances.change_state(name, "stop", force=True).wait(60)
    engine.access.file_put(name, "/root/when-stopped", data=b"stopped\n")
    assert _read(engine, name, "/root/when-stopped") == b"stopped\n"
    assert mounts_under(root) == []  # mounted for each call only
    # a start while a stopped user holds the mount shares that mount
    rootfs = engine._rootfs  # the refcount has no public handle
    with rootfs.held(name) as path:
        assert os.path.ismount(path)
        (path / "root" / "held").write_text("held\n")
        engine.instances.change_state(name, "start").wait(60)
        assert _run(engine, name, "cat", "/root/held", "/root/when-stopped") == \
            "held\nstopped\n"
        (path / "root" / "late").write_text("late\n")  # one overlay: the container sees it
        assert _run(engine, name, "cat", "/root/late") == "late\n"
    assert mounts_under(root) == []
    with rootfs.held(name) as path:  # running now: its init's root
        assert str(path).startswith("/proc/")
    # a pid is only its init's while that process lives: another start time
    # (the pid reused after an exit not yet seen) is refused, not followed
    runs = engine._runs  # the run table has no public handle
    pid, start = runs.root_pids[name]
    assert start is not None
    runs.root_pids[name] = (pid, start + 1)
    try:
        with pytest.raises(Conflict, match="stopped meanwhile"):
            engine.access.file_get(name, "/root/held")
    finally:
        runs.root_pids[name] = (pid, start)
    assert _read(engine, name, "/root/held") == b"held\n"
    engine.instances.delete(name, force=True).wait(60)
    assert leaks(root, [name]) == []


def test_restarted_engine_finds_running_rootfs(env: Env) -> None:
    root = env.engine.root
    name = new_name("re")
    _launch(env.engine, name)
    env.engine.access.file_put(name, "/root/before", data=b"1")
    env.engine.access.file_put(name, "/run/old", data=b"3")  # on the old coved's shared tmpfs
    env.engine.close()  # as a coved that stops while its container runs
    again = env.engine = Engine(root)
    again.startup()
    assert _read(again, name, "/root/before") == b"1"
    again.access.file_put(name, "/root/after", data=b"2")
    assert _run(again, name, "cat", "/root/before", "/root/after", "/run/old") == "123"
    # restarted by the new coved: /run on its own shared tmpfs, empty
    assert again.instances.change_state(name, "restart", force=True).wait(60)
    assert _run(again, name, "ls", "-A", "/run") == ""
    assert again._rootfs.scratch_names() == [name]
    again.instances.change_state(name, "stop", force=True).wait(60)
    assert again._rootfs.scratch_names() == []
    assert mounts_under(root) == []
    assert _read(again, name, "/root/after") == b"2"
    again.instances.delete(name, force=True).wait(60)
    assert leaks(root, [name]) == []
