"""A start lets the created container run through runc's exec fifo, in coved,
instead of a ``runc start`` process (issue 14: a Go process fewer per
launch): runc itself must agree the container runs, and a stop and a start
again, a restart and a delete work as before. One in-process engine on a
root of its own.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import close_engine, leaks, mkroot, new_name, start_engine

from cove.api import InstanceSource, InstancesPost
from cove.engine import Engine


@pytest.fixture(scope="module")
def engine(busybox_tar: Path) -> Iterator[Engine]:
    root = mkroot("startfifo")
    e: Engine = start_engine(root, busybox_tar)
    try:
        yield e
    finally:
        close_engine(e, root)


def _runc(e: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runc", "--root", str(e.runtime.runc_root), *args],
                          capture_output=True, text=True, check=False, timeout=30)


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def _assert_runs(e: Engine, name: str) -> int:
    st = e.runtime.state(name)
    assert st is not None and st.status == "running"
    assert not (e.runtime.runc_root / name / "exec.fifo").exists()
    assert json.loads(_runc(e, "state", name).stdout)["status"] == "running"  # runc agrees
    assert _comm(st.pid) == "sleep"  # the command, not runc's init stub
    return st.pid


def test_started_without_runc_start_and_runc_agrees(engine: Engine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    real = engine.runtime._runc

    def spy(*args: str, **kw: object) -> object:
        calls.append(args)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.runtime, "_runc", spy)
    name = new_name("fifo")
    op = engine.instances.create(InstancesPost(
        name=name, source=InstanceSource(type="image", alias="busybox"), start=True,
        config={"cove.cmd": "sleep 1000"}, devices={"eth0": {"type": "none"}}))
    assert op.wait(60)
    op.raise_for_error()
    first = _assert_runs(engine, name)
    r = _runc(engine, "start", name)  # runc too sees nothing left to start
    assert r.returncode != 0
    for action in ("restart", "stop", "start"):
        op = engine.instances.change_state(name, action, force=True)
        assert op.wait(60)
        op.raise_for_error()
        if action != "stop":
            assert _assert_runs(engine, name) != first
    op = engine.instances.delete(name, force=True)
    assert op.wait(60)
    op.raise_for_error()
    assert leaks(engine.root) == []
    assert not [c for c in calls if c[0] == "start"], calls  # no runc start process
