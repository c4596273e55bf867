"""Exec sessions end with their client (issue 9, bug 1; lxd#9594, #9750).

A client killed mid-command (``lxc exec`` under ``timeout -s KILL``, a raw
websocket client without a control stream, pylxd's way) takes the command's
whole process tree with it, pipelines and processes that called setsid()
included; ``DELETE /1.0/operations/ID`` does the same and the operation ends
Cancelled. A command that ends on its own keeps what it started in the
background (users start services that way).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import Api, Coved, mkroot, new_name, wait_until

LXC = shutil.which("lxc")


def _secs() -> str:
    """A sleep length no other test (or person) on this host is using."""
    return str(random.randint(100_000, 999_999))


def _pids(*argv: str) -> list[int]:
    """Host pids of the processes whose command line is exactly ``argv``."""
    want = ("\0".join(argv) + "\0").encode()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read() == want:
                        out.append(int(entry))
            except OSError:
                continue
    return out


def _cgroup_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running, not a zombie (a killed process whose parent died waits for
    the container's init to reap it; ``sleep`` as init never does)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] != b"Z"


def _gone(*argv: str, timeout: float = 10) -> None:
    wait_until(lambda: not _pids(*argv), timeout=timeout)
    assert not _pids(*argv), f"{argv} still runs"


def _running(*argv: str, timeout: float = 15) -> None:
    wait_until(lambda: bool(_pids(*argv)), timeout=timeout)
    assert _pids(*argv), f"{argv} never started"


def _exec_ops(api: Api, status: str = "running") -> list[dict]:  # type: ignore[type-arg]
    ops = api.sync("GET", "/1.0/operations?recursion=1").get(status) or []
    return [op for op in ops if op["description"] == "Executing command"]


@pytest.fixture
def inst(api: Api) -> str:
    name = new_name("life")
    api.launch(name)
    return name


@pytest.fixture
def lxc(coved: Coved) -> Iterator[tuple[list[str], dict[str, str]]]:
    """``lxc`` (Debian's 5.0 client) with a private config that reaches coved."""
    if LXC is None:
        pytest.skip("lxc (Debian package lxd-client) missing")
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}
    subprocess.run([LXC, "remote", "add", "cv", f"unix://{coved.socket}"], env=env,
                   check=True, capture_output=True, timeout=30)
    try:
        yield [LXC], env
    finally:
        shutil.rmtree(home, ignore_errors=True)


Lxc = tuple[list[str], dict[str, str]]


