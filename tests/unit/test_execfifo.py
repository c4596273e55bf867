"""Starting a created container through runc's exec fifo (``_execfifo``):
a real fifo and a real child process in the role of runc's init, which
opens its end for writing, writes a byte and goes on (or dies first)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cove.model.errors import InternalError
from cove.runtime._execfifo import start_through_fifo

# What runc init does at the end of its setup (linuxStandardInit.Init):
# open the fifo for writing (blocks until a reader comes), write "0", exec.
_INIT = """
import os, sys, time
time.sleep(float(sys.argv[2]))
fd = os.open(sys.argv[1], os.O_WRONLY)
mode = sys.argv[3]
if mode == "write":
    os.write(fd, b"0")
    os.close(fd)
    time.sleep(30)  # the container's command
elif mode == "close":
    os.close(fd)
    time.sleep(30)
"""


def _state(tmp_path: Path) -> Path:
    d = tmp_path / "c1"
    d.mkdir()
    os.mkfifo(d / "exec.fifo", 0o600)
    return d


def _init(state: Path, mode: str, delay: float = 0.0) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _INIT, str(state / "exec.fifo"),
                             str(delay), mode])


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_init_takes_the_go_and_the_fifo_goes(tmp_path: Path, delay: float) -> None:
    state = _state(tmp_path)
    p = _init(state, "write", delay)  # the open may come before or after ours
    try:
        assert start_through_fifo(state, p.pid, timeout=10) is True
        assert not (state / "exec.fifo").exists()  # runc now reads it as running
        assert p.poll() is None
    finally:
        p.kill()
        p.wait()


def test_no_fifo_says_so(tmp_path: Path) -> None:
    (tmp_path / "c1").mkdir()
    assert start_through_fifo(tmp_path / "c1", os.getpid()) is False


def test_an_init_that_dies_first_is_an_error_not_a_hang(tmp_path: Path) -> None:
    state = _state(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    t = time.monotonic()
    with pytest.raises(InternalError, match="ended before it started"):
        start_through_fifo(state, p.pid, timeout=10)
    assert time.monotonic() - t < 5
    p.wait()
    assert (state / "exec.fifo").exists()  # left for runc delete, as runc leaves it


def test_a_writer_that_closes_without_a_byte_is_an_error(tmp_path: Path) -> None:
    state = _state(tmp_path)
    p = _init(state, "close")
    try:
        with pytest.raises(InternalError, match="ended before it started"):
            start_through_fifo(state, p.pid, timeout=10)
    finally:
        p.kill()
        p.wait()


def test_a_gone_pid_is_an_error(tmp_path: Path) -> None:
    state = _state(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    with pytest.raises(InternalError):
        start_through_fifo(state, p.pid, timeout=10)


def test_timeout(tmp_path: Path) -> None:
    state = _state(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(InternalError, match="did not take the start"):
            start_through_fifo(state, p.pid, timeout=0.3)
    finally:
        p.kill()
        p.wait()
