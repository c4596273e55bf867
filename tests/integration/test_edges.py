"""Edges of the lifecycle and of exec that a user meets sooner or later."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

from covetest import Api, Coved, assert_no_leaks, new_name, wait_until


def _cove(coved: Coved, *args: str, input: bytes | None = None,
          check: bool = True) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=coved.cli_env(),
                       input=input, capture_output=True, timeout=60, check=False,
                       stdin=None if input is not None else subprocess.DEVNULL)
    assert not check or p.returncode == 0, p.stderr
    return p


def test_start_failures_leave_nothing(api: Api, coved: Coved) -> None:
    for config, word in [({"cove.cmd": "/covetest/nonexistent"}, "nonexistent"),
                         ({"cove.cmd": "/etc/hostname"}, "permission denied")]:
        name = new_name("fail")
        api.create(name, config=config)
        r = api.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
        op = api.wait(r) if r.status == 202 else None
        if op is not None:
            assert op["status"] == "Failure", op
            assert word in op["err"], op["err"]  # runc's reason reaches the user
        else:
            assert 400 <= r.status < 600
        assert api.status(name) == "Stopped"
        assert_no_leaks(coved.root, [name], existing=True)
        # fixed, it starts
        api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"cove.cmd": "sleep 1000"}})
        api.action(name, "start")
        assert api.sh(name, "echo ok") == b"ok\n"


def test_init_environment_user_and_cwd(api: Api) -> None:
    name = new_name("env")
    api.launch(name, "sh -c 'id -u > /tmp/init-id; pwd > /tmp/init-pwd; exec sleep 1000'",
               config={"environment.COVETEST_VAR": "hello world", "cove.uid": "1000",
                       "cove.gid": "1000", "cove.cwd": "/home/app"})
    env = api.sh(name, "tr '\\0' '\\n' < /proc/1/environ", user=1000)
    assert b"COVETEST_VAR=hello world\n" in env
    assert api.sh(name, "cat /tmp/init-id /tmp/init-pwd") == b"1000\n/home/app\n"
    assert api.sh(name, "stat -c %u /proc/1") == b"1000\n"
    # exec gets the instance's environment.* too, as in LXD
    assert api.sh(name, "echo $COVETEST_VAR") == b"hello world\n"


def test_restart_keeps_an_ephemeral_instance(api: Api, coved: Coved) -> None:
    name = new_name("eph")
    api.launch(name, ephemeral=True)
    pid = api.state(name)["pid"]
    api.action(name, "restart", force=True)
    st = api.state(name)
    assert st["status"] == "Running" and st["pid"] not in (0, pid)
    api.action(name, "stop", force=True)
    wait_until(lambda: api.request("GET", f"/1.0/instances/{name}").status == 404,
               what="the ephemeral instance to go")
    assert_no_leaks(coved.root, [name])


def test_recreated_name_starts_clean(api: Api, coved: Coved) -> None:
    name = new_name("again")
    api.launch(name, "sh -c 'echo covetest-first-life; sleep 1000'")
    wait_until(lambda: b"first-life" in api.request(
        "GET", f"/1.0/instances/{name}/logs/console.log").body, what="output")
    api.exec(name, ["sh", "-c", "echo old-exec-output"])
    api.sh(name, "echo old > /root/old-file")
    api.remove(name)
    api.launch(name, "sh -c 'echo covetest-second-life; sleep 1000'")
    wait_until(lambda: b"second-life" in api.request(
        "GET", f"/1.0/instances/{name}/logs/console.log").body, what="output")
    log = api.request("GET", f"/1.0/instances/{name}/logs/console.log").body
    assert b"first-life" not in log
    logs = api.sync("GET", f"/1.0/instances/{name}/logs")
    assert [x for x in logs if "exec_" in x] == []
    assert api.file_get(name, "/root/old-file").status == 404


def test_big_exec_output_and_input(coved: Coved, api: Api) -> None:
    name = new_name("big")
    api.launch(name)
    api.sh(name, "dd if=/dev/urandom of=/tmp/big bs=1M count=24 2>/dev/null")
    want = api.sh(name, "md5sum /tmp/big").split()[0].decode()
    out = _cove(coved, "exec", name, "--", "cat", "/tmp/big").stdout
    assert len(out) == 24 * 2**20 and hashlib.md5(out).hexdigest() == want
    back = _cove(coved, "exec", name, "--", "sh", "-c", "cat > /tmp/back; md5sum /tmp/back",
                 input=out).stdout
    assert back.split()[0].decode() == want
    # and the same file over the files API
    r = api.file_get(name, "/tmp/big")
    assert r.status == 200 and hashlib.md5(r.body).hexdigest() == want


def test_exec_sees_stdin_eof(coved: Coved, api: Api) -> None:
    name = new_name("eof")
    api.launch(name)
    p = _cove(coved, "exec", name, "--", "sh", "-c", "cat; echo after-eof", input=b"in\n")
    assert p.stdout == b"in\nafter-eof\n"
    p = _cove(coved, "exec", name, "--", "sh", "-c", "cat; echo after-eof", input=b"")
    assert p.stdout == b"after-eof\n"


def test_signal_to_cove_reaches_the_command(coved: Coved, api: Api) -> None:
    name = new_name("sig")
    api.launch(name)
    script = "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done"
    p = subprocess.Popen([sys.executable, "-m", "cove.cli.main", "exec", name, "--",
                          "sh", "-c", script],
                         env=coved.cli_env(), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 42
        assert p.stdout.read() == b"got-term\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_exec_ends_when_the_instance_stops(coved: Coved, api: Api) -> None:
    name = new_name("gone")
    api.launch(name)
    p = subprocess.Popen([sys.executable, "-m", "cove.cli.main", "exec", name, "--",
                          "sh", "-c", "echo ready; sleep 1000"],
                         env=coved.cli_env(), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        api.action(name, "stop", force=True)
        t = time.monotonic()
        code = p.wait(15)
        assert code != 0
        assert time.monotonic() - t < 10
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert_no_leaks(coved.root, [name], existing=True)


def test_delete_a_frozen_instance(api: Api, coved: Coved) -> None:
    name = new_name("frz")
    api.launch(name)
    api.action(name, "freeze")
    _cove(coved, "delete", "--force", name)
    assert api.request("GET", f"/1.0/instances/{name}").status == 404
    assert_no_leaks(coved.root, [name])
