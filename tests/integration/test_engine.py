"""The Engine in-process (what the local driver calls), on real containers."""

from __future__ import annotations

import os

import pytest
from covetest import assert_no_leaks, mounts_under, new_name

from cove.api import InstanceExecPost, InstanceSource, InstancesPost
from cove.engine import Engine
from cove.model.errors import BadRequest, Conflict, NotFound


def _image(ref: str) -> InstanceSource:
    """The source of an instance made from local image ``ref`` (alias or fingerprint)."""
    return InstanceSource(type="image", alias=ref)


def _run(engine: Engine, name: str, req: InstanceExecPost) -> tuple[int, bytes, bytes]:
    s = engine.access.exec(name, req)
    try:
        if s.stdin_fd is not None:
            os.close(s.stdin_fd)
            s.stdin_fd = None
        out = err = b""
        assert s.stdout_fd is not None and s.stderr_fd is not None
        while chunk := os.read(s.stdout_fd, 65536):
            out += chunk
        while chunk := os.read(s.stderr_fd, 65536):
            err += chunk
        code = s.wait(30)
        assert code is not None
        return code, out, err
    finally:
        s.close()


def test_bad_requests_raise_before_any_operation(engine: Engine) -> None:
    before = {op.id for op in engine.operations.all()}
    cases = [
        (InstancesPost(name="-bad", source=_image("busybox")), BadRequest),
        (InstancesPost(name="a" * 64, source=_image("busybox")), BadRequest),
        (InstancesPost(name=new_name(), source=_image("busybox"), config={"covetest.x": "1"}),
         BadRequest),
        (InstancesPost(name=new_name(), source=_image("busybox"), config={"limits.memory": "x"}),
         BadRequest),
        (InstancesPost(name=new_name(), source=_image("covetest-noimage")), NotFound),
        (InstancesPost(name=new_name(), source=_image("busybox"), profiles=["covetest-nope"]), NotFound),
    ]
    for req, exc in cases:
        with pytest.raises(exc):
            engine.instances.create(req)
    # no new operation (the image import's may leave the list: 5 s after it ended)
    assert {op.id for op in engine.operations.all()} <= before
    assert os.listdir(engine.root / "instances") == []
    assert engine.instances.all() == []


def test_lifecycle_exec_and_paths(engine: Engine) -> None:
    name = new_name("eng")
    op = engine.instances.create(InstancesPost(name=name, source=_image("busybox"), start=True,
                                              config={"cove.cmd": "sleep 1000"}))
    assert op.wait(60)
    op.raise_for_error()
    with pytest.raises(Conflict):
        engine.instances.create(InstancesPost(name=name, source=_image("busybox")))
    assert engine.instances.state(name)["status"] == "Running"

    code, out, err = _run(engine, name, InstanceExecPost(
        command=["sh", "-c", "id -u; pwd; echo $COVETEST; echo e >&2; exit 6"],
        environment={"COVETEST": "v"}, user="app", cwd="/tmp"))
    assert (code, out, err) == (6, b"1000\n/tmp\nv\n", b"e\n")
    code, out, _ = _run(engine, name, InstanceExecPost(command=["id", "-g"], user=1000, group="root"))
    assert (code, out) == (0, b"0\n")
    code, _, err = _run(engine, name, InstanceExecPost(command=["covetest-nosuchcmd"]))
    assert code == 127 and b"not found" in err
    with pytest.raises(BadRequest):
        engine.access.exec(name, InstanceExecPost(command=["true"], user="covetest-nobody"))
    with pytest.raises(BadRequest):
        engine.access.exec(name, InstanceExecPost(command=["true"], cwd="tmp"))

    # paths must be absolute at the engine (the server maps lxc's relative ones)
    for rel in ("etc/hostname", "", "./etc/hostname"):
        with pytest.raises(BadRequest):
            engine.access.file_get(name, rel)
        with pytest.raises(BadRequest):
            engine.access.file_put(name, rel, data=b"x")
        with pytest.raises(BadRequest):
            engine.access.file_delete(name, rel)
    engine.access.file_put(name, "/root/covetest", data=b"hello\n", mode=0o600, uid=1000, gid=1000)
    info = engine.access.file_get(name, "/root/covetest")
    try:
        assert (info.type, info.mode & 0o777, info.uid, info.gid) == ("file", 0o600, 1000, 1000)
        assert info.fd is not None and os.read(info.fd, 100) == b"hello\n"
    finally:
        if info.fd is not None:
            os.close(info.fd)

    op = engine.instances.change_state(name, "stop", force=True)
    assert op.wait(30)
    op.raise_for_error()
    assert engine.instances.get(name).status.value == "Stopped"
    with pytest.raises(BadRequest):
        engine.access.exec(name, InstanceExecPost(command=["true"]))
    # files of a stopped instance: the rootfs is mounted only for the call
    info = engine.access.file_get(name, "/root/covetest")
    if info.fd is not None:
        os.close(info.fd)
    assert mounts_under(engine.root) == []

    op = engine.instances.delete(name)
    assert op.wait(30)
    op.raise_for_error()
    with pytest.raises(NotFound):
        engine.instances.get(name)
    assert_no_leaks(engine.root)


def _fd_kinds() -> dict[str, int]:
    kinds: dict[str, int] = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        kind = target if target.startswith("anon_inode") else \
            target.split(":")[0] if ":" in target else os.path.basename(target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def test_operations_leave_no_fds_behind(engine: Engine) -> None:
    import gc

    def lifecycle() -> None:
        name = new_name("fds")
        for op in (lambda: engine.instances.create(InstancesPost(
                       name=name, source=_image("busybox"), start=True,
                       config={"cove.cmd": "sleep 1000"})),
                   lambda: engine.instances.change_state(name, "stop", force=True),
                   lambda: engine.instances.delete(name)):
            o = op()
            assert o.wait(60)
            o.raise_for_error()

    lifecycle()  # warm up: lazily made, long-lived things
    gc.collect()
    gc.disable()  # what is released only by the cyclic GC counts as held
    try:
        before = _fd_kinds()
        for _ in range(3):
            lifecycle()
        after = _fd_kinds()
    finally:
        gc.enable()
    assert after == before
