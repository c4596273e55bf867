"""runc, under a monitor (cove-monitor, one for many containers, or conmon).

Design note: coved never parents a container. ``create`` hands the
container to a monitor, which runs ``runc create``, reports the container's
pid on a sync pipe, then stays behind holding the container's stdio,
writing its output to the log and its exit code to ``exits/<id>``. So
containers keep running while coved restarts or is killed; coved learns of
an exit through a pidfd (see ``engine.watch``) and reads the code the
monitor left. The monitor is cove's own (``_monitor``: one process serves
up to 32 containers) where it builds, else (or with
``COVE_MONITOR=conmon``) a conmon per container: the same options, files
and protocols. ``exec`` runs
cove's own small helper (``_nsexec``: same effect, a tenth of the time) or,
when it cannot be had, ``runc exec``, as coved's own child: its stdio is the
caller's stream. Failures are classified by runc's exit code, never by its
words.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import signal as _signal
import socket
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cove.host import proc
from cove.model.config import Resources
from cove.model.errors import InternalError
from cove.runtime import _conmon_libs, _execfifo, _monitor, _nsexec, _session
from cove.runtime._session import SessionCgroup
from cove.runtime.cgroupfs import CgroupLayout
from cove.runtime.spec import MASKED_PATHS, ExecSpec

__all__ = ["ExecProcess", "ExecSpec", "Runc", "RuntimeState"]


@dataclass
class RuntimeState:
    id: str
    status: str  # created, running, paused, stopped
    pid: int


class ExecProcess:
    """A command started by a monitor process (``runc exec`` or cove-nsexec)
    that forwards signals to it and exits with its code; implements the
    engine's ExecSession protocol.

    ``winch``: the monitor copies our pty's size to the command's when it
    gets SIGWINCH (``runc exec --tty``). Otherwise ``pty_fd`` is the
    command's own terminal and setting its size is the whole resize.
    """

    def __init__(self, popen: subprocess.Popen[bytes], pty_fd: int | None,
                 *, winch: bool = True, cgroup: SessionCgroup | None = None) -> None:
        self._p = popen
        self._winch = winch
        self._cgroup = cgroup
        self._closed = False
        self._lock = threading.Lock()  # kill() comes from other threads than close()
        self.pid = popen.pid
        self.pty_fd = pty_fd
        interactive = pty_fd is not None
        self.stdin_fd = popen.stdin.fileno() if popen.stdin and not interactive else None
        self.stdout_fd = popen.stdout.fileno() if popen.stdout and not interactive else None
        self.stderr_fd = popen.stderr.fileno() if popen.stderr and not interactive else None

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self._p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return 128 - code if code < 0 else code  # the monitor itself was killed

    def resize(self, width: int, height: int) -> None:
        if self.pty_fd is not None:
            set_winsize(self.pty_fd, width, height)
            if self._winch:
                self.signal(_signal.SIGWINCH)

    def signal(self, signum: int) -> None:
        """Deliver ``signum`` to the command. The monitor forwards what it can
        catch; SIGKILL and SIGSTOP it cannot, so those go to its child."""
        if signum in (_signal.SIGKILL, _signal.SIGSTOP) and _signal_children(self.pid, signum):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._p.pid, signum)

    def kill(self) -> None:
        """SIGKILL the command and every process it started (idempotent).

        With a session cgroup (cove-nsexec on a host with cgroup v2) that is
        the whole tree, daemonised or not; otherwise (``runc exec``, a pure
        v1 host) the command's process group, which a process that called
        setsid() has left."""
        with self._lock:
            if self._closed:
                return  # its pid may name another process by now
            if self._cgroup is not None:
                self._cgroup.kill()
                return
            for child in _children(self.pid):  # the command leads its own session
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child, _signal.SIGKILL)
            _signal_children(self.pid, _signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None:
            cgroup.release()
        for f in (self._p.stdin, self._p.stdout, self._p.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        if self.pty_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pty_fd)
            self.pty_fd = None


def set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _children(pid: int) -> list[int]:
    """Children of ``pid``, which each thread lists for itself (runc has many)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return out


def _signal_children(pid: int, signum: int) -> bool:
    """Send ``signum`` to the children of ``pid`` (our child); False if it has none.

    A pidfd is taken first, and trusted only if the pid is still a child of
    ``pid`` after that: a child not yet reaped is the process we mean."""
    sent = False
    for child in _children(pid):
        try:
            pidfd = os.pidfd_open(child)
        except OSError:
            continue
        try:
            if child in _children(pid):
                _signal.pidfd_send_signal(pidfd, signum)
                sent = True
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)
    return sent


