"""cove-monitor: builds warning-free, is cached, is refused (conmon then)
when it cannot be had or ``COVE_MONITOR=conmon``; and speaks conmon's
protocol to cove (sync pipe, pid file, k8s-file log and its cap, exit file,
attach socket, ctl fifo) with a stand-in for runc that starts a plain
process as the "container".

What it does with real containers is what the integration tests of the
console, logs, exec, lifecycle and recovery show under the default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cove.runtime import _monitor, _nsexec
from cove.runtime.runc import _read_sync

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# Does what `runc create` does for the monitor: writes the pid of a process
# (which outlives it: the monitor, a subreaper, inherits it) to --pid-file.
FAKE_RUNC = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in --pid-file) pf=$2; shift;; --bundle) b=$2; shift;; esac; shift
done
if [ -e "$b/fail" ]; then
  echo 'time="t" level=error msg="no \\"such\\" thing"' >&2; exit 1
fi
sh "$b/cmd" </dev/null &
echo $! > "$pf"
"""


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    return _monitor.build(tmp_path_factory.mktemp("bin"), strict=True)


@needs_gcc
def test_builds_with_werror_is_cached_and_answers_version(monitor: Path, tmp_path: Path) -> None:
    assert monitor.name.startswith("cove-monitor-")
    assert monitor.stat().st_mode & 0o777 == 0o700
    res = subprocess.run([str(monitor), "--version"], capture_output=True, timeout=10,
                         check=False)
    assert res.stdout.decode().strip() == _monitor.VERSION
    (tmp_path / "cove-monitor-0123456789abcdef").write_text("an older build")
    first = _monitor.build(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert _monitor.build(tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


@needs_gcc
def test_selection_and_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("COVE_MONITOR", raising=False)
    m = _monitor.Monitor(tmp_path / "bin")
    path = m.path()
    assert path is not None and Path(path).name.startswith("cove-monitor-")
    monkeypatch.setenv("COVE_MONITOR", "conmon")
    assert m.path() is None  # asked for conmon
    monkeypatch.setenv("COVE_MONITOR", "cove")
    broken = _monitor.Monitor(tmp_path / "bin2", cc=str(tmp_path / "no-such-cc"))
    with caplog.at_level(logging.WARNING, logger="cove.runtime"):
        assert broken.path() is None and broken.path() is None
    assert [r.getMessage() for r in caplog.records].count(
        caplog.records[0].getMessage()) == 1  # said once
    assert "monitored by conmon" in caplog.records[0].getMessage()


class _Run:
    """One container handed to a monitor as ``Runc.create`` hands it, in a
    scratch tree ``d/<cid>``; ``pool``: the monitors it may share."""

    def __init__(self, monitor: Path, d: Path, cmd: str, *, fail: bool = False,
                 size_max: int = 16 * 2**20, cid: str = "c1",
                 pool: _monitor.SharedMonitors | None = None) -> None:
        self.d = d
        self.cid = cid
        for sub in ("bundle", "exits", "attach", "pids"):
            (d / sub).mkdir(exist_ok=True)
        self.bundle = d / "bundle" / cid
        self.bundle.mkdir()
        (self.bundle / "cmd").write_text(cmd)
        if fail:
            (self.bundle / "fail").touch()
        runc = d / "fake-runc"
        if not runc.exists():
            runc.write_text(FAKE_RUNC)
            runc.chmod(0o700)
        self.pool = pool or _monitor.SharedMonitors(d)
        r, w = os.pipe()
        options = ["--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
                   "-r", str(runc), "-b", str(self.bundle), "-p", str(d / f"pids/{cid}.pid"),
                   "--exit-dir", str(d / "exits"), "-l", f"k8s-file:{self.bundle}/console.log",
                   "--log-size-max", str(size_max),
                   "--conmon-pidfile", str(d / f"pids/{cid}.conmon"),
                   "--socket-dir-path", str(d / "attach"), "--runtime-arg", "--root=x",
                   "--log-level", "error", "--no-sync-log"]
        try:
            self.monitor_pid = self.pool.create(str(monitor), cid, options, w, lambda: -1)
        finally:
            os.close(w)
        try:
            data = _read_sync(r, 10)
        finally:
            os.close(r)
        self.msg = json.loads(data) if data else {}

    def exit_code(self, timeout: float = 10) -> str:
        f = self.d / "exits" / self.cid
        deadline = time.monotonic() + timeout
        while not f.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return f.read_text()

    def log_lines(self) -> list[list[str]]:
        return [line.split(" ", 3) for line in
                (self.bundle / "console.log").read_text().splitlines()]


@needs_gcc
def test_reports_the_pid_logs_and_writes_the_exit_code(monitor: Path, tmp_path: Path) -> None:
    run = _Run(monitor, tmp_path, "echo out1; printf part; sleep 0.1; echo err1 >&2; exit 3")
    pid = run.msg["data"]
    assert pid == int((tmp_path / "pids/c1.pid").read_text())
    mon = int((tmp_path / "pids/c1.conmon").read_text())
    assert mon == run.monitor_pid
    assert Path(f"/proc/{mon}/comm").read_text().strip() == "cove-monitor"
    assert os.readlink(tmp_path / "attach" / "c1") == str(run.bundle)
    assert run.exit_code() == "3"
    lines = run.log_lines()
    assert [(s, t, x) for _, s, t, x in lines] == [
        ("stdout", "F", "out1"), ("stdout", "P", "part"), ("stderr", "F", "err1")]
    assert lines[0][0][4] == "-" and lines[0][0][10] == "T"  # RFC 3339, local offset
    assert not (tmp_path / "attach" / "c1").is_symlink()  # gone with the container
    _wait(lambda: not (tmp_path / "pids/c1.conmon").exists())  # its last step
    run.pool.close()
    _wait(lambda: not _alive(mon))  # retired and empty: it exits


@needs_gcc
def test_attach_socket_ctl_fifo_and_log_cap(monitor: Path, tmp_path: Path) -> None:
    run = _Run(monitor, tmp_path, "sleep 0.3; for i in 1 2 3 4 5 6; do echo line$i; done; "
               "sleep 0.3; echo after-reopen; sleep 0.5; exit 0", size_max=200)
    assert run.msg["data"] > 0
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(str(tmp_path / "attach" / "c1" / "attach"))
    sock.settimeout(5)
    got = b""
    while b"line6" not in got:
        packet = sock.recv(8193)
        assert packet[0] == 2  # stdout
        got += packet[1:]
    # the cap: 200 bytes hold three lines of ~51; the file started afresh
    text = (run.bundle / "console.log").read_text()
    assert "line6" in text and "line1" not in text and len(text) <= 200
    fd = os.open(run.bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"2 0 0\n")
    os.close(fd)
    deadline = time.monotonic() + 5
    while "line6" in (run.bundle / "console.log").read_text() \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.exit_code() == "0"
    assert [x for *_, x in run.log_lines()] == ["after-reopen"]
    rest = b""
    while packet := sock.recv(8193):  # to the end: the container went
        rest += packet[1:]
    assert rest == b"after-reopen\n"
    sock.close()


@needs_gcc
def test_runtime_failure_is_reported_with_runcs_words(monitor: Path, tmp_path: Path) -> None:
    run = _Run(monitor, tmp_path, "true", fail=True)
    assert run.msg["data"] == -1
    assert 'msg="no \\"such\\" thing"' in run.msg["message"]
    assert not (tmp_path / "exits" / "c1").exists()
    assert not (tmp_path / "attach" / "c1").is_symlink()
    assert not (tmp_path / "pids" / "c1.conmon").exists()  # before the answer
    run.pool.close()


@needs_gcc
def test_refuses_options_it_does_not_implement(monitor: Path, tmp_path: Path) -> None:
    pool = _monitor.SharedMonitors(tmp_path)
    r, w = os.pipe()
    try:
        pool.create(str(monitor), "x", ["--exec", "-c", "x"], w, lambda: -1)
    finally:
        os.close(w)
    assert json.loads(_read_sync(r, 10)) == {"data": -1, "message": "unknown option --exec"}
    os.close(r)
    pool.close()
    res = subprocess.run([str(monitor), "-c", "x"], capture_output=True, timeout=10, check=False)
    assert res.returncode == 1 and b"usage" in res.stderr


def _wait(pred: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().split(b") ")[1][:1] != b"Z"
    except OSError:
        return False


@needs_gcc
def test_containers_share_a_monitor_of_k_then_a_new_one(
        monitor: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_MONITOR_SHARE", "2")
    pool = _monitor.SharedMonitors(tmp_path)
    gate = tmp_path / "gate"
    wait = f"while [ ! -e {gate} ]; do sleep 0.02; done; "
    runs = [_Run(monitor, tmp_path, wait + f"echo out{i}; exit {i + 5}", cid=f"c{i}", pool=pool)
            for i in range(3)]
    pids = [run.monitor_pid for run in runs]
    assert pids[0] == pids[1] != pids[2] and all(run.msg["data"] > 0 for run in runs)
    first = pids[0]
    gate.touch()
    assert [run.exit_code() for run in runs] == ["5", "6", "7"]
    assert [[x for *_, x in run.log_lines()] for run in runs] == [["out0"], ["out1"], ["out2"]]
    _wait(lambda: not _alive(first))  # retired at its second create, exits when both ended
    assert _alive(pids[2])  # the current one stays until its last container is deleted
    pool.forget("c2")
    _wait(lambda: not _alive(pids[2]))


@needs_gcc
def test_parallel_creates_all_get_their_pid(monitor: Path, tmp_path: Path) -> None:
    pool = _monitor.SharedMonitors(tmp_path)
    runs: dict[int, _Run] = {}

    def one(i: int) -> None:
        runs[i] = _Run(monitor, tmp_path, f"sleep 0.3; exit {i}", cid=f"p{i}", pool=pool)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({run.monitor_pid for run in runs.values()}) == 1
    assert all(run.msg["data"] > 0 for run in runs.values()), [r.msg for r in runs.values()]
    assert [runs[i].exit_code() for i in range(10)] == [str(i) for i in range(10)]
    pool.close()
    _wait(lambda: not _alive(runs[0].monitor_pid))


def test_the_build_path_changes_with_any_of_its_files(tmp_path: Path) -> None:
    files = [tmp_path / p.name for p in _monitor.SOURCES]
    for src, dst in zip(_monitor.SOURCES, files, strict=True):
        dst.write_bytes(src.read_bytes())
    first = _nsexec._digest("gcc", [], files)
    seen = {first}
    for f in files:  # the header too: it is compiled into both .c files
        data = f.read_bytes()
        f.write_bytes(data + b"\n")
        seen.add(_nsexec._digest("gcc", [], files))
        f.write_bytes(data)
    assert len(seen) == len(files) + 1
    assert _nsexec._digest("gcc", [], files) == first
