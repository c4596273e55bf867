"""``Runc.state`` tells a created container from a started one as runc
does: created while ``exec.fifo`` is in its state directory and its init is
still runc's stub; a start takes the fifo away (``_execfifo``). No file of
cove's own marks a start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cove.runtime.runc import Runc


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose comm is runc's init stub's (``runc:[2:INIT]``)."""
    exe = tmp_path / "runc:[2:INIT]"
    shutil.copy("/bin/sleep", exe)
    p = subprocess.Popen([str(exe), "60"])
    yield p
    p.kill()
    p.wait()


def _container(rt: Runc, cid: str, pid: int) -> Path:
    d = rt.runc_root / cid
    d.mkdir()
    (d / "state.json").write_text(json.dumps({"init_process_pid": pid,
                                              "init_process_start": 0}))
    return d


def test_created_while_the_exec_fifo_is_there(tmp_path: Path,
                                              stub: subprocess.Popen[bytes]) -> None:
    rt = Runc(tmp_path / "run")
    d = _container(rt, "c1", stub.pid)
    os.mkfifo(d / "exec.fifo")
    st = rt.state("c1")
    assert st is not None and (st.status, st.pid) == ("created", stub.pid)
    (d / "exec.fifo").unlink()  # what a start does
    st = rt.state("c1")
    assert st is not None and st.status == "running"
    assert not list(rt.pids.iterdir())  # nothing of cove's own marks it


def test_started_one_whose_init_runs_its_command(tmp_path: Path) -> None:
    rt = Runc(tmp_path / "run")
    p = subprocess.Popen(["sleep", "60"])
    try:
        d = _container(rt, "c2", p.pid)
        os.mkfifo(d / "exec.fifo")  # left by a start killed after its read
        st = rt.state("c2")
        assert st is not None and st.status == "running"
    finally:
        p.kill()
        p.wait()
