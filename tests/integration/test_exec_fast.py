"""Exec through cove-nsexec, on real containers, against ``runc exec``.

Every behaviour test runs twice: through the helper and with
``COVE_EXEC=runc``, so the two are held to the same contract; the few places
where they differ on purpose say so. The engine runs in-process on a root of
its own (one busybox instance for the module, as LXD's ``lxc exec`` tests
would use one container), and everything is removed at the end.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from covetest import destroy_root, leaks, mkroot, new_name, reap_conmon_zombies, wait_until

from cove.api import InstanceExecPost, InstanceSource, InstancesPost
from cove.engine import Engine, ExecSession
from cove.runtime import _nsexec
from cove.runtime.runc import ExecSpec
from cove.runtime.spec import DEFAULT_PATH

MODES = ("nsexec", "runc")


def _image(ref: str) -> InstanceSource:
    """The source of an instance made from local image ``ref`` (alias or fingerprint)."""
    return InstanceSource(type="image", alias=ref)


@dataclass
class Box:
    engine: Engine
    name: str
    init: int  # host pid of the container's init

    def runc_dir(self) -> Path:
        return self.engine.root / "run" / "runc" / self.name


@pytest.fixture(scope="module")
def box(busybox_tar: Path) -> Iterator[Box]:
    root = mkroot("exec")
    engine = Engine(root)
    left: list[str] = []
    try:
        engine.startup()
        spool = root / "tmp" / "busybox.tar.gz"
        shutil.copyfile(busybox_tar, spool)  # the import consumes its file
        op = engine.images.import_file(spool, aliases=["busybox"])
        assert op.wait(60)
        op.raise_for_error()
        name = new_name("exec")
        op = engine.instances.create(InstancesPost(
            name=name, source=_image("busybox"), start=True,
            config={"cove.cmd": "sleep 1000", "limits.processes": "20",
                    "limits.memory": "64MB"}))
        assert op.wait(60)
        op.raise_for_error()
        state = engine.runtime.state(name)
        assert state is not None and state.status == "running"
        yield Box(engine, name, state.pid)
    finally:
        try:
            for inst in engine.instances.all():
                engine.instances.delete(inst.name, force=True).wait(60)
            engine.operations.wait_idle(30)
            left = leaks(root)
        finally:
            engine.close()
            forced = destroy_root(root)
            reap_conmon_zombies()
    assert not left and not forced, f"left {left}; forced {forced}"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "runc":
        monkeypatch.setenv("COVE_EXEC", "runc")
    else:
        monkeypatch.delenv("COVE_EXEC", raising=False)
    return str(request.param)


# -- helpers -------------------------------------------------------------------------

def _drain(s: ExecSession, stdin: bytes = b"", timeout: float = 30) -> tuple[int, bytes, bytes]:
    assert s.stdout_fd is not None and s.stderr_fd is not None
    if s.stdin_fd is not None:  # None: an exec that ended before it began
        if stdin:
            os.write(s.stdin_fd, stdin)
        # EOF as coved gives it: the session owns (and closes) the fd, so
        # point it at /dev/null rather than close a number another thread
        # may get next.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, s.stdin_fd, inheritable=False)
        os.close(null)
    out, err = bytearray(), bytearray()
    open_fds = {s.stdout_fd: out, s.stderr_fd: err}
    deadline = time.monotonic() + timeout
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], max(0.0, deadline - time.monotonic()))
        assert ready, "exec output did not end in time"
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                open_fds[fd] += chunk
            else:
                del open_fds[fd]
    code = s.wait(timeout)
    assert code is not None
    return code, bytes(out), bytes(err)


def run(box: Box, command: list[str], stdin: bytes = b"", **kw: object) -> tuple[int, str, str]:
    s = box.engine.access.exec(box.name, InstanceExecPost(command=command, **kw))  # type: ignore[arg-type]
    try:
        code, out, err = _drain(s, stdin)
    finally:
        s.close()
    return code, out.decode(), err.decode()


def run_spec(box: Box, spec: ExecSpec) -> tuple[int, str, str]:
    """Straight to the runtime (what the engine's checks would not let through)."""
    s = box.engine.runtime.exec(box.name, spec)
    try:
        code, out, err = _drain(s)
    finally:
        s.close()
    return code, out.decode(), err.decode()


def children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):  # runc's threads each list their own
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def command_pid(s: ExecSession, name: str) -> int:
    """Host pid of the command a session runs (the monitor's child, once it
    has become ``name``)."""
    monitor = s.pid  # type: ignore[attr-defined]
    return int(wait_until(lambda: next((c for c in children(monitor) if comm(c) == name), 0),
                          what=f"{name} to start"))


