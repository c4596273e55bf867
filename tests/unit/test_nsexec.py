"""cove-nsexec: the C helper builds warning-free and parses its command line;
the Python side builds its argv, reads runc's state, knows what it cannot do.

What the helper does inside a container is proven on real ones in
``tests/integration/test_exec_fast.py``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from cove.runtime import _nsexec
from cove.runtime.runc import ExecProcess, ExecSpec
from cove.runtime.spec import SpecInput, build_spec

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    return _nsexec.build(tmp_path_factory.mktemp("bin"), strict=True)


def _run(helper: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(helper), *args], capture_output=True, timeout=10, check=False)


# -- the C side -------------------------------------------------------------------

@needs_gcc
def test_builds_with_werror_and_answers_version(helper: Path) -> None:
    assert helper.name.startswith("cove-nsexec-")
    assert helper.stat().st_mode & 0o777 == 0o700
    res = _run(helper, "--version")
    assert res.returncode == 0
    assert res.stdout.decode().strip() == _nsexec.VERSION


@needs_gcc
def test_build_is_cached_and_atomic(tmp_path: Path) -> None:
    (tmp_path / "cove-nsexec-0123456789abcdef").write_text("an older build")
    first = _nsexec.build(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert _nsexec.build(tmp_path) == first
    assert first.stat().st_mtime_ns == mtime  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp, no old build
    first.chmod(0o777)  # writable by others: never run, rebuilt
    assert _nsexec.build(tmp_path) == first
    assert first.stat().st_mode & 0o777 == 0o700


@needs_gcc
@pytest.mark.parametrize("args", [
    [],
    ["--", "true"],  # no --pid
    ["--pid", "1", "--uid", "0", "--gid", "0", "--", "true"],  # no --start-time
    ["--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0"],  # no command
    ["--pid", "x", "--start-time", "1", "--uid", "0", "--gid", "0", "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "-1", "--gid", "0", "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "4294967295", "--gid", "0", "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0", "--caps", "cap_nope",
     "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0", "--rlimit", "nofile=2:1",
     "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0", "--env", "NOEQUALS",
     "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0", "--cwd", "relative",
     "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0", "--tty", "--", "true"],
    ["--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0", "--tty",
     "--console-socket", "3", "--tty-size", "80x", "--", "true"],
    ["--bogus"],
])
def test_bad_command_lines_exit_255_with_a_message(helper: Path, args: list[str]) -> None:
    res = _run(helper, *args)
    assert res.returncode == 255
    assert res.stderr.strip()
    assert res.stdout == b""


@needs_gcc
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_reused_pid_is_refused(helper: Path) -> None:
    # pid 1 is alive, but did not start at tick 1.
    res = _run(helper, "--pid", "1", "--start-time", "1", "--uid", "0", "--gid", "0",
               "--", "true")
    assert res.returncode == 255
    assert b"not the container's init" in res.stderr


# -- the Python side ------------------------------------------------------------

def test_no_compiler_means_runc_exec_and_one_warning(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    nsexec = _nsexec.NsExec(tmp_path / "bin", cc=str(tmp_path / "no-such-cc"))
    with caplog.at_level(logging.WARNING, logger="cove.runtime"):
        assert nsexec.path() is None
        assert nsexec.path() is None
    warnings = [r for r in caplog.records if "falls back to runc exec" in r.getMessage()]
    assert len(warnings) == 1


def _spec(**kw: object) -> dict[str, object]:
    base = SpecInput(hostname="web", args=["sleep", "1000"], rootfs="/r/rootfs",
                     cgroups_path="/cove/web", env={"FOO": "bar"}, nofile=(4096, 8192))
    spec = build_spec(base)
    spec.update(kw)
    return spec


def test_cove_spec_is_supported() -> None:
    assert _nsexec.unsupported(_spec()) is None


@pytest.mark.parametrize(("change", "why"), [
    (lambda s: s["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ERRNO"}), "seccomp"),
    (lambda s: s["process"].update(apparmorProfile="x"), "apparmorProfile"),
    (lambda s: s["process"].update(selinuxLabel="x"), "selinuxLabel"),
    (lambda s: s["process"].update(oomScoreAdj=5), "oomScoreAdj"),
    (lambda s: s["process"]["user"].update(umask=0o22), "umask"),
    (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "user namespace"),
    (lambda s: s["linux"]["namespaces"].append({"type": "time"}), "time namespace"),
    (lambda s: s["process"]["capabilities"].update(ambient=["CAP_CHOWN"]), "ambient"),
    (lambda s: s["process"]["capabilities"].update(inheritable=["CAP_CHOWN"]), "inheritable"),
    (lambda s: s["process"]["capabilities"]["bounding"].append("CAP_SYS_PTRACE"), "PTRACE"),
    (lambda s: s["process"]["capabilities"]["bounding"].append("CAP_NEW_THING"), "unknown"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_NEW", "soft": 1, "hard": 1}),
     "RLIMIT_NEW"),
])
def test_what_the_helper_lacks_goes_to_runc(change: object, why: str) -> None:
    spec = json.loads(json.dumps(_spec()))
    change(spec)  # type: ignore[operator]
    reason = _nsexec.unsupported(spec)
    assert reason is not None and why in reason


def _target(process: dict[str, object]) -> _nsexec.ExecTarget:
    return _nsexec.ExecTarget(cid="web", pid=4242, start_time=99,
                              cgroups=("/sys/fs/cgroup/memory/cove/web",
                                       "/sys/fs/cgroup/pids/cove/web"),
                              process=process, config={"process": process})


def test_helper_argv() -> None:
    process = _spec()["process"]
    assert isinstance(process, dict)
    process["user"]["additionalGids"] = [5]
    process["noNewPrivileges"] = True
    spec = ExecSpec(args=["sh", "-c", "id"], env={"HOME": "/home/app", "FOO": "baz"},
                    cwd="/tmp", uid=1000, gid=1000, groups=(7,))
    assert _nsexec.helper_argv("/h", _target(process), spec) == [
        "/h", "--pid", "4242", "--start-time", "99", "--uid", "1000", "--gid", "1000",
        "--caps", ("cap_audit_write,cap_chown,cap_dac_override,cap_fowner,cap_fsetid,"
                   "cap_kill,cap_mknod,cap_net_bind_service,cap_net_raw,cap_setfcap,cap_setgid,"
                   "cap_setpcap,cap_setuid,cap_sys_chroot"),
        "--keyring", "_ses.web", "--groups", "5,7", "--cwd", "/tmp",
        "--cgroup", "/sys/fs/cgroup/memory/cove/web", "--cgroup", "/sys/fs/cgroup/pids/cove/web",
        "--rlimit", "RLIMIT_NOFILE=4096:8192", "--no-new-privs",
        # the spec's env, overridden by the exec's, as runc exec does
        "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--env", "HOME=/home/app", "--env", "TERM=xterm", "--env", "container=cove",
        "--env", "FOO=baz",
        "--", "sh", "-c", "id"]


def test_helper_argv_tty_and_spec_cwd() -> None:
    process = _spec(process={**_spec()["process"], "cwd": "/srv"})["process"]  # type: ignore[dict-item]
    assert isinstance(process, dict)
    argv = _nsexec.helper_argv("/h", _target(process),
                               ExecSpec(args=["sh"], env={}, tty=True, width=120, height=40),
                               console_fd=9)
    assert argv[argv.index("--cwd") + 1] == "/srv"
    assert argv[argv.index("--tty"):argv.index("--tty") + 5] == [
        "--tty", "--console-socket", "9", "--tty-size", "120x40"]
    with pytest.raises(ValueError):
        _nsexec.helper_argv("/h", _target(process), ExecSpec(args=["sh"], env={}, tty=True))


def test_load_target_reads_runc_state_and_the_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(_spec()))
    state = tmp_path / "state.json"
    state.write_text(json.dumps({
        "id": "web", "init_process_pid": 4242, "init_process_start": 99,
        "config": {"labels": ["bundle=" + str(bundle)]},
        "cgroup_paths": {"pids": "/sys/fs/cgroup/pids/cove/web",
                         "": "/sys/fs/cgroup/unified/cove/web",
                         "memory": "/sys/fs/cgroup/memory/cove/web"},
    }))
    t = _nsexec.load_target(state)
    assert (t.cid, t.pid, t.start_time) == ("web", 4242, 99)
    assert t.cgroups == ("/sys/fs/cgroup/unified/cove/web", "/sys/fs/cgroup/memory/cove/web",
                         "/sys/fs/cgroup/pids/cove/web")
    assert t.process["args"] == ["sleep", "1000"]
    state.write_text(json.dumps({"id": "web", "init_process_pid": 0, "init_process_start": 0}))
    with pytest.raises(ValueError):
        _nsexec.load_target(state)
    with pytest.raises(FileNotFoundError):
        _nsexec.load_target(tmp_path / "gone.json")


def test_receive_fd() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        socket.send_fds(b, [b"T"], [w])
        fd = _nsexec.receive_fd(a, timeout=5)
        assert fd is not None and fd not in (r, w)
        assert not os.get_inheritable(fd)
        os.write(fd, b"x")
        assert os.read(r, 1) == b"x"
        os.close(fd)
        b.close()
        assert _nsexec.receive_fd(a, timeout=5) is None  # closed without sending
    finally:
        for f in (r, w):
            os.close(f)
        a.close()
        b.close()


class _Finished:
    """The part of Popen that ExecProcess uses, for a monitor that already ended."""

    def __init__(self, returncode: int) -> None:
        self.pid = 0
        self.returncode = returncode
        self.stdin = self.stdout = self.stderr = None

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


@pytest.mark.parametrize(("returncode", "code"), [(0, 0), (3, 3), (137, 137), (-9, 137),
                                                  (-15, 143)])
def test_exit_codes_are_128_plus_signal(returncode: int, code: int) -> None:
    p = ExecProcess(_Finished(returncode), None)  # type: ignore[arg-type]
    assert p.wait() == code
