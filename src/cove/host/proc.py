"""The single choke point for running host programs (runc, conmon, ...).

Errors are classified by exit code, never by words on stderr; stderr is kept
only to be shown to a human inside the error message.
"""

from __future__ import annotations

import select
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from cove.model.errors import InternalError

__all__ = ["DEVNULL", "CommandFailed", "Result", "readable", "run", "spawn"]

DEVNULL = subprocess.DEVNULL  # for spawn's stdin/stdout/stderr


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes


class CommandFailed(InternalError):
    """A host program exited non-zero. ``returncode`` tells which way."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: bytes) -> None:
        text = stderr.decode(errors="replace").strip().splitlines()
        tail = text[-1] if text else ""
        super().__init__(f"{args[0]} {args[1] if len(args) > 1 else ''} failed "
                         f"(exit {returncode}){': ' + tail if tail else ''}")
        self.returncode = returncode
        self.stderr = stderr


def readable(fds: Sequence[int], timeout: float) -> list[int]:
    """Those of ``fds`` that are readable (or at their end, or broken)
    within ``timeout`` seconds; [] if none. Unlike ``select.select`` it
    takes fds of any number: coved holds thousands at scale."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    return [fd for fd, _ in p.poll(max(0, int(timeout * 1000 + 0.999)))]


def run(args: Sequence[str], *, check: bool = True, input: bytes | None = None,
        timeout: float | None = 60, env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = ()) -> Result:
    """Run a program to completion and capture its output.

    Raises:
        CommandFailed: when ``check`` and the exit code is non-zero.
        InternalError: when the program is missing or runs past ``timeout``.
    """
    argv = [str(a) for a in args]
    try:
        p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=False,
                           env=dict(env) if env is not None else None, pass_fds=tuple(pass_fds),
                           stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise InternalError(f"{argv[0]} is not installed (run the setup script)") from None
    except subprocess.TimeoutExpired:
        raise InternalError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} "
                            f"did not finish within {timeout}s") from None
    if check and p.returncode != 0:
        raise CommandFailed(argv, p.returncode, p.stderr)
    return Result(argv, p.returncode, p.stdout, p.stderr)


def spawn(args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a program without waiting (for streaming I/O: exec, logs -f)."""
    argv = [str(a) for a in args]
    try:
        return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload,no-any-return]
    except FileNotFoundError:
        raise InternalError(f"{argv[0]} is not installed (run the setup script)") from None


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt orphaned descendants (conmon's daemon half) so that they can be
    reaped here rather than left as zombies under an init that may not reap."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap(pid: int, timeout: float = 1.0) -> None:
    """Collect ``pid`` if it is (or becomes within ``timeout``) our exited child."""
    import os
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def processes() -> Iterator[tuple[int, bytes, list[bytes]]]:
    """Every process on the host as ``(pid, stat fields after comm, argv)``;
    the fields start with the state (``Z`` for a zombie) and the parent pid.
    Processes that end while being read are skipped."""
    import os

    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        yield int(entry), stat, argv


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot, as runc records it);
    None once it is gone or a zombie. With the pid it names one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return None if fields[0] == b"Z" else int(fields[19])


def argv_of(pid: int) -> list[bytes]:
    """The command line of ``pid`` ([] once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _comm(stat: bytes) -> bytes:
    return stat[stat.index(b"(") + 1:stat.rindex(b")")]


def _children() -> list[int] | None:
    """Our children (what each thread of ours has, ``/proc/self/task/*/children``,
    where a subreaper's inherited orphans are listed too); None when the kernel
    lacks that file (``CONFIG_PROC_CHILDREN``)."""
    import os

    me = os.getpid()
    if not os.path.exists(f"/proc/self/task/{me}/children"):
        return None
    out: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:  # the thread ended meanwhile (its children went to another)
            continue
    return out


def reap_zombie_children(comm: bytes) -> None:
    """Collect our zombie children named ``comm`` (and only those): as a
    child subreaper coved inherits daemonising helpers and monitors. Reads
    our own children's ``stat`` (every process's only where the kernel does
    not list children): the host may run thousands of processes."""
    import os

    me = os.getpid()
    children = _children()
    if children is None:
        found = ((pid, stat) for pid, stat, _ in processes())
    else:
        found = ((pid, stat) for pid in children if (stat := _stat(pid)) is not None)
    for pid, stat in found:
        fields = stat[stat.rindex(b")") + 2:].split()
        if _comm(stat) == comm and fields[0] == b"Z" and int(fields[1]) == me:
            reap(pid, 0)


def _stat(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read()
    except OSError:
        return None


def pids_with_arg(program: bytes | None, prefix: bytes) -> dict[int, bytes]:
    """Live processes with an argument starting with ``prefix`` (and, unless
    ``program`` is None, argv[0]'s base name ``program``): pid -> that
    argument. Reads each process's command line only (a zombie's is empty;
    the host may run thousands), then the ``stat`` of those that match."""
    import os

    out: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if prefix not in cmdline:
            continue
        argv = cmdline.split(b"\0")
        if program is not None and os.path.basename(argv[0]) != program:
            continue
        for a in argv:
            if a.startswith(prefix):
                stat = _stat(int(entry))
                if stat is not None and stat[stat.rindex(b")") + 2:][:1] != b"Z":
                    out[int(entry)] = a
                break
    return out