def status_field(pid: int | str, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(key)


# -- which path runs -----------------------------------------------------------------

def test_the_helper_is_what_runs(box: Box, mode: str) -> None:
    s = box.engine.access.exec(box.name, InstanceExecPost(command=["sleep", "30"]))
    try:
        # exe, not cmdline: the new image's arguments may not be in place yet
        monitor = os.path.basename(os.readlink(f"/proc/{s.pid}/exe"))  # type: ignore[attr-defined]
        if mode == "nsexec":
            assert monitor.startswith("cove-nsexec-")
            assert box.engine.runtime.nsexec.path() is not None
        else:
            assert monitor == "runc"
        s.signal(9)
        assert s.wait(10) == 137
    finally:
        s.close()


# -- exit codes, stdio -----------------------------------------------------------------

def test_exit_codes(box: Box, mode: str) -> None:
    assert run(box, ["true"])[0] == 0
    assert run(box, ["sh", "-c", "exit 3"])[0] == 3
    code, _, err = run(box, ["covetest-no-such-command"])
    assert code == 127 and "not found" in err
    assert run(box, ["sh", "-c", "kill -TERM $$"])[0] == 128 + 15


def test_missing_command_past_the_engine(box: Box, mode: str) -> None:
    """The engine answers 127 itself for a command it cannot find; the helper
    does too when asked directly (runc exec: 255)."""
    code, _, err = run_spec(box, ExecSpec(args=["covetest-nope"], env={"PATH": "/bin"}))
    if mode == "nsexec":
        assert (code, err) == (127, "cove: covetest-nope: command not found\n")
    else:
        assert code == 255
    code, _, err = run_spec(box, ExecSpec(args=["/etc/hostname"], env={}))
    assert code == (126 if mode == "nsexec" else 255)
    if mode == "nsexec":
        assert err == "cove: /etc/hostname: Permission denied\n"


@pytest.mark.parametrize("signum", [9, 15, 2])
def test_signal_kills_the_command(box: Box, mode: str, signum: int) -> None:
    s = box.engine.access.exec(box.name, InstanceExecPost(command=["sleep", "100"]))
    try:
        pid = command_pid(s, "sleep")
        s.signal(signum)
        assert s.wait(10) == 128 + signum
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the command to go")
    finally:
        s.close()


def test_stdout_stderr_separate_and_stdin_eof(box: Box, mode: str) -> None:
    code, out, err = run(box, ["sh", "-c", "echo out; echo err >&2; cat; echo done"],
                         stdin=b"in1\nin2\n")
    assert code == 0
    assert out == "out\nin1\nin2\ndone\n"
    assert err == "err\n"


def test_large_output(box: Box, mode: str) -> None:
    code, out, _ = run(box, ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"])
    assert code == 0 and len(out) == 3_000_000


# -- who and where -----------------------------------------------------------------------

def test_user_group_and_groups(box: Box, mode: str) -> None:
    assert run(box, ["id"])[1] == "uid=0(root) gid=0(root)\n"
    assert run(box, ["id"], user="app")[1] == "uid=1000(app) gid=1000(app)\n"
    assert run(box, ["id"], user=1000, group=0)[1] == "uid=1000(app) gid=0(root)\n"
    code, out, _ = run_spec(box, ExecSpec(args=["id", "-G"], env={"PATH": DEFAULT_PATH},
                                          uid=1000, gid=1000, groups=(10, 20)))
    assert (code, out.split()) == (0, ["1000", "10", "20"])


def test_stdio_belongs_to_the_user(box: Box, mode: str) -> None:
    # reopening one's own stdio, as scripts do with /dev/stderr
    code, out, err = run(box, ["sh", "-c", "echo o > /dev/stdout; echo e > /dev/stderr"],
                         user="app")
    assert (code, out, err) == (0, "o\n", "e\n")


def test_cwd(box: Box, mode: str) -> None:
    assert run(box, ["pwd"])[1] == "/root\n"
    assert run(box, ["pwd"], user="app")[1] == "/home/app\n"
    assert run(box, ["pwd"], cwd="/tmp")[1] == "/tmp\n"
    assert run(box, ["pwd"], user="app", cwd="/root")[1] == "/root\n"  # entered as root
    code, _, err = run(box, ["pwd"], cwd="/covetest-nowhere")
    if mode == "nsexec":
        assert (code, err) == (126, "cove: cd: /covetest-nowhere: No such file or directory\n")
    else:
        assert code == 255 and "covetest-nowhere" in err


def test_environment_is_exactly_the_spec_and_the_request(
        box: Box, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVETEST_HOST_ONLY", "leak")
    code, out, _ = run(box, ["env"], environment={"COVETEST": "1", "TERM": "dumb"})
    assert code == 0
    assert sorted(out.splitlines()) == sorted([
        f"PATH={DEFAULT_PATH}", "HOME=/root", "USER=root", "LANG=C.UTF-8", "TERM=dumb",
        "container=cove", "COVETEST=1",
    ])


# -- the container's namespaces, cgroups, limits, capabilities --------------------------

def test_namespaces(box: Box, mode: str) -> None:
    marker = new_name("marker")
    box.engine.access.file_put(box.name, f"/tmp/{marker}", data=marker.encode())
    script = f"echo $$; hostname; cat /etc/hostname /tmp/{marker}; echo; ps"
    code, out, _ = run(box, ["sh", "-c", script])
    assert code == 0
    lines = out.splitlines()
    assert int(lines[0]) < 1000
    assert lines[1] == box.name  # uts
    info = box.engine.access.file_get(box.name, "/etc/hostname")  # its rootfs, not the host's
    assert info.fd is not None
    with open(info.fd, encoding="utf-8") as f:
        assert lines[2] == f.read().strip()  # mount
    assert lines[3] == marker
    pids = {int(line.split()[0]) for line in lines[5:]}
    assert 1 in pids and int(lines[0]) in pids
    assert all(p < 1000 for p in pids)
    commands = [line.split(None, 2)[2] for line in lines[5:]]
    assert commands[0] == "sleep 1000"
    s = box.engine.access.exec(box.name, InstanceExecPost(command=["sleep", "30"]))
    try:
        pid = command_pid(s, "sleep")
        for ns in ("pid", "mnt", "net", "uts", "ipc", "cgroup"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{box.init}/ns/{ns}")
        assert os.readlink(f"/proc/{pid}/root") == os.readlink(f"/proc/{box.init}/root")
        # a session of its own, as runc's processes
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert os.getsid(pid) == pid and int(fields[2]) == pid
    finally:
        s.signal(9)
        s.wait(10)
        s.close()


def _same_cgroups(mine: str, init: str, mode: str) -> None:
    """The container's cgroups; with cove-nsexec, in cgroup v2 a session
    cgroup of its own below the container's (so the session's whole tree can
    be killed: see runtime/_session.py)."""
    if mode == "nsexec" and "\n0::" in "\n" + init:
        session = [line for line in mine.splitlines() if line.startswith("0::")]
        assert len(session) == 1, mine
        prefix = next(line for line in init.splitlines() if line.startswith("0::"))
        assert session[0].startswith(prefix.rstrip("/") + "/cove-exec-"), (session, prefix)
        mine = mine.replace(session[0], prefix)
    assert mine == init


def test_cgroups_are_the_containers(box: Box, mode: str) -> None:
    code, out, _ = run(box, ["sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup"])
    assert code == 0
    mine, init = out.split("--\n")
    _same_cgroups(mine, init, mode)
    s = box.engine.access.exec(box.name, InstanceExecPost(command=["sleep", "30"]))
    try:
        pid = command_pid(s, "sleep")
        with open(f"/proc/{pid}/cgroup") as a, open(f"/proc/{box.init}/cgroup") as b:
            _same_cgroups(a.read(), b.read(), mode)
        if mode == "nsexec":  # the waiting helper stays out: it costs the container no pid
            with open(f"/proc/{s.pid}/cgroup") as a, open("/proc/self/cgroup") as b:  # type: ignore[attr-defined]
                assert a.read() == b.read()
    finally:
        s.signal(9)
        s.wait(10)
        s.close()


def test_process_limit_applies(box: Box, mode: str) -> None:
    pids_dir = Path(next(p for p in _nsexec.load_target(box.runc_dir() / "state.json").cgroups
                         if "/pids/" in p))
    assert (pids_dir / "pids.max").read_text().strip() == "20"
    assert int((pids_dir / "pids.current").read_text()) == 1  # the init alone
    # busybox sh gives up at the first fork refused; its EXIT trap then reaps
    # the sleeps (the container's init, a sleep, never would)
    code, out, err = run(box, ["sh", "-c", ("trap wait EXIT; i=0; while [ $i -lt 30 ]; "
                                           "do sleep 1 & i=$((i+1)); echo $i; done")])
    assert code != 0 and "can't fork" in err
    # 20 = the init, this sh and its sleeps: whatever waits outside is not counted
    assert out.split()[-1] == "18"
    wait_until(lambda: int((pids_dir / "pids.current").read_text()) == 1, timeout=15,
               what="the sleeps to end")


def test_exec_into_a_container_at_its_process_limit(box: Box, mode: str) -> None:
    """Both fork outside the cgroups and move the command in (a move is not
    refused), so a full container can be entered, but then it may not fork.
    runc's own init is a Go program that still starts threads after the move
    (refused too), so runc exec fails there or not, by timing."""
    filler = box.engine.access.exec(box.name, InstanceExecPost(command=[
        "sh", "-c", "i=0; while [ $i -lt 18 ]; do sleep 2 & i=$((i+1)); done; echo full; wait"]))
    try:
        assert filler.stdout_fd is not None
        assert os.read(filler.stdout_fd, 100) == b"full\n"
        code, out, err = run(box, ["sh", "-c", "echo in; (echo sub); echo after"])
        if mode == "runc" and code == 255:
            assert out == ""
        else:
            assert (code, out) == (2, "in\n") and "can't fork" in err
    finally:
        assert filler.wait(15) == 0
        filler.close()


def test_concurrent_execs(box: Box, mode: str) -> None:
    def one(i: int) -> tuple[int, str, str]:
        return run(box, ["sh", "-c", f"echo {i}; echo e{i} >&2"])

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(24)))
    assert results == [(0, f"{i}\n", f"e{i}\n") for i in range(24)]


def test_capabilities(box: Box, mode: str) -> None:
    init_bnd = status_field(box.init, "CapBnd")
    code, out, _ = run(box, ["grep", "^Cap", "/proc/self/status"])
    assert code == 0
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert caps == {"CapInh": "0" * 16, "CapPrm": init_bnd, "CapEff": init_bnd,
                    "CapBnd": init_bnd, "CapAmb": "0" * 16}
    assert caps["CapEff"] == status_field(box.init, "CapEff")
    code, out, _ = run(box, ["grep", "^Cap", "/proc/self/status"], user="app")
    assert code == 0
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert caps == {"CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16,
                    "CapBnd": init_bnd, "CapAmb": "0" * 16}


def test_rlimit_nofile_is_the_containers(box: Box, mode: str) -> None:
    with open(f"/proc/{box.init}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    soft = line.split()[3]
    assert run(box, ["sh", "-c", "ulimit -n"])[1].strip() == soft


def test_no_fd_of_coved_leaks(box: Box, mode: str) -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)  # even one coved forgot to mark
    try:
        code, out, _ = run(box, ["ls", "/proc/self/fd"])
        assert (code, out.split()) == (0, ["0", "1", "2", "3"])  # 3: ls's own listing
    finally:
        os.close(r)
        os.close(w)


# -- terminals ---------------------------------------------------------------------------

def _read_until(fd: int, pattern: bytes, timeout: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, data):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {pattern!r} in {data!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        assert chunk, f"pty closed before {pattern!r}: {data!r}"
        data += chunk
    return data


def _read_to_end(fd: int, timeout: float = 10) -> bytes:
    """Output until the pty's last user is gone (EIO)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the pty stayed open: {data!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk


def test_tty(box: Box, mode: str) -> None:
    # runc (flags) sizes the pty it makes only after the command started: a first
    # `stty size` can read 0x0 and fail there (1 in ~4 full runs); the helper's is sized first.
    # The wait compares what stty prints: its exit code is no test, busybox's `stty size` on
    # a 0x0 pty prints an error (with whatever errno was left) and exits 0, so a loop on
    # the exit code never waited (CI: "stty: standard input: No child processes")
    first = ('until [ "$(stty size 2>/dev/null)" = "30 100" ]; do sleep 0.05; done; '
             if mode == "runc" else "")
    s = box.engine.access.exec(box.name, InstanceExecPost(
        command=["sh", "-c", f"tty; {first}stty size; read x; stty size; ls /proc/self/fd; exit 4"],
        interactive=True, width=100, height=30))
    try:
        assert s.pty_fd is not None
        assert s.stdin_fd is None and s.stdout_fd is None and s.stderr_fd is None
        first = _read_until(s.pty_fd, rb"30 100\r\n")
        assert re.match(rb"/dev/pts/\d+\r\n", first)
        s.resize(120, 40)
        if mode == "runc":  # runc applies the size when its SIGWINCH handler runs
            time.sleep(1.5)
        os.write(s.pty_fd, b"\n")  # the helper's is the command's own pty: at once
        rest = _read_to_end(s.pty_fd)
        assert rest.split(b"40 120\r\n")[1].split() == [b"0", b"1", b"2", b"3"]
        assert s.wait(10) == 4
    finally:
        s.close()


def test_tty_signals_and_sigwinch(box: Box, mode: str) -> None:
    s = box.engine.access.exec(box.name, InstanceExecPost(
        command=["sh", "-c", ("trap 'stty size' WINCH; echo ready; "
                 "while :; do sleep 0.05; done")], interactive=True, width=80, height=24))
    try:
        assert s.pty_fd is not None
        _read_until(s.pty_fd, rb"ready")
        s.resize(90, 33)
        _read_until(s.pty_fd, rb"33 90")
        s.signal(15)
        assert s.wait(10) == 128 + 15
    finally:
        s.close()


# -- without clone3 -----------------------------------------------------------------------

_NO_CLONE3 = r"""
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 435, 0, 1), /* clone3 */
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return 99;
	execv(argv[1], argv + 1);
	return 98;
}
"""


def test_without_clone3_the_child_is_moved_into_the_cgroup(box: Box, tmp_path: Path) -> None:
    """Where clone3 answers ENOSYS (a kernel before 5.3, Docker's default
    seccomp profile) the helper forks and writes cgroup.procs instead of
    starting the child in the container's cgroup v2 directory."""
    helper = box.engine.runtime.nsexec.path()
    assert helper is not None
    (tmp_path / "noclone3.c").write_text(_NO_CLONE3)
    wrapper = tmp_path / "noclone3"
    subprocess.run(["gcc", "-O2", "-o", str(wrapper), str(tmp_path / "noclone3.c")], check=True)
    probe = subprocess.run([str(wrapper), "/bin/sh", "-c", "true"], timeout=10, check=False)
    assert probe.returncode == 0
    target = _nsexec.load_target(box.runc_dir() / "state.json")
    argv = _nsexec.helper_argv(helper, target, ExecSpec(
        args=["sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup"], env={}))
    res = subprocess.run([str(wrapper), *argv], capture_output=True, timeout=10, check=False)
    assert res.returncode == 0, res.stderr
    mine, init = res.stdout.decode().split("--\n")
    assert mine == init


# -- refusals ----------------------------------------------------------------------------

def test_a_pid_that_is_not_the_init_is_refused(box: Box) -> None:
    helper = box.engine.runtime.nsexec.path()
    assert helper is not None
    target = _nsexec.load_target(box.runc_dir() / "state.json")
    wrong = _nsexec.ExecTarget(target.cid, target.pid, target.start_time + 1, target.cgroups,
                               target.process, target.config)
    res = subprocess.run(_nsexec.helper_argv(helper, wrong, ExecSpec(args=["true"], env={})),
                         capture_output=True, timeout=10, check=False)
    assert res.returncode == 255
    assert b"not the container's init" in res.stderr
