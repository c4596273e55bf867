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
import time
from pathlib import Path

import pytest

from cove.runtime import _monitor

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# Does what `runc create` does for the monitor: writes the pid of a process
# (which outlives it: the monitor, a subreaper, inherits it) to --pid-file.
FAKE_RUNC = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in --pid-file) pf=$2; shift;; esac; shift
done
if [ -n "$FAKE_FAIL" ]; then
  echo 'time="t" level=error msg="no \\"such\\" thing"' >&2; exit 1
fi
sh -c "$FAKE_CMD" </dev/null &
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
    """The monitor started as ``Runc.create`` starts it, in a scratch tree."""

    def __init__(self, monitor: Path, d: Path, cmd: str, *, fail: bool = False,
                 size_max: int = 16 * 2**20) -> None:
        self.d = d
        for sub in ("bundle", "exits", "attach", "pids"):
            (d / sub).mkdir()
        runc = d / "fake-runc"
        runc.write_text(FAKE_RUNC)
        runc.chmod(0o700)
        r, w = os.pipe()
        env = {"PATH": "/usr/bin:/bin", "_OCI_SYNCPIPE": str(w), "FAKE_CMD": cmd,
               **({"FAKE_FAIL": "1"} if fail else {})}
        args = [str(monitor), "--api-version", "1", "-c", "c1", "-u", "c1", "-n", "c1",
                "-r", str(runc), "-b", str(d / "bundle"), "-p", str(d / "pids/c1.pid"),
                "--exit-dir", str(d / "exits"), "-l", f"k8s-file:{d / 'bundle/console.log'}",
                "--log-size-max", str(size_max), "--conmon-pidfile", str(d / "pids/c1.conmon"),
                "--socket-dir-path", str(d / "attach"), "--runtime-arg", "--root=x",
                "--log-level", "error", "--no-sync-log"]
        p = subprocess.Popen(args, pass_fds=(w,), env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
        os.close(w)
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
        os.close(r)
        _, self.stderr = p.communicate(timeout=10)
        self.first_exit = p.returncode
        self.msg = json.loads(data) if data else {}

    def exit_code(self, timeout: float = 10) -> str:
        f = self.d / "exits" / "c1"
        deadline = time.monotonic() + timeout
        while not f.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return f.read_text()

    def log_lines(self) -> list[list[str]]:
        return [line.split(" ", 3) for line in
                (self.d / "bundle/console.log").read_text().splitlines()]


@needs_gcc
def test_reports_the_pid_logs_and_writes_the_exit_code(monitor: Path, tmp_path: Path) -> None:
    run = _Run(monitor, tmp_path, "echo out1; printf part; sleep 0.1; echo err1 >&2; exit 3")
    assert run.first_exit == 0
    pid = run.msg["data"]
    assert pid == int((tmp_path / "pids/c1.pid").read_text())
    mon = int((tmp_path / "pids/c1.conmon").read_text())
    assert Path(f"/proc/{mon}/comm").read_text().strip() == "cove-monitor"
    assert os.readlink(tmp_path / "attach" / "c1") == str(tmp_path / "bundle")
    assert run.exit_code() == "3"
    lines = run.log_lines()
    assert [(s, t, x) for _, s, t, x in lines] == [
        ("stdout", "F", "out1"), ("stdout", "P", "part"), ("stderr", "F", "err1")]
    assert lines[0][0][4] == "-" and lines[0][0][10] == "T"  # RFC 3339, local offset
    assert not (tmp_path / "attach" / "c1").is_symlink()  # gone with the monitor


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
    text = (tmp_path / "bundle/console.log").read_text()
    assert "line6" in text and "line1" not in text and len(text) <= 200
    fd = os.open(tmp_path / "bundle" / "ctl", os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"2 0 0\n")
    os.close(fd)
    deadline = time.monotonic() + 5
    while "line6" in (tmp_path / "bundle/console.log").read_text() \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.exit_code() == "0"
    assert [x for *_, x in run.log_lines()] == ["after-reopen"]
    rest = b""
    while packet := sock.recv(8193):  # to the end: the monitor went
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


@needs_gcc
def test_refuses_options_it_does_not_implement(monitor: Path) -> None:
    res = subprocess.run([str(monitor), "--exec", "-c", "x"], capture_output=True,
                         timeout=10, check=False)
    assert res.returncode == 1 and b"unknown option --exec" in res.stderr
