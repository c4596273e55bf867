"""The CLI starts coved when nobody answers on the socket."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time

import pytest

from cove.cli import daemon
from cove.cli.context import Context
from cove.model.errors import CoveError

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)

# A stand-in daemon: serves GET /1.0 on ROOT/unix.socket, as coved would.
FAKE_COVED = r"""
import http.server, json, os, socketserver, sys
root = sys.argv[sys.argv.index("--root") + 1]
print("fake coved starting", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"type": "sync", "status": "Success", "status_code": 200,
                           "metadata": {"api_version": "1.0"}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
path = os.path.join(root, "unix.socket")
if os.path.exists(path):
    os.unlink(path)
with open(os.path.join(root, "fake.pid"), "w") as f:
    f.write(str(os.getpid()))
socketserver.UnixStreamServer(path, H).serve_forever()
"""


def _stop(root: str) -> None:
    try:
        with open(os.path.join(root, "fake.pid")) as f:
            os.kill(int(f.read()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def test_default_command_runs_the_server_module() -> None:
    assert daemon.daemon_command("/r") == [sys.executable, "-m", "cove.server.main",
                                           "--root", "/r"]


def test_starts_daemon_detached_and_waits(cove_dir: str) -> None:
    root = os.path.join(cove_dir, "root")  # missing: made 0700
    try:
        t0 = time.monotonic()
        daemon.ensure_daemon(root, [sys.executable, "-c", FAKE_COVED, "--root", root])
        assert time.monotonic() - t0 < 10
        assert daemon.answers(os.path.join(root, "unix.socket"))
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        with open(os.path.join(root, "coved.log")) as f:
            assert "fake coved starting" in f.read()
        with open(os.path.join(root, "fake.pid")) as f:
            pid = int(f.read())
        assert os.getsid(pid) == pid  # its own session: it outlives the command
        # Already answering: nothing new is started.
        daemon.ensure_daemon(root, [sys.executable, "-c", "raise SystemExit(9)"])
    finally:
        _stop(root)


def test_context_client_autostarts(cove_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVE_NO_AUTOSTART", raising=False)
    monkeypatch.setattr(daemon, "daemon_command",
                        lambda root: [sys.executable, "-c", FAKE_COVED, "--root", root])
    ctx = Context(cove_dir)
    try:
        assert ctx.client().server() == {"api_version": "1.0"}
    finally:
        ctx.close()
        _stop(cove_dir)


def test_daemon_that_exits_is_reported_with_its_log(cove_dir: str) -> None:
    cmd = [sys.executable, "-c", "import sys; print('no runc here'); sys.exit(3)"]
    with pytest.raises(CoveError, match=r"exited with status 3 .*coved\.log: no runc here"):
        daemon.ensure_daemon(cove_dir, cmd)


def test_daemon_that_never_answers_times_out(cove_dir: str) -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(2)"]
    with pytest.raises(CoveError, match="did not answer .* within 0.3 s"):
        daemon.ensure_daemon(cove_dir, cmd, timeout=0.3)


def test_unwritable_root_is_a_clear_error(cove_dir: str) -> None:
    blocker = os.path.join(cove_dir, "file")
    open(blocker, "w").close()
    with pytest.raises(CoveError, match="cannot start coved in"):
        daemon.ensure_daemon(os.path.join(blocker, "root"))


def test_waits_for_a_coved_that_is_still_starting(cove_dir: str) -> None:
    # Another coved holds the root lock and listens only after a while; the one
    # we start steps aside at once, and we wait for the first.
    slow = ("import fcntl, os, sys, time\n"
            f"fd = os.open({cove_dir!r} + '/coved.lock', os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "time.sleep(0.3)\n" + FAKE_COVED)
    import subprocess

    first = subprocess.Popen([sys.executable, "-c", slow, "--root", cove_dir])
    try:
        deadline = time.monotonic() + 5
        while not daemon._root_held(cove_dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.ensure_daemon(cove_dir, [sys.executable, "-c", "raise SystemExit(1)"])
        assert daemon.answers(os.path.join(cove_dir, "unix.socket"))
    finally:
        first.terminate()
        first.wait()
