"""What a running container costs the host, the parts cove chose (issue 14,
docs/performance.md "Host memory per container"): its monitor is cove's
own static one, which maps no shared library (or, with
``COVE_MONITOR=conmon``, conmon loading the stub libsystemd and none of
libsystemd's dependencies), and still monitors (the console log, the exit
code); the masked directories outside /proc are a
read-only bind of one empty directory, not a tmpfs (a superblock) each, and
still show nothing and take no write; /dev, /dev/shm and /run are
directories of one tmpfs for all containers, fresh at each start and gone
at the stop, and /sys/fs/cgroup (v1) a read-only skeleton, so a container
has no filesystem of its own beyond its rootfs, proc, sysfs, devpts and
mqueue. One in-process engine on a root of its own.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import close_engine, mkroot, new_name, start_engine

from cove.api import InstanceExecPost, InstanceSource, InstancesPost
from cove.engine import Engine
from cove.runtime.spec import MASKED_PATHS

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("readelf")),
                                reason="needs gcc and readelf (scripts/setup.sh)")


@pytest.fixture(scope="module")
def engine(busybox_tar: Path) -> Iterator[Engine]:
    root = mkroot("hostmem")
    e: Engine = start_engine(root, busybox_tar)
    try:
        yield e
    finally:
        close_engine(e, root)


def _run(e: Engine, name: str, *cmd: str) -> tuple[int | None, str]:
    s = e.access.exec(name, InstanceExecPost(command=list(cmd)))
    try:
        assert s.stdout_fd is not None
        out = b""
        while chunk := os.read(s.stdout_fd, 65536):
            out += chunk
        return s.wait(30), out.decode()
    finally:
        s.close()


def test_conmon_stub_and_bind_masks(engine: Engine) -> None:
    name = new_name("mem")
    op = engine.instances.create(InstancesPost(
        name=name, source=InstanceSource(type="image", alias="busybox"), start=True,
        config={"cove.cmd": "sh -c 'echo hello-console; exec sleep 1000'"},
        devices={"eth0": {"type": "none"}}))
    assert op.wait(60)
    op.raise_for_error()
    root = engine.root
    monitor = int((root / "run" / "pids" / f"{name}.conmon").read_text())
    maps = Path(f"/proc/{monitor}/maps").read_text()
    if os.environ.get("COVE_MONITOR") == "conmon":
        assert f"{root}/run/bin/conmon-libs-" in maps and "libsystemd.so.0" in maps
        for lib in ("libgcrypt", "liblzma", "libzstd", "liblz4", "libgpg-error"):
            assert lib not in maps, lib
    else:
        exe = os.readlink(f"/proc/{monitor}/exe")
        assert exe.startswith(f"{root}/run/bin/cove-monitor-"), exe
        assert "libglib" not in maps and "libsystemd" not in maps
    # the monitor still does its work: the output reaches the console log
    log = root / "instances" / name / "console.log"
    deadline = time.monotonic() + 10
    while b"hello-console" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"hello-console" in log.read_bytes()

    pid = engine.runtime.state(name).pid  # type: ignore[union-attr]
    fstypes = {}
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            fstypes[fields[4]] = fields[fields.index("-") + 1]
    sys_masks = [p for p in MASKED_PATHS if p.startswith("/sys/") and os.path.isdir(p)]
    assert sys_masks, "nothing to mask on this host: the test proves nothing"
    for d in sys_masks:
        assert fstypes[d] != "tmpfs", (d, fstypes[d])
        code, out = _run(engine, name, "ls", "-A", d)
        assert code == 0 and out == "", (d, out)
        code, _ = _run(engine, name, "touch", f"{d}/x")
        assert code != 0
    if os.path.isdir("/proc/acpi"):  # read-only now, not a tmpfs
        assert fstypes["/proc/acpi"] == "proc"
        code, _ = _run(engine, name, "touch", "/proc/acpi/x")
        assert code != 0
    assert not any((root / "run" / "empty").iterdir())

    op = engine.instances.change_state(name, "stop", force=True)
    assert op.wait(60)
    op.raise_for_error()


def _superblocks(pid: int) -> dict[str, str]:
    """Mount point -> device (major:minor) in ``pid``'s mount namespace."""
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        return {line.split()[4]: line.split()[2] for line in f}


