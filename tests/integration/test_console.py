"""The console of a system container (issue 9, "Console"): ``lxc console``
under a real pty reaches the shell busybox init runs on /dev/console, with
the terminal's size (initial and resized), detaches with Ctrl+a q and can
come back; ``lxc console --show-log`` shows what was on it, ``DELETE
.../console`` clears it; one client at a time; an application container
has no console and says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import covetest
import pytest
from covetest import Api, Coved, mkroot, new_name, wait_until

LXC = shutil.which("lxc")
pytestmark = pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")

# busybox init: a login shell on the console, respawned when it exits
INITTAB = b"::sysinit:/bin/true\n::respawn:-/bin/sh\n::shutdown:/bin/true\n"


class Term(covetest.Term):
    """``lxc ARGS`` on the slave side of a pty we hold the master of."""

    def detach(self) -> int:
        """Ctrl+a, then q: lxc looks at one key per read."""
        self.send(b"\x01")
        time.sleep(0.3)
        self.send(b"q")
        return self.wait()

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait(5)
            os.close(self.master)


@pytest.fixture
def lxc(coved: Coved) -> Iterator[tuple[list[str], dict[str, str]]]:
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8", "TERM": "xterm"}
    subprocess.run([str(LXC), "remote", "add", "cv", f"unix://{coved.socket}"], env=env,
                   check=True, capture_output=True, timeout=30)
    try:
        yield [str(LXC)], env
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def system(api: Api) -> str:
    """A running system container (the image's init) with a shell on its console."""
    name = new_name("con")
    api.create(name)
    assert api.file_put(name, "/etc/inittab", INITTAB).status == 200
    api.action(name, "start")
    return name


def _console(lxc: tuple[list[str], dict[str, str]], name: str, rows: int = 24,
             cols: int = 80) -> Term:
    term = Term([*lxc[0], "console", f"cv:{name}"], lxc[1], rows, cols)
    term.expect(b"+a q")  # lxc's banner: attached
    return term


def _shell(term: Term, command: str, marker: str) -> bytes:
    """Run ``command`` on the console's shell; its output up to ``marker``."""
    term.send(f"{command}; echo {marker[:3]}''{marker[3:]}\n".encode())
    out = term.expect(marker.encode() + b"\r\n")
    return out[out.rfind(command.encode()):]


def _show_log(lxc: tuple[list[str], dict[str, str]], name: str) -> bytes:
    p = subprocess.run([*lxc[0], "console", f"cv:{name}", "--show-log"], env=lxc[1],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _console_ops(api: Api, status: str) -> list[dict]:  # type: ignore[type-arg]
    ops = api.sync("GET", "/1.0/operations?recursion=1").get(status) or []
    return [op for op in ops if op["description"] == "Showing console"]


def test_lxc_console_shell_size_detach_and_log(lxc, api: Api, system: str) -> None:  # type: ignore[no-untyped-def]
    term = _console(lxc, system, rows=33, cols=111)
    term.send(b"\n")
    out = _shell(term, "stty size", "COVEMARK1")
    assert b"33 111" in out, out
    # /dev/console in the container is this terminal
    api.sh(system, "echo FROM''EXEC > /dev/console")
    term.expect(b"FROMEXEC")
    term.resize(40, 132)  # lxc sends window-resize on SIGWINCH
    wait_until(lambda: b"40 132" in _shell(term, "stty size", "COVEMARK2"), timeout=10)
    assert term.detach() == 0
    wait_until(lambda: not _console_ops(api, "running"), timeout=10)
    assert not _console_ops(api, "running")

    # detaching left the shell there: attach again, it still answers
    term = _console(lxc, system)
    term.send(b"\n")
    _shell(term, "echo again", "COVEMARK3")
    assert term.detach() == 0

    log = _show_log(lxc, system)
    assert b"COVEMARK1" in log and b"COVEMARK3" in log
    api.sync("DELETE", f"/1.0/instances/{system}/console")
    assert b"COVEMARK1" not in _show_log(lxc, system)
    assert api.status(system) == "Running"


def test_one_console_client_at_a_time(lxc, api: Api, system: str) -> None:  # type: ignore[no-untyped-def]
    term = _console(lxc, system)
    try:
        second = Term([*lxc[0], "console", f"cv:{system}"], lxc[1], 24, 80)
        second.expect(b"already in use")
        assert second.wait() != 0
    finally:
        assert term.detach() == 0


def test_console_ends_when_the_instance_stops(lxc, api: Api, system: str) -> None:  # type: ignore[no-untyped-def]
    term = _console(lxc, system)
    api.action(system, "stop", force=True)
    assert term.wait(20) == 0
    wait_until(lambda: not _console_ops(api, "running"), timeout=10)
    assert not _console_ops(api, "running")


def test_application_container_has_no_console(lxc, api: Api) -> None:  # type: ignore[no-untyped-def]
    name = new_name("app")
    api.launch(name)  # cove.cmd: plain pipes
    r = api.request("POST", f"/1.0/instances/{name}/console", {"type": "console"})
    assert r.status == 400 and "has no console" in r.error, r.body
    log = _show_log(lxc, name)  # the log is there all the same
    assert log is not None


def test_cove_console(coved: Coved, api: Api, system: str) -> None:
    """``cove console``: the same console, detach keys in one read, the log."""
    env = coved.cli_env()
    env["TERM"] = "xterm"
    cove = [sys.executable, "-m", "cove.cli.main"]
    term = Term([*cove, "console", system], env, rows=30, cols=100)
    term.expect(b"+a q")
    term.send(b"\n")
    assert b"30 100" in _shell(term, "stty size", "COVEMARK4")
    term.resize(35, 120)
    wait_until(lambda: b"35 120" in _shell(term, "stty size", "COVEMARK5"), timeout=10)
    term.send(b"\x01q")
    assert term.wait() == 0
    wait_until(lambda: not _console_ops(api, "running"), timeout=10)
    p = subprocess.run([*cove, "console", system, "--show-log"], env=env, capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert p.returncode == 0 and b"COVEMARK5" in p.stdout, p
    p = subprocess.run([*cove, "console", system, "--clear-log"], env=env,
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert p.returncode == 0, p
    assert b"COVEMARK5" not in api.request("GET", f"/1.0/instances/{system}/console").body
