"""cove-nsexec: exec sessions without ``runc exec``.

Design note: ``runc exec`` costs ~20-30 ms here, almost all of it the Go
runtime starting and runc's own nsexec dance, while joining a container is
a few syscalls (``nsenter`` takes ~3 ms). So, as LXD does with its own
forkexec, coved runs a small C helper (``nsexec.c`` next to this file) for
exec sessions: ~1.7 ms on its own (statically linked), ~2.5 ms for an
engine ``exec_instance`` of ``true`` against ~18 ms through runc. It is
compiled by gcc on first use into ``<cove root>/run/bin/cove-nsexec-<sha256
of source and flags>`` (built under a temporary name, then renamed:
concurrent builders and a crash mid-build leave nothing half-written),
checked by running it with ``--version``, and cached for the life of the
process. Without gcc, or when the build fails, cove keeps using ``runc
exec`` and logs that once; ``COVE_EXEC=runc`` forces ``runc exec`` (to
compare the two).

What it does as ``runc exec`` does, from the same inputs (runc's
``state.json`` for the init's pid, start time and cgroup paths, the
bundle's ``config.json`` for the process): the namespaces of the init
(ipc, uts, net, pid, mount, cgroup); every cgroup of the container (all v1
hierarchies and the unified one), joined by the command after it is forked
outside them, while the waiting parent stays outside (costing the
container no pid); the container's root; a new session; environment = the
spec's process env overridden by the exec's (nothing of coved's); user,
group, spec ``additionalGids`` plus the exec's groups; bounding set = the
spec's; effective/permitted = the spec's for root, empty for anyone else
(inheritable, ambient empty); the spec's rlimits; noNewPrivileges; the
``_ses.<id>`` session keyring; stdio handed to the user; cwd as root
first, as the user if root may not; exit code 128+N for a signal N; every
catchable signal forwarded; no PR_SET_PDEATHSIG (the command outlives
coved). A tty is a pty of the container's own devpts, its master passed
back over a socket (runc's console socket), so ``tty`` names it and a
resize is just TIOCSWINSZ.

What it does not: no seccomp, AppArmor, SELinux labels, user or time
namespaces, Intel RDT, umask, oomScoreAdj, ambient/inheritable caps. cove's
containers have none of these today. If the spec gains one, the helper
must learn it: until then ``unsupported()``, which checks a container's
spec against what the helper implements, sends that container to ``runc
exec``, so such a change is safe but slow. The same goes for a bounding
set with CAP_SYS_PTRACE: the helper is non-dumpable until it execs, so
nothing in the container can reopen its binary through /proc/PID/exe (the
CVE-2019-5736 kind of hole), but ptrace rights could get past that; runc
execs from a sealed copy of itself.

Differences that remain: a missing command or cwd exits 127/126 with a
shell-like message (runc: 255); a container at limits.processes can be
entered (the move into its cgroups is not refused, the command's own forks
are), where runc exec fails or not by timing (its Go init still starts
threads after the move); a resize is applied before ``resize()`` returns
(runc: when its SIGWINCH handler gets to it).
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cove.host import proc
from cove.model.errors import CoveError

if TYPE_CHECKING:
    from cove.runtime.spec import ExecSpec

__all__ = [
    "CFLAGS", "SOURCE", "STRICT_CFLAGS", "VERSION", "BuildError", "BuiltOnce", "ExecTarget", "NsExec",
    "build", "helper_argv", "load_target", "receive_fd", "unsupported",
]

log = logging.getLogger("cove.runtime")

SOURCE = Path(__file__).with_name("nsexec.c")
VERSION = "cove-nsexec 1"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"]
# The unit test builds with these too, so the source stays warning-free; the
# lazy build leaves out -Werror so that a newer compiler's new warning does
# not silently put every exec back on the slow path.
STRICT_CFLAGS = ["-Werror", "-Wformat=2", "-Wshadow", "-Wconversion", "-Wsign-conversion"]

# What nsexec.c implements. Anything else in a spec is a reason to use runc.
_PROCESS_KEYS = {"terminal", "consoleSize", "user", "args", "env", "cwd", "capabilities",
                 "rlimits", "noNewPrivileges"}
_USER_KEYS = {"uid", "gid", "additionalGids"}
_LINUX_KEYS = {"cgroupsPath", "resources", "namespaces", "maskedPaths", "readonlyPaths",
               "devices", "sysctl", "rootfsPropagation", "mountLabel"}
_NAMESPACES = {"pid", "ipc", "uts", "mount", "network", "cgroup"}
_RLIMITS = {"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
            "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
            "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
            "RLIMIT_RTPRIO", "RLIMIT_RTTIME"}
_CAPS = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}


class BuildError(CoveError):
    """The helper could not be built or does not run."""


def _digest(cc: str, flags: list[str], sources: Sequence[Path] = (SOURCE,)) -> str:
    h = hashlib.sha256()
    for source in sources:  # every file, named: a change to any is a new build
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    h.update("\0".join([cc, *flags]).encode())
    return h.hexdigest()[:16]


def build(out_dir: Path, *, cc: str = "gcc", strict: bool = False,
          source: Path | Sequence[Path] = SOURCE, name: str = "cove-nsexec",
          version: str = VERSION) -> Path:
    """Compile ``source`` (``nsexec.c``; cove-monitor's files are built the
    same way: its ``.c`` files compiled together, its headers in the digest
    only) into ``out_dir/<name>-<digest>`` unless already there; return its
    path. It must answer ``--version`` with ``version``.

    Statically linked when the C library allows (half the start-up time),
    dynamically otherwise. The file appears whole or not at all.

    Raises:
        BuildError: no compiler, the source does not compile, or the result
            does not run.
    """
    flags = CFLAGS + (STRICT_CFLAGS if strict else [])
    sources = [source] if isinstance(source, Path) else list(source)
    units = [str(s) for s in sources if s.suffix == ".c"]
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = out_dir / f"{name}-{_digest(cc, flags, sources)}"
    if _usable(target, name, version):
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=out_dir)
    os.close(fd)
    try:
        errors = []
        for link in (["-static"], []):
            try:
                proc.run([cc, *flags, *link, "-o", tmp, *units], timeout=120)
                break
            except CoveError as e:
                errors.append(str(e))
        else:
            raise BuildError(f"cannot build {name}: " + "; ".join(errors))
        os.chmod(tmp, 0o700)
        _check_runs(tmp, name, version)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    for old in out_dir.glob(f"{name}-*"):  # builds of an older source
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()
    return target


def _usable(path: Path, name: str = "cove-nsexec", version: str = VERSION) -> bool:
    """An existing build we may run as root: a regular file of ours that no
    one else can write, which answers ``--version`` as expected."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return False
    try:
        _check_runs(str(path), name, version)
    except BuildError:
        return False
    return True