def _launch(engine: Engine, name: str, **kw: object) -> int:
    op = engine.instances.create(InstancesPost(
        name=name, source=InstanceSource(type="image", alias="busybox"), start=True,
        devices={"eth0": {"type": "none"}}, **kw))  # type: ignore[arg-type]
    assert op.wait(60)
    op.raise_for_error()
    state = engine.runtime.state(name)
    assert state is not None and state.pid
    return state.pid


def test_no_filesystem_of_its_own_but_the_kernels(engine: Engine) -> None:
    a, b = new_name("sba"), new_name("sbb")
    pids = [_launch(engine, a), _launch(engine, b)]
    try:
        mine = [_superblocks(p) for p in pids]
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            host = {line.split()[2] for line in f}
        # /dev, /dev/shm and /run: one tmpfs for both, not the host's either
        for d in ("/dev/shm", "/run"):
            assert mine[0][d] == mine[1][d] == mine[0]["/dev"], (d, mine)
        assert mine[0]["/dev"] not in host
        # what is each one's own: rootfs, proc, devpts, mqueue, sysfs
        own = [set(m.values()) - host - set(mine[1 - i].values()) for i, m in enumerate(mine)]
        assert [len(o) for o in own] == [5, 5], own
        if engine.runtime.cgroupfs.names():  # a v1 host: the skeleton, on the shared
            # tmpfs, which systemd requires /sys/fs/cgroup to be on v1
            assert mine[0]["/sys/fs/cgroup"] == mine[0]["/dev"]
            code, out = _run(engine, a, "stat", "-f", "-c", "%T", "/sys/fs/cgroup")
            assert (code, out.strip()) == (0, "tmpfs"), out
            code, out = _run(engine, a, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
            assert code == 0 and out.strip().isdigit(), out

        # a working /dev: runc's nodes, links, a console, /dev/shm for anyone
        code, out = _run(engine, a, "sh", "-c",
                         "echo x > /dev/null && head -c 3 /dev/urandom | wc -c && "
                         "readlink /dev/ptmx && readlink /dev/fd && test -c /dev/console && "
                         "touch /dev/shm/s /run/r && stat -c %a /dev/shm")
        assert code == 0 and out.split() == ["3", "pts/ptmx", "/proc/self/fd", "1777"], out
        code, out = _run(engine, b, "ls", "/dev/shm", "/run")
        assert code == 0 and "s" not in out.split() and "r" not in out.split(), out

        # fresh at each start, as a tmpfs would be; gone with the container
        op = engine.instances.change_state(a, "restart", force=True)
        assert op.wait(60)
        op.raise_for_error()
        code, out = _run(engine, a, "ls", "-A", "/dev/shm", "/run")
        assert code == 0 and out.split() == ["/dev/shm:", "/run:"], out
        assert engine._rootfs.scratch_names() == sorted([a, b])
    finally:
        for n in (a, b):
            op = engine.instances.change_state(n, "stop", force=True)
            assert op.wait(60)
    assert engine._rootfs.scratch_names() == []


def test_what_a_container_leaves_in_dev_and_run_is_removed_without_following_it(
        engine: Engine, tmp_path: Path) -> None:
    # the directories are removed by coved on the host side: a link the
    # container made there must go as a link, not take the host's files along
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("host file\n")
    name = new_name("hostile")
    _launch(engine, name)
    code, out = _run(engine, name, "sh", "-c",
                     f"ln -s {canary} /run/to-host && ln -s {canary}/keep /dev/shm/file && "
                     "mkdir -p /run/deep/er && ln -s / /run/deep/er/root && echo ok")
    assert (code, out.strip()) == (0, "ok"), out
    op = engine.instances.change_state(name, "stop", force=True)
    assert op.wait(60)
    op.raise_for_error()
    assert engine._rootfs.scratch_names() == []
    assert (canary / "keep").read_text() == "host file\n"
    engine.instances.delete(name).wait(60)
