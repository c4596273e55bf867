"""The ``cove`` command against a real coved, as a user runs it (a subprocess)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import (
    REPO,
    Api,
    Coved,
    assert_no_leaks,
    cgroup_parent,
    coved_pids,
    destroy_root,
    mkroot,
    new_name,
    pid_alive,
    wait_until,
)


class Cli:
    def __init__(self, env: dict[str, str], api: Api) -> None:
        self.env = env
        self.api = api

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=self.env,
                           input=input, capture_output=True, timeout=timeout, check=False,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"cove {' '.join(args)} exited {p.returncode}: "
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    def fails(self, *args: str, code: int = 1) -> str:
        """Run a command that must fail with one clean ``Error:`` line; return it."""
        p = self(*args, check=False)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == code, (p.returncode, err)
        assert "Traceback" not in err, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), err
        return lines[0]

    def launch(self, name: str, *config: str, ephemeral: bool = False) -> None:
        self.api.made.append(name)
        args = ["launch", "busybox", name]
        for c in config:
            args += ["-c", c]
        if ephemeral:
            args.append("--ephemeral")
        self(*args)


@pytest.fixture
def cove(coved: Coved, api: Api) -> Cli:
    return Cli(coved.cli_env(), api)


def cg_file(coved: Coved, name: str, controller: str, key: str) -> str:
    return (Path("/sys/fs/cgroup") / controller / cgroup_parent(coved.root) / name / key) \
        .read_text().strip()


def test_launch_list_info(cove: Cli, api: Api) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000", "user.covetest=yes")

    rows = json.loads(cove("list", "--format", "json").stdout)
    mine = [r for r in rows if r["name"] == name]
    assert len(mine) == 1 and mine[0]["status"] == "Running", rows
    assert mine[0]["config"]["user.covetest"] == "yes"

    rows = list(csv.reader(io.StringIO(cove("list", "--format", "csv", name).stdout.decode())))
    assert len(rows) == 1 and rows[0][:2] == [name, "RUNNING"], rows

    info = cove("info", name).stdout.decode()
    assert f"Name: {name}" in info
    assert "Status: RUNNING" in info
    pid = int(next(x for x in info.splitlines() if x.startswith("PID: ")).split()[1])
    assert pid == api.state(name)["pid"] > 0
    assert Path(f"/proc/{pid}").exists()
    assert cove("config", "get", name, "user.covetest").stdout == b"yes\n"


def test_exec(cove: Cli) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000")

    p = cove("exec", name, "--user", "app", "--cwd", "/tmp", "--env", "COVETEST=v1", "--",
             "sh", "-c", "id -u; id -un; pwd; echo $COVETEST; echo to-err >&2; exit 9",
             check=False)
    assert p.returncode == 9, p.stderr
    assert p.stdout == b"1000\napp\n/tmp\nv1\n"
    assert p.stderr == b"to-err\n"

    data = os.urandom(200_000)
    p = cove("exec", name, "--", "cat", input=data)
    assert p.stdout == data

    p = cove("exec", name, "--user", "0", "--", "sh", "-c", "id -u; echo $HOME")
    assert p.stdout == b"0\n/root\n"

    err = cove.fails("exec", name, "--user", "covetest-nosuchuser", "--", "true")
    assert "covetest-nosuchuser" in err
    p = cove("exec", name, "--", "covetest-nosuchcmd", check=False)
    assert p.returncode == 127


def test_files(cove: Cli, api: Api, tmp_path: Path) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000")

    src = tmp_path / "one.txt"
    src.write_bytes(b"one\n")
    src.chmod(0o640)
    cove("file", "push", str(src), f"{name}/tmp/one.txt")
    assert api.sh(name, "cat /tmp/one.txt; stat -c %a /tmp/one.txt") == b"one\n640\n"

    cove("file", "push", "--mode", "0600", "--uid", "1000", "--gid", "1000", str(src),
         f"{name}/home/app/")
    assert api.sh(name, "stat -c '%a %u %g' /home/app/one.txt") == b"600 1000 1000\n"

    # missing parents: refused without -p, made with it
    deep = f"{name}/tmp/covetest-a/b/c/one.txt"
    cove.fails("file", "push", str(src), deep)
    cove("file", "push", "-p", str(src), deep)
    assert api.sh(name, "cat /tmp/covetest-a/b/c/one.txt") == b"one\n"

    # trees both ways, modes and symlinks kept
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.sh").write_text("#!/bin/sh\necho x\n")
    (tree / "sub" / "x.sh").chmod(0o755)
    (tree / "link").symlink_to("sub/x.sh")
    cove("file", "push", "-r", str(tree), f"{name}/tmp/")
    assert api.sh(name, "/tmp/tree/link; readlink /tmp/tree/link") == b"x\nsub/x.sh\n"

    out = tmp_path / "out"
    out.mkdir()
    cove("file", "pull", "-r", f"{name}/tmp/tree", str(out))
    assert (out / "tree" / "sub" / "x.sh").read_text() == "#!/bin/sh\necho x\n"
    assert (out / "tree" / "sub" / "x.sh").stat().st_mode & 0o777 == 0o755
    assert os.readlink(out / "tree" / "link") == "sub/x.sh"

    cove("file", "pull", f"{name}/etc/hostname", str(tmp_path / "hn"))
    assert (tmp_path / "hn").read_text() == "busybox\n"
    assert cove("file", "pull", f"{name}/etc/passwd", "-").stdout.startswith(b"root:x:0:0:")
    # pull into a missing local dir with -p
    cove("file", "pull", "-p", f"{name}/etc/hostname", str(tmp_path / "new" / "dir") + "/")
    assert (tmp_path / "new" / "dir" / "hostname").read_text() == "busybox\n"

    cove.fails("file", "pull", f"{name}/covetest-missing", str(tmp_path / "x"))

    # a stopped instance's files can be read and written too
    cove("stop", "--force", name)
    cove("file", "push", str(src), f"{name}/root/stopped.txt")
    assert cove("file", "pull", f"{name}/root/stopped.txt", "-").stdout == b"one\n"


def test_config_limits_apply_live(cove: Cli, api: Api, coved: Coved) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000")
    unlimited = int(cg_file(coved, name, "memory", "memory.limit_in_bytes"))

    cove("config", "set", name, "limits.memory=64MiB")
    assert cove("config", "get", name, "limits.memory").stdout == b"64MiB\n"
    assert int(cg_file(coved, name, "memory", "memory.limit_in_bytes")) == 64 * 2**20

    cove("config", "set", name, "limits.memory", "96MiB")  # KEY VALUE form
    assert int(cg_file(coved, name, "memory", "memory.limit_in_bytes")) == 96 * 2**20
    cove("config", "set", name, "limits.processes=50")
    assert cg_file(coved, name, "pids", "pids.max") == "50"

    err = cove.fails("config", "set", name, "limits.memory=lots")
    assert "limits.memory" in err
    assert int(cg_file(coved, name, "memory", "memory.limit_in_bytes")) == 96 * 2**20

    cove("config", "unset", name, "limits.memory", "limits.processes")
    assert cove("config", "get", name, "limits.memory").stdout == b"\n"
    assert int(cg_file(coved, name, "memory", "memory.limit_in_bytes")) == unlimited
    assert cg_file(coved, name, "pids", "pids.max") == "max"

    show = cove("config", "show", name).stdout.decode()
    assert "cove.cmd: sleep 1000" in show


def test_logs(cove: Cli) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sh -c 'echo covetest-hello; echo covetest-err >&2; "
                      "echo covetest-line3; sleep 1000'")
    wait_until(lambda: b"covetest-line3" in cove("logs", name).stdout, what="console output")
    out = cove("logs", name).stdout
    assert b"covetest-hello\n" in out and b"covetest-err\n" in out
    assert out.index(b"covetest-hello") < out.index(b"covetest-line3")


def test_rename_stopped(cove: Cli, api: Api, coved: Coved) -> None:
    old, new = new_name("cli"), new_name("cli")
    api.made += [old, new]
    cove("init", "busybox", old, "-c", "cove.cmd=sleep 1000")
    cove("file", "push", "-", f"{old}/root/marker", input=b"kept\n")
    cove("rename", old, new)
    names = [r["name"] for r in json.loads(cove("list", "--format", "json").stdout)]
    assert new in names and old not in names
    assert not (coved.root / "instances" / old).exists()
    cove("start", new)
    assert api.sh(new, "cat /root/marker; hostname") == f"kept\n{new}\n".encode()
    other = new_name("cli")
    err = cove.fails("rename", new, other)  # running: refused
    assert "running" in err.lower()
    cove("stop", "--force", new)
    cove.fails("rename", new, "--", "-bad")
    cove.fails("rename", new, "a_b")
    assert api.status(new) == "Stopped"
    assert_no_leaks(coved.root, [old, other, "a_b"])


def test_stop_timeout_and_force(cove: Cli, api: Api) -> None:
    # sleep as pid 1 has no SIGTERM handler, and pid 1 ignores unhandled signals:
    # a polite stop must wait out the timeout and then kill.
    a, b = new_name("cli"), new_name("cli")
    cove.launch(a, "cove.cmd=sleep 1000")
    cove.launch(b, "cove.cmd=sleep 1000")
    t = time.monotonic()
    cove("stop", "--timeout", "2", a)
    took = time.monotonic() - t
    assert api.status(a) == "Stopped"
    assert 1.8 <= took < 9, f"stop --timeout 2 took {took:.1f}s"

    t = time.monotonic()
    cove("stop", "--force", b)
    assert api.status(b) == "Stopped"
    assert time.monotonic() - t < 1.8, "stop --force waited for SIGTERM"

    # a container that handles SIGTERM stops at once
    c = new_name("cli")
    cove.launch(c, "cove.cmd=sh -c 'trap \"exit 0\" TERM; while true; do sleep 0.1; done'")
    t = time.monotonic()
    cove("stop", c)
    assert time.monotonic() - t < 5
    assert api.instance(c)["config"].get("volatile.last_state.exit_code") == "0"

    cove.fails("stop", a)  # already stopped


def test_delete_force_running(cove: Cli, api: Api, coved: Coved) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000")
    err = cove.fails("delete", name)
    assert "running" in err.lower()
    assert api.status(name) == "Running"
    cove("delete", "--force", name)
    assert api.request("GET", f"/1.0/instances/{name}").status == 404
    assert_no_leaks(coved.root, [name])


def test_ephemeral_vanishes_at_stop(cove: Cli, api: Api, coved: Coved) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000", ephemeral=True)
    assert api.instance(name)["ephemeral"] is True
    cove("stop", "--force", name)
    wait_until(lambda: api.request("GET", f"/1.0/instances/{name}").status == 404,
               what="the ephemeral instance to vanish")
    assert name not in [r["name"] for r in json.loads(cove("list", "--format", "json").stdout)]
    assert_no_leaks(coved.root, [name])

    # and when its command ends by itself
    other = new_name("cli")
    cove.launch(other, "cove.cmd=sh -c 'sleep 0.5'", ephemeral=True)
    wait_until(lambda: api.request("GET", f"/1.0/instances/{other}").status == 404,
               what="the ephemeral instance to vanish after its command ended")
    assert_no_leaks(coved.root, [other])


def test_exit_code_recorded(cove: Cli, api: Api) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sh -c 'sleep 0.5; exit 5'")
    wait_until(lambda: api.status(name) == "Stopped", what="the command to end")
    info = cove("info", name).stdout.decode()
    assert "Status: STOPPED" in info
    assert "Last Exit Code: 5" in info
    assert api.instance(name)["config"]["volatile.last_state.exit_code"] == "5"
    # a new start forgets the old code once the new run ends differently
    cove("config", "set", name, "cove.cmd=sh -c 'exit 0'")
    cove("start", name)
    wait_until(lambda: api.status(name) == "Stopped", what="the second run to end")
    assert "Last Exit Code: 0" in cove("info", name).stdout.decode()


@pytest.fixture
def private_root() -> Iterator[Path]:
    root = mkroot("cliauto")
    try:
        yield root
    finally:
        pids = coved_pids(root)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=20,
                   what="coved to stop")
        forced = destroy_root(root)
        assert not forced, f"forced: {forced}"


def test_cli_starts_coved(private_root: Path, busybox_tar: Path) -> None:
    env = dict(os.environ)
    env.pop("COVE_NO_AUTOSTART", None)
    env["COVE_DIR"] = str(private_root)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    api = Api(str(private_root / "unix.socket"))
    cove = Cli(env, api)
    assert coved_pids(private_root) == []

    assert cove("list", "--format", "csv").stdout == b""
    pids = coved_pids(private_root)
    assert len(pids) == 1, pids
    cove("image", "import", str(busybox_tar), "--alias", "busybox")
    name = new_name("auto")
    cove.launch(name, "cove.cmd=sleep 1000")
    assert cove("exec", name, "--", "hostname").stdout == f"{name}\n".encode()
    assert coved_pids(private_root) == pids  # the same daemon served every command

    # with COVE_NO_AUTOSTART and nobody on the socket: a clean error, no daemon
    os.kill(pids[0], signal.SIGTERM)
    wait_until(lambda: not coved_pids(private_root), timeout=20, what="coved to stop")
    env2 = dict(env, COVE_NO_AUTOSTART="1")
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "list"], env=env2,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=30, check=False)
    assert p.returncode != 0 and b"Traceback" not in p.stderr
    assert coved_pids(private_root) == []

    # the container outlived its daemon; the next command starts one that sees it
    rows = json.loads(cove("list", "--format", "json").stdout)
    assert [(r["name"], r["status"]) for r in rows] == [(name, "Running")]
    cove("delete", "--force", name)
    assert_no_leaks(private_root)


def test_pause_resume_restart(cove: Cli, api: Api) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000")
    pid = api.state(name)["pid"]
    cove("pause", name)
    assert api.status(name) == "Frozen"
    assert "Status: FROZEN" in cove("info", name).stdout.decode()
    err = cove.fails("exec", name, "--", "true")
    assert "frozen" in err.lower()
    cove("resume", name)
    assert api.status(name) == "Running"
    assert api.state(name)["pid"] == pid
    cove("restart", "--force", name)
    assert api.status(name) == "Running"
    assert api.state(name)["pid"] not in (0, pid)
    # a frozen instance can be stopped
    cove("pause", name)
    cove("stop", "--force", name)
    assert api.status(name) == "Stopped"


def test_exec_streams_output_as_it_comes(cove: Cli, coved: Coved) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sleep 1000")
    p = subprocess.Popen([sys.executable, "-m", "cove.cli.main", "exec", name, "--",
                          "sh", "-c", "echo first; sleep 4; echo second"],
                         env=cove.env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        t = time.monotonic()
        assert p.stdout is not None
        assert p.stdout.readline() == b"first\n"
        assert time.monotonic() - t < 3.5, "output was held back until the command ended"
        assert p.stdout.readline() == b"second\n"
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_logs_follow(cove: Cli, api: Api) -> None:
    name = new_name("cli")
    cove.launch(name, "cove.cmd=sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; "
                      "sleep 0.3; done'")
    p = subprocess.Popen([sys.executable, "-m", "cove.cli.main", "logs", "-f", name],
                         env=cove.env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert p.stdout is not None
        seen = [p.stdout.readline() for _ in range(6)]
        assert seen[:2] == [b"tick 1\n", b"tick 2\n"], seen
        assert seen[5] == b"tick 6\n"
        api.action(name, "stop", force=True)
        assert p.wait(10) == 0  # follow ends with the instance
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
