"""Start coved when the CLI finds nobody on the socket.

Design note: the daemon is started detached (its own session, stdio to
``$COVE_DIR/coved.log``) so it outlives the command that started it, and the
command waits until ``GET /1.0`` answers. A lock file serialises concurrent
``cove`` commands, so two of them never start two daemons on one root; the
second finds the socket answering once it holds the lock.
"""

from __future__ import annotations

import os
import sys
import time

from cove.client import ConnectionFailed, UnixTransport
from cove.model.errors import CoveError

__all__ = ["answers", "daemon_command", "ensure_daemon"]


def daemon_command(root: str) -> list[str]:
    return [sys.executable, "-m", "cove.server.main", "--root", root]


def answers(socket_path: str, timeout: float = 2.0) -> bool:
    """True if something answers ``GET /1.0`` over HTTP on ``socket_path``."""
    transport = UnixTransport(socket_path, timeout=timeout)
    try:
        transport.request("GET", "/1.0")
    except ConnectionFailed:
        return False
    finally:
        transport.close()
    return True


def _log_tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(x.strip() for x in tail if x.strip())


def _root_held(root: str) -> bool:
    """True if a coved holds ``ROOT/coved.lock``: one is starting (its socket
    is bound but not listening until it has reconciled), so ours stepped aside."""
    import fcntl

    try:
        fd = os.open(os.path.join(root, "coved.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def ensure_daemon(root: str, command: list[str] | None = None, *, timeout: float = 10.0,
                  poll: float = 0.02) -> None:
    """Make sure a daemon answers on ``ROOT/unix.socket``, starting one if needed.

    ``command`` defaults to ``python -m cove.server.main --root ROOT``. If the
    one started exits because another coved holds the root (still starting
    up), the wait goes on for that one.

    Raises:
        CoveError: the root cannot be made, the daemon exits early, or it
            does not answer within ``timeout`` seconds. The message names
            the log file.
    """
    import fcntl
    import subprocess

    sock = os.path.join(root, "unix.socket")
    log = os.path.join(root, "coved.log")
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        lock_fd = os.open(os.path.join(root, "coved.start.lock"),
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise CoveError(f"cannot start coved in {root}: {e.strerror or e}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if answers(sock):
            return  # another cove command started it while we waited
        argv = command or daemon_command(root)
        try:
            # The log names paths and requests: owner-only, like the database.
            log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.fchmod(log_fd, 0o600)
            with open(log_fd, "ab") as logf:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=logf, start_new_session=True, cwd="/")
        except OSError as e:
            raise CoveError(f"cannot start coved ({argv[0]}): {e.strerror or e}") from None
        deadline = time.monotonic() + timeout
        while True:
            if answers(sock):
                return
            code = proc.poll()
            if code is not None and not _root_held(root):
                tail = _log_tail(log, 1)
                raise CoveError(f"coved exited with status {code} before answering on {sock}"
                                f" (see {log}{': ' + tail if tail else ''})")
            if time.monotonic() >= deadline:
                raise CoveError(f"coved did not answer on {sock} within {timeout:g} s"
                                f" (see {log})")
            time.sleep(poll)
    finally:
        os.close(lock_fd)
