"""The single choke point for running host programs (runc, conmon, ...).

Errors are classified by exit code, never by words on stderr; stderr is kept
only to be shown to a human inside the error message.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cove.model.errors import InternalError

__all__ = ["CommandFailed", "Result", "run", "spawn"]


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
