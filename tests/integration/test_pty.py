"""``cove exec NAME -- sh`` on a terminal is a shell: a pty inside, raw bytes
through, window resizes followed, the shell's exit code returned. Driven
through a real pty, as a user's terminal would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from covetest import Api, Coved, Term, mkroot, new_name


def _shell_session(term: Term) -> None:
    term.expect(b"# ")  # the prompt: typing before it could be flushed by the shell
    term.send(b"tty; stty size; echo COVE''MARK1\n")
    out = term.expect(b"COVEMARK1\r\n")
    assert b"/dev/pts/" in out
    assert b"24 80" in out
    term.resize(40, 132)
    time.sleep(0.5)  # SIGWINCH, then a control message, then the pty inside
    term.send(b"stty size; echo COVE''MARK2\n")
    out = term.expect(b"COVEMARK2\r\n")
    assert b"40 132" in out.split(b"COVEMARK1")[-1]
    # raw bytes: ^C goes to the shell's foreground job, not to cove
    term.send(b"sleep 30\n")
    time.sleep(0.5)
    term.send(b"\x03")
    term.send(b"echo after-int $?; echo COVE''MARK3\n")
    out = term.expect(b"COVEMARK3\r\n")
    assert b"after-int 130" in out
    term.send(b"exit 3\n")


def test_cove_exec_on_a_terminal(coved: Coved, api: Api) -> None:
    name = new_name("pty")
    api.launch(name)
    env = coved.cli_env()
    env["TERM"] = "xterm"
    term = Term([sys.executable, "-m", "cove.cli.main", "exec", name, "--", "sh"], env)
    try:
        _shell_session(term)
    finally:
        code = term.close()
    assert code == 3


LXC = shutil.which("lxc")


@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_exec_on_a_terminal(coved: Coved, api: Api) -> None:
    name = new_name("pty")
    api.launch(name)
    home = mkroot("ptyhome")
    try:
        (home / "conf").mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "LXD_CONF": str(home / "conf"), "TERM": "xterm"}
        subprocess.run([LXC, "remote", "add", "covetest-r", f"unix://{coved.socket}"],
                       env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=30)
        term = Term([LXC, "exec", f"covetest-r:{name}", "--", "sh"], env)
        try:
            _shell_session(term)
        finally:
            code = term.close()
        assert code == 3
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_cove_exec_keeps_type_ahead(coved: Coved, api: Api) -> None:
    """What the user typed before the shell was ready reaches it (as with lxc):
    going raw must not flush the terminal's pending input."""
    name = new_name("pty")
    api.launch(name)
    env = coved.cli_env()
    env["TERM"] = "xterm"
    term = Term([sys.executable, "-m", "cove.cli.main", "exec", name, "--", "sh"], env)
    try:
        term.send(b"echo TYPE''AHEAD; exit 4\n")
        term.expect(b"TYPEAHEAD\r\n", timeout=10)
    finally:
        if term.p.poll() is None and b"TYPEAHEAD" not in term.out:
            term.send(b"exit 4\n")
        code = term.close()
    assert code == 4