def _kill_after(lxc: Lxc, args: list[str], *ready: tuple[str, ...]) -> subprocess.Popen[bytes]:
    """Start ``lxc ARGS``, wait until the processes ``ready`` are in the
    container, then SIGKILL the client (as ``timeout -s KILL`` does)."""
    p = subprocess.Popen([*lxc[0], *args], env=lxc[1], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_until(lambda: all(_pids(*r) for r in ready) or p.poll() is not None,
                          timeout=15) or p.poll() is not None:
            raise AssertionError(f"lxc {args} ended: {p.returncode} "
                                 f"{p.stderr.read() if p.stderr else b''!r}")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    return p


def test_lxc_exec_killed_ends_the_command(lxc: Lxc, inst: str, api: Api) -> None:
    n = _secs()
    _kill_after(lxc, ["exec", f"cv:{inst}", "--", "sleep", n], ("sleep", n))
    _gone("sleep", n)
    wait_until(lambda: not _exec_ops(api), timeout=10)
    assert not _exec_ops(api), "the exec operation is still running"


def test_lxc_exec_killed_ends_the_whole_tree(lxc: Lxc, inst: str) -> None:
    """A pipeline and a process that left the session (setsid) go too: the
    session's cgroup holds them."""
    a, b, c = _secs(), _secs(), _secs()
    script = f"setsid sleep {c} & cat /dev/zero | sleep {b} & sleep {a}"
    _kill_after(lxc, ["exec", f"cv:{inst}", "--", "sh", "-c", script],
                ("sleep", a), ("sleep", b), ("sleep", c), ("cat", "/dev/zero"))
    for n in (a, b, c):
        _gone("sleep", n)
    assert not [pid for pid in _pids("cat", "/dev/zero") if inst in _cgroup_of(pid)]


def test_lxc_exec_interactive_killed(lxc: Lxc, inst: str) -> None:
    """``lxc exec -t`` (a pty in the container) under a killed client."""
    n = _secs()
    _kill_after(lxc, ["exec", "-t", f"cv:{inst}", "--", "sleep", n], ("sleep", n))
    _gone("sleep", n)


_WS_CLIENT = r"""
import asyncio, json, sys, aiohttp
sock, path, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
async def main():
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as s:
        async with s.post("http://lxd" + path, json=body) as r:
            op = (await r.json())["metadata"]
        fds = op["metadata"]["fds"]
        base = "http://lxd/1.0/operations/" + op["id"] + "/websocket?secret="
        streams = [k for k in sorted(fds) if k != "control"]
        conns = [await s.ws_connect(base + fds[k]) for k in streams]
        print(op["id"], flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


def _ws_client(coved: Coved, name: str, command: list[str], *,
               interactive: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """pylxd's way: the data websockets only, no control stream."""
    body = {"command": command, "wait-for-websocket": True, "interactive": interactive}
    p = subprocess.Popen([sys.executable, "-c", _WS_CLIENT, str(coved.socket),
                          f"/1.0/instances/{name}/exec", json.dumps(body)],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout is not None
    op_id = p.stdout.readline().decode().strip()
    assert op_id, "the websocket client did not start"
    return p, op_id


@pytest.mark.parametrize("interactive", [False, True])
def test_websocket_client_without_control_dropped(coved: Coved, api: Api, inst: str,
                                                  interactive: bool) -> None:
    n = _secs()
    p, op_id = _ws_client(coved, inst, ["sh", "-c", f"sleep {n} | cat"],
                          interactive=interactive)
    try:
        _running("sleep", n)
    finally:
        p.kill()
        p.wait(10)
    _gone("sleep", n)
    op = api.wait(op_id, timeout=10)
    assert op["status"] == "Success"
    assert op["metadata"]["return"] == 137


def test_delete_operation_cancels_websocket_exec(coved: Coved, api: Api, inst: str) -> None:
    n = _secs()
    p, op_id = _ws_client(coved, inst, ["sh", "-c", f"sleep {n} | cat"])
    try:
        _running("sleep", n)
        assert api.sync("GET", f"/1.0/operations/{op_id}")["may_cancel"] is True
        api.sync("DELETE", f"/1.0/operations/{op_id}")
        _gone("sleep", n)
        op = api.wait(op_id, timeout=10)
        assert op["status"] == "Cancelled"
    finally:
        p.kill()
        p.wait(10)


def test_delete_operation_cancels_detached_exec(api: Api, inst: str) -> None:
    n = _secs()
    r = api.request("POST", f"/1.0/instances/{inst}/exec", {
        "command": ["sh", "-c", f"sleep {n} | cat"], "wait-for-websocket": False,
        "record-output": True, "interactive": False})
    assert r.status == 202
    op_id = r.json["operation"].rsplit("/", 1)[-1]
    _running("sleep", n)
    api.sync("DELETE", f"/1.0/operations/{op_id}")
    _gone("sleep", n)
    op = api.wait(op_id, timeout=10)
    assert op["status"] == "Cancelled"
    assert op["metadata"]["return"] == 137


def test_delete_operation_before_websockets_connect(api: Api, inst: str) -> None:
    r = api.request("POST", f"/1.0/instances/{inst}/exec", {
        "command": ["true"], "wait-for-websocket": True, "interactive": False})
    op_id = r.json["operation"].rsplit("/", 1)[-1]
    api.sync("DELETE", f"/1.0/operations/{op_id}")
    assert api.wait(op_id, timeout=10)["status"] == "Cancelled"


def _session_cgroups(coved: Coved, name: str) -> list[str]:
    state = json.loads((coved.root / "run" / "runc" / name / "state.json").read_text())
    unified = Path(state["cgroup_paths"][""])
    return [d.name for d in unified.iterdir() if d.name.startswith("cove-exec-")]


def test_finished_command_keeps_its_background_processes(coved: Coved, api: Api,
                                                         inst: str) -> None:
    """``sh -c 'sleep N &'`` is how users start a service: the session's end
    must not take it, and the session's cgroup must not stay behind."""
    n = _secs()
    code, _, _ = api.exec(inst, ["sh", "-c", f"sleep {n} >/dev/null 2>&1 &"])
    assert code == 0
    _running("sleep", n)
    time.sleep(0.5)
    pids = _pids("sleep", n)
    assert pids, "the background process went with its session"
    assert _session_cgroups(coved, inst) == []
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_cove_exec_killed_ends_the_command(coved: Coved, inst: str) -> None:
    n = _secs()
    p = subprocess.Popen([sys.executable, "-m", "cove.cli.main", "exec", inst, "--",
                          "sh", "-c", f"sleep {n} | cat"], env=coved.cli_env(),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        _running("sleep", n)
    finally:
        p.kill()
        p.wait(10)
    _gone("sleep", n)


def test_sessions_end_with_coved(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    """A coved that stops ends its sessions (their clients are cut off); one
    that is killed leaves them, and the next coved ends them at start."""
    d = make_coved("life")
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("life")
    d.api.launch(name)
    for stop in (d.stop, d.kill):
        n = _secs()
        p, _ = _ws_client(d, name, ["sh", "-c", f"sleep {n} | cat"])
        try:
            _running("sleep", n)
            stop()
            if stop == d.kill:
                time.sleep(1)
                assert _pids("sleep", n), "killed coved: nobody ended the session yet"
            d.start()
            _gone("sleep", n)
        finally:
            p.kill()
            p.wait(10)
    assert d.api.status(name) == "Running"


_PYLXD_CLIENT = r"""
import sys, urllib.parse, pylxd
c = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(sys.argv[1], safe=""))
c.instances.get(sys.argv[2]).execute(sys.argv[3:])
"""


def test_pylxd_execute_killed_ends_the_command(coved: Coved, inst: str) -> None:
    n = _secs()
    p = subprocess.Popen([sys.executable, "-c", _PYLXD_CLIENT, str(coved.socket), inst,
                          "sh", "-c", f"sleep {n} | cat"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        if not wait_until(lambda: bool(_pids("sleep", n)) or p.poll() is not None,
                          timeout=30) or p.poll() is not None:
            raise AssertionError(f"pylxd ended: {p.returncode} "
                                 f"{p.stderr.read() if p.stderr else b''!r}")
    finally:
        p.kill()
        p.wait(10)
    _gone("sleep", n)


def test_runc_exec_fallback_ends_the_pipeline(make_coved, busybox_tar: Path,  # type: ignore[no-untyped-def]
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``runc exec`` (no gcc, or COVE_EXEC=runc) has no session cgroup: the
    command's process group goes, a pipeline with it."""
    monkeypatch.setenv("COVE_EXEC", "runc")
    d = make_coved("liferunc")
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("life")
    d.api.launch(name)
    n = _secs()
    p, op_id = _ws_client(d, name, ["sh", "-c", f"cat /dev/zero | sleep {n}"])
    try:
        _running("sleep", n)
        assert not _session_cgroups(d, name)  # runc exec: no session cgroup
        cats = [pid for pid in _pids("cat", "/dev/zero") if name in _cgroup_of(pid)]
        assert cats
    finally:
        p.kill()
        p.wait(10)
    _gone("sleep", n)
    wait_until(lambda: not any(_alive(pid) for pid in cats))
    assert not any(_alive(pid) for pid in cats)
    assert d.api.wait(op_id, timeout=10)["metadata"]["return"] == 137


def test_lxc_operation_delete_cancels_exec(lxc: Lxc, inst: str, api: Api) -> None:
    """``lxc operation delete`` (which answered "cannot be cancelled")."""
    n = _secs()
    p = subprocess.Popen([*lxc[0], "exec", f"cv:{inst}", "--", "sh", "-c", f"sleep {n} | cat"],
                         env=lxc[1], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        _running("sleep", n)
        (op,) = [o for o in _exec_ops(api)
                 if f"/1.0/instances/{inst}" in o["resources"].get("instances", [])]
        d = subprocess.run([*lxc[0], "operation", "delete", f"cv:{op['id']}"], env=lxc[1],
                           capture_output=True, timeout=30, check=False)
        assert d.returncode == 0, d.stderr
        _gone("sleep", n)
        assert api.wait(op["id"], timeout=10)["status"] == "Cancelled"
        p.wait(15)  # lxc ends with the operation
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