def _check_runs(path: str, name: str = "cove-nsexec", version: str = VERSION) -> None:
    try:
        res = proc.run([path, "--version"], check=False, timeout=10, env={})
    except CoveError as e:
        raise BuildError(f"{name} does not run: {e}") from None
    if res.returncode != 0 or res.stdout.decode(errors="replace").strip() != version:
        raise BuildError(f"{name} does not run (exit {res.returncode})")


class BuiltOnce:
    """A program of cove's built by ``make`` on first use, then cached.

    ``path()`` never raises: the program's path, or None when it cannot be
    had (logged once, after ``instead``: what the caller does without it).
    Thread-safe.
    """

    def __init__(self, make: Callable[[], Path], instead: str) -> None:
        self._make = make
        self._instead = instead
        self._lock = threading.Lock()
        self._path: str | None = None
        self._failed = False

    def path(self) -> str | None:
        if self._path is not None or self._failed:
            return self._path
        with self._lock:
            if self._path is None and not self._failed:
                try:
                    self._path = str(self._make())
                except (BuildError, OSError) as e:
                    self._failed = True
                    log.warning("%s: %s", self._instead, e)
        return self._path


class NsExec:
    """The helper of one cove root: built on first use, then cached.

    ``path()`` never raises; it returns None (and logs once) when the helper
    cannot be had, and the caller uses ``runc exec`` instead. Thread-safe.
    """

    def __init__(self, bin_dir: Path, cc: str = "gcc") -> None:
        self.bin_dir = Path(bin_dir)
        self.cc = cc
        self._built = BuiltOnce(lambda: build(self.bin_dir, cc=self.cc),
                                "exec falls back to runc exec (slower)")
        self._warned: set[str] = set()

    def path(self) -> str | None:
        return self._built.path()

    def warn_once(self, reason: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("exec uses runc exec: %s", reason)


@dataclass(frozen=True)
class ExecTarget:
    """A running container, as the helper needs it."""

    cid: str
    pid: int
    start_time: int  # clock ticks after boot, field 22 of /proc/PID/stat
    cgroups: tuple[str, ...]  # host paths of the container's cgroup dirs
    process: dict[str, Any]  # the spec's "process" object
    config: dict[str, Any]  # the whole spec
    unified: str | None = None  # its cgroup v2 directory (also in ``cgroups``)


def load_target(state_path: Path) -> ExecTarget:
    """Read runc's ``state.json`` of a container and its bundle's ``config.json``
    (the same inputs ``runc exec`` takes).

    Raises:
        OSError, ValueError, KeyError, TypeError: the container or its files
            are gone or odd.
    """
    with open(state_path, "rb") as f:
        state = json.load(f)
    pid = int(state["init_process_pid"])
    start = int(state["init_process_start"])
    if pid <= 0 or start <= 0:
        raise ValueError("container has no init process")
    bundle = None
    for label in state.get("config", {}).get("labels") or []:
        if isinstance(label, str) and label.startswith("bundle="):
            bundle = label.removeprefix("bundle=")
    if not bundle:
        raise ValueError("container has no bundle label")
    with open(os.path.join(bundle, "config.json"), "rb") as f:
        config = json.load(f)
    paths = state.get("cgroup_paths") or {}
    cgroups = tuple(p for _, p in sorted(paths.items())
                    if isinstance(p, str) and p.startswith("/"))
    unified = paths.get("")
    process = config.get("process")
    if not isinstance(process, dict):
        raise TypeError("spec has no process object")
    return ExecTarget(state.get("id", ""), pid, start, cgroups, process, config,
                      unified if isinstance(unified, str) and unified in cgroups else None)


def unsupported(config: dict[str, Any]) -> str | None:
    """Why the helper cannot exec into a container with this spec like runc
    would (None: it can)."""
    process = config.get("process") or {}
    linux = config.get("linux") or {}
    extra = set(process) - _PROCESS_KEYS
    if extra:
        return f"the spec sets process.{min(extra)}"
    extra = set(process.get("user") or {}) - _USER_KEYS
    if extra:
        return f"the spec sets process.user.{min(extra)}"
    extra = {k for k, v in linux.items() if v} - _LINUX_KEYS
    if extra:
        return f"the spec sets linux.{min(extra)}"
    for ns in linux.get("namespaces") or []:
        if ns.get("type") not in _NAMESPACES:
            return f"the container has a {ns.get('type')} namespace"
    caps = process.get("capabilities") or {}
    if caps.get("inheritable") or caps.get("ambient"):
        return "the spec sets inheritable or ambient capabilities"
    bounding = caps.get("bounding") or []
    unknown = [c for c in bounding if c not in _CAPS]
    if unknown:
        return f"the spec has an unknown capability {unknown[0]}"
    if "CAP_SYS_PTRACE" in bounding:
        return "the container may ptrace (CAP_SYS_PTRACE)"
    for rl in process.get("rlimits") or []:
        if rl.get("type") not in _RLIMITS:
            return f"the spec sets an unknown rlimit {rl.get('type')}"
    return None


def _env_of(process: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in process.get("env") or []:
        key, sep, value = str(item).partition("=")
        if sep and key:
            env[key] = value
    env.update(overrides)
    return env


def helper_argv(helper: str, target: ExecTarget, spec: ExecSpec,
                console_fd: int | None = None) -> list[str]:
    """The helper's command line for ``spec`` in ``target`` (pure)."""
    process = target.process
    user = process.get("user") or {}
    caps = (process.get("capabilities") or {}).get("bounding") or []
    groups = [int(g) for g in user.get("additionalGids") or []] + list(spec.groups)
    argv = [helper, "--pid", str(target.pid), "--start-time", str(target.start_time),
            "--uid", str(spec.uid), "--gid", str(spec.gid),
            "--caps", ",".join(c.lower() for c in caps),
            "--keyring", f"_ses.{target.cid}"]
    if groups:
        argv += ["--groups", ",".join(str(g) for g in groups)]
    cwd = spec.cwd or process.get("cwd")
    if cwd:
        argv += ["--cwd", str(cwd)]
    for path in target.cgroups:
        argv += ["--cgroup", path]
    for rl in process.get("rlimits") or []:
        argv += ["--rlimit", f"{rl['type']}={int(rl['soft'])}:{int(rl['hard'])}"]
    if process.get("noNewPrivileges"):
        argv.append("--no-new-privs")
    if spec.tty:
        if console_fd is None:
            raise ValueError("a tty needs a console socket")
        argv += ["--tty", "--console-socket", str(console_fd),
                 "--tty-size", f"{max(spec.width, 1)}x{max(spec.height, 1)}"]
    for key, value in _env_of(process, spec.env).items():
        argv += ["--env", f"{key}={value}"]
    return [*argv, "--", *spec.args]


def receive_fd(sock: socket.socket, timeout: float) -> int | None:
    """One fd sent over ``sock`` (SCM_RIGHTS), close-on-exec; None if the
    peer closed without sending one.

    Raises:
        TimeoutError: nothing came within ``timeout`` seconds.
    """
    sock.settimeout(timeout)
    size = socket.CMSG_SPACE(4)
    _, ancdata, _, _ = sock.recvmsg(1, size, socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else None