def _resources_args(r: Resources) -> list[str]:
    args = []
    if r.memory is not None:
        args += ["--memory", str(r.memory)]
    if r.memory_reservation is not None:
        args += ["--memory-reservation", str(r.memory_reservation)]
    if r.memory_swap is not None:
        # runc orders the memory and memsw writes so the kernel accepts them
        args += ["--memory-swap", str(r.memory_swap)]
    if r.cpu_quota is not None:
        args += ["--cpu-quota", str(r.cpu_quota), "--cpu-period", str(r.cpu_period or 100_000)]
    if r.cpus is not None:
        args += ["--cpuset-cpus", r.cpus]
    if r.pids is not None:
        args += ["--pids-limit", str(r.pids)]
    return args


def _main_mntns() -> int:
    """A new fd of coved's own mount namespace (its main thread's: a create
    runs on a thread in a fresh one); -1 if it cannot be had."""
    try:
        return os.open(f"/proc/{os.getpid()}/task/{os.getpid()}/ns/mnt",
                       os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def _read_sync(r: int, timeout: float = 60) -> bytes:
    """The monitor's one message on the sync pipe (it keeps the pipe open, so
    not to EOF); what came by ``timeout`` seconds if it never ends."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not proc.readable([r], left):
            break
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    return data


class Runc:
    """Drives runc (and conmon) for the containers of one cove root.

    ``state_dir`` holds runc's state (``runc/``), conmon's exit files
    (``exits/``) and per-container pid files; it can vanish (a reboot) and
    reconcile treats that as every container stopped.
    """

    def __init__(self, state_dir: Path, runc: str = "runc", conmon: str = "conmon",
                 bin_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.runc = runc
        self.conmon = conmon
        self.nsexec = _nsexec.NsExec(Path(bin_dir) if bin_dir else self.state_dir / "bin")
        # conmon without libsystemd's dependencies (~150 KiB less per container)
        self.conmon_libs = _conmon_libs.ConmonLibs(self.nsexec.bin_dir, conmon)
        self.monitor = _monitor.Monitor(self.nsexec.bin_dir)
        self.monitors = _monitor.SharedMonitors(self.state_dir)
        self.runc_root = self.state_dir / "runc"
        self.exits = self.state_dir / "exits"
        self.pids = self.state_dir / "pids"
        for d in (self.runc_root, self.exits, self.pids, self.state_dir / "attach"):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._masks: tuple[str, tuple[str, ...]] | None = None
        self.cgroupfs = CgroupLayout()  # /sys/fs/cgroup without a tmpfs of its own

    def masks(self) -> tuple[str, tuple[str, ...]] | None:
        """For ``SpecInput.masks``: an empty read-only directory (made once,
        ``<state>/empty``) and the masked directories outside /proc that
        exist here; None if the directory cannot be had (runc's tmpfs then)."""
        if self._masks is None:
            empty = self.state_dir / "empty"
            try:
                with contextlib.suppress(FileExistsError):
                    empty.mkdir(mode=0o555)
                if any(empty.iterdir()) or empty.is_symlink():
                    return None
                os.chmod(empty, 0o555)
            except OSError:
                return None
            self._masks = (str(empty), tuple(
                p for p in MASKED_PATHS if not p.startswith("/proc/") and os.path.isdir(p)))
        return self._masks

    def _runc(self, *args: str, check: bool = True, timeout: float = 60) -> proc.Result:
        return proc.run([self.runc, "--root", str(self.runc_root), *args],
                        check=check, timeout=timeout)

    # -- lifecycle ------------------------------------------------------------
    def create(self, cid: str, bundle: Path, log_path: Path, *, terminal: bool = False) -> int:
        """Create the container under its monitor; return its init pid.

        ``terminal`` (the spec's ``process.terminal``): the monitor holds
        the console pty and lets clients attach to it (see ``_console``).

        Raises:
            InternalError: the monitor or runc failed (the message carries
                runc's reason).
        """
        self.exit_path(cid).unlink(missing_ok=True)
        pidfile = self.pids / f"{cid}.pid"
        pidfile.unlink(missing_ok=True)
        monitor = self.monitor.path()  # None: conmon
        options = [
            "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
            "-r", self.runc_path(), "-b", str(bundle), "-p", str(pidfile),
            "--exit-dir", str(self.exits), "-l", f"k8s-file:{log_path}",
            "--log-size-max", str(16 * 2**20),
            "--conmon-pidfile", str(self.pids / f"{cid}.conmon"),
            "--socket-dir-path", str(self.state_dir / "attach"),
            "--runtime-arg", f"--root={self.runc_root}",
            "--log-level", "error", "--no-sync-log",
        ]
        if terminal:
            options += ["-t", "-i", "--leave-stdin-open"]
        if monitor:
            data, err = self._create_shared(monitor, cid, options)
        else:
            data, err = self._create_conmon(options, bundle)
        pid = -1
        message = ""
        for line in data.splitlines():
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                pid = int(msg.get("data", -1))
                message = msg.get("message", "") or message
        if pid <= 0:
            self.delete(cid, force=True)
            detail = message or err.decode(errors="replace").strip() or "no reason given"
            raise InternalError(f"Failed to create container {cid}: {_human(detail)}")
        return pid

    def _create_shared(self, monitor: str, cid: str,
                       options: list[str]) -> tuple[bytes, bytes]:
        """The create through a shared cove-monitor: its sync message."""
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            try:  # coved's own namespace: opened only when a monitor is started
                self.monitors.create(monitor, cid, options, w, _main_mntns)
            except OSError as e:
                return b"", f"no monitor could take the create: {e}".encode()
            finally:
                os.close(w)
            return _read_sync(r), b""
        finally:
            os.close(r)

    def _create_conmon(self, options: list[str], bundle: Path) -> tuple[bytes, bytes]:
        """The create under a conmon of its own: its sync message and stderr."""
        r, w = os.pipe()
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "_OCI_SYNCPIPE": str(w), **self.conmon_libs.env()}
        try:
            # cwd: conmon writes an ``oom`` file into its working directory
            # when the container is OOM-killed; it belongs to the bundle (and
            # goes with the instance), not to wherever coved was started.
            p = proc.spawn([self.conmon, *options], pass_fds=(w,), env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, start_new_session=True, cwd=str(bundle))
        finally:
            os.close(w)
        try:
            data = _read_sync(r)  # conmon's daemon half keeps the pipe open
        finally:
            os.close(r)
            _, err = p.communicate(timeout=60)
        return data, err

    def runc_path(self) -> str:
        if os.sep in self.runc:
            return self.runc
        for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":") + ["/usr/sbin"]:
            cand = os.path.join(d, self.runc)
            if os.access(cand, os.X_OK):
                return cand
        raise InternalError("runc is not installed (run the setup script)")

    def start(self, cid: str, pid: int | None = None) -> None:
        """Let the created container ``cid`` (init ``pid``) run its command.

        With its init pid, through runc's exec fifo in coved (``_execfifo``:
        the protocol ``runc start`` speaks, without its process); else, or
        where there is no fifo, ``runc start``.

        Raises:
            InternalError: init ended or never took the start; runc's start failed.
        """
        if pid is not None and _execfifo.start_through_fifo(self.runc_root / cid, pid):
            return
        self._runc("start", cid)

    def run_once(self, cid: str, bundle: Path) -> ExecProcess:
        """``runc run`` the bundle's process in the foreground with pipes for
        its stdio (no monitor: it ends with its command); its exit code is
        ``wait()``'s. The caller deletes ``cid`` once it ended. Raises:
        InternalError (runc is missing)."""
        p = proc.spawn([self.runc_path(), "--root", str(self.runc_root), "run", "--bundle",
                        str(bundle), cid], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       start_new_session=True)
        return ExecProcess(p, None, winch=False)

    def state(self, cid: str) -> RuntimeState | None:
        """The runtime's view, from runc's own state file (no subprocess).

        A container whose init process is gone reads as ``stopped``.
        """
        try:
            with open(self.runc_root / cid / "state.json", "rb") as f:
                st = json.load(f)
        except (OSError, ValueError):
            return None
        pid = int(st.get("init_process_pid") or 0)
        start = int(st.get("init_process_start") or 0)
        if pid <= 0 or not _alive(pid, start):
            return RuntimeState(cid, "stopped", 0)
        paused = False
        status = "running"
        with contextlib.suppress(OSError):
            paused = _frozen(st)
        if paused:
            status = "paused"
        elif (self.runc_root / cid / "exec.fifo").exists() and _is_created(pid):
            # runc's own test: a start takes the fifo away (``_execfifo``)
            status = "created"
        return RuntimeState(cid, status, pid)

    def list_ids(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.runc_root) if e.is_dir())
        except OSError:
            return []

    def kill(self, cid: str, signum: int, all_processes: bool = False) -> None:
        args = ["kill"] + (["--all"] if all_processes else []) + [cid, str(signum)]
        self._runc(*args, check=False)

    def delete(self, cid: str, force: bool = False) -> None:
        """Remove the container from runc and wait (briefly) until its monitor
        is done with it: its exit file written, its symlink gone (idempotent)."""
        monitor = self.conmon_pid(cid)
        if (self.runc_root / cid).exists():
            res = self._runc("delete", *(["--force"] if force else []), cid, check=False)
            if res.returncode != 0 and (self.runc_root / cid).exists():
                raise InternalError(f"runc delete {cid} failed (exit {res.returncode}): "
                                    + res.stderr.decode(errors="replace").strip()[-300:])
        for suffix in (".pid", ".started"):  # .started: an older coved's mark
            (self.pids / f"{cid}{suffix}").unlink(missing_ok=True)
        marker = self.pids / f"{cid}.conmon"
        if monitor is not None:
            # A monitor of its own (conmon, an older cove-monitor) is done
            # when it exits; conmon's mount namespace also holds the rootfs
            # (``host.freshns``) until then. A shared one removes the pid
            # file as the last thing it does for the container, and goes on.
            if not _monitor.is_ours(monitor):
                proc.reap(monitor)
            deadline = time.monotonic() + 1.0
            while marker.exists() and os.path.exists(f"/proc/{monitor}") \
                    and not _is_zombie(monitor) and time.monotonic() < deadline:
                time.sleep(0.005)
        marker.unlink(missing_ok=True)
        self.monitors.forget(cid)

    def close(self) -> None:
        """Retire this coved's current shared monitor (idempotent): running
        containers keep theirs."""
        self.monitors.close()

    def pause(self, cid: str) -> None:
        self._runc("pause", cid)

    def resume(self, cid: str) -> None:
        self._runc("resume", cid)

    def update(self, cid: str, resources: Resources) -> None:
        args = _resources_args(resources)
        if args:
            self._runc("update", *args, cid)

    def exit_path(self, cid: str) -> Path:
        return self.exits / cid

    def exit_code(self, cid: str) -> int | None:
        try:
            return int(self.exit_path(cid).read_text().strip())
        except (OSError, ValueError):
            return None

    def wait_exit_code(self, cid: str, timeout: float = 2.0) -> int | None:
        """Wait briefly for the monitor to write the exit file after the init exits."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.exit_code(cid)
            if code is not None or time.monotonic() >= deadline:
                return code
            time.sleep(0.005)

    def end_sessions(self, cid: str) -> list[str]:
        """Kill the exec sessions a previous coved left running in ``cid``
        (their clients are gone with it); the names of those ended."""
        try:
            target = _nsexec.load_target(self.runc_root / cid / "state.json")
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return _session.sweep(target.unified) if target.unified else []

    def attach_socket(self, cid: str) -> Path:
        """The monitor's attach socket of ``cid`` (its console, when it has one)."""
        return self.state_dir / "attach" / cid / "attach"

    def conmon_pid(self, cid: str) -> int | None:
        try:
            return int((self.pids / f"{cid}.conmon").read_text().strip())
        except (OSError, ValueError):
            return None

    # -- exec -----------------------------------------------------------------
    def exec(self, cid: str, spec: ExecSpec) -> ExecProcess:
        """Start ``spec.args`` in the running container ``cid``.

        Through cove-nsexec when it can be had and the container's spec holds
        nothing it does not implement (see ``_nsexec``), else ``runc exec``;
        ``COVE_EXEC=runc`` picks runc.

        Raises:
            InternalError: the command could not be started (tty mode: with
                the helper's reason).
        """
        if os.environ.get("COVE_EXEC") != "runc":
            helper = self.nsexec.path()
            if helper is not None:
                try:
                    target = _nsexec.load_target(self.runc_root / cid / "state.json")
                except (OSError, ValueError, KeyError, TypeError):
                    target = None  # gone or odd: runc says why
                if target is not None:
                    reason = _nsexec.unsupported(target.config)
                    if reason is None:
                        return self._exec_helper(helper, target, spec)
                    self.nsexec.warn_once(f"{cid}: {reason}")
        return self._exec_runc(cid, spec)

    def _exec_helper(self, helper: str, target: _nsexec.ExecTarget,
                     spec: ExecSpec) -> ExecProcess:
        # The command joins a cgroup of its session instead of the
        # container's own cgroup v2 directory (see _session), so that it and
        # everything it forks can be ended together.
        cgroup = SessionCgroup.make(target.unified) if target.unified else None
        if cgroup is not None:
            target = dataclasses.replace(target, cgroups=tuple(
                str(cgroup.path) if p == target.unified else p for p in target.cgroups))
        try:
            return self._spawn_helper(helper, target, spec, cgroup)
        except BaseException:
            if cgroup is not None:
                cgroup.kill()
                cgroup.release()
            raise

    def _spawn_helper(self, helper: str, target: _nsexec.ExecTarget, spec: ExecSpec,
                      cgroup: SessionCgroup | None) -> ExecProcess:
        # The helper's own environment is empty: the command's is in its argv.
        if not spec.tty:
            p = proc.spawn(_nsexec.helper_argv(helper, target, spec), env={},
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)
            return ExecProcess(p, None, winch=False, cgroup=cgroup)
        # The pty is made in the container (as runc does) and its master comes
        # back over a socket; the helper's stderr tells why if it never does.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours:
            try:
                argv = _nsexec.helper_argv(helper, target, spec, console_fd=theirs.fileno())
                p = proc.spawn(argv, env={}, pass_fds=(theirs.fileno(),),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
            finally:
                theirs.close()
            reason = "no reason given"
            try:
                master = _nsexec.receive_fd(ours, timeout=30)
            except OSError as e:  # TimeoutError included
                master = None
                reason = f"no terminal from cove-nsexec ({e})"
                _signal_children(p.pid, _signal.SIGKILL)
                p.kill()
            if master is None:
                try:
                    _, err = p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    _, err = p.communicate()
                text = err.decode(errors="replace").strip() if err else ""
                raise InternalError(f"exec in {target.cid} failed: {text or reason}")
        return ExecProcess(p, master, winch=False, cgroup=cgroup)

    def _exec_runc(self, cid: str, spec: ExecSpec) -> ExecProcess:
        args = [self.runc, "--root", str(self.runc_root), "exec",
                "--user", f"{spec.uid}:{spec.gid}"]
        for gid in spec.groups:
            args += ["--additional-gids", str(gid)]
        if spec.cwd:
            args += ["--cwd", spec.cwd]
        for k, v in spec.env.items():
            args += ["--env", f"{k}={v}"]
        if not spec.tty:
            p = proc.spawn([*args, cid, *spec.args], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return ExecProcess(p, None)
        # Foreground ``runc exec --tty`` makes the container's pty and copies
        # between it and its own stdio, which here is a pty of ours: a resize
        # is our window size plus SIGWINCH to runc, which passes it on.
        master, slave = os.openpty()
        try:
            set_winsize(slave, spec.width, spec.height)
            p = proc.spawn([*args, "--tty", cid, *spec.args], stdin=slave, stdout=slave,
                           stderr=slave, start_new_session=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return ExecProcess(p, master)


def _human(log_line: str) -> str:
    """runc's logrus line (``time=.. level=error msg="..."``) as just its message,
    for a person to read; nothing is decided from it."""
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', log_line)
    if not m:
        return log_line
    text = m.group(1).replace('\\"', '"')
    return text.removeprefix("runc create failed: ")


def _alive(pid: int, start: int) -> bool:
    """True if ``pid`` exists and is the process that started at ``start`` ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] == b"Z":
        return False
    return start == 0 or int(fields[19]) == start


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # gone
    return stat[stat.rindex(b")") + 2:].startswith(b"Z")


def _is_created(pid: int) -> bool:
    # A created (not yet started) container's init is runc's own stub
    # waiting on the exec fifo; its comm is "runc:[2:INIT]".
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().startswith(b"runc:[2:INIT]")
    except OSError:
        return False


def _frozen(state: dict[str, object]) -> bool:
    paths = state.get("cgroup_paths") or {}
    if not isinstance(paths, dict):
        return False
    freezer = paths.get("freezer")
    if isinstance(freezer, str):
        with open(os.path.join(freezer, "freezer.state")) as f:
            return f.read().strip() == "FROZEN"
    unified = paths.get("")
    if isinstance(unified, str):
        with open(os.path.join(unified, "cgroup.freeze")) as f:
            return f.read().strip() == "1"
    return False


def signal_name(signum: int) -> str:
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return str(signum)


__all__ += ["set_winsize", "signal_name"]
