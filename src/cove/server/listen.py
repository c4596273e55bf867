"""The unix socket coved listens on.

Design note: whoever can connect to the socket is root as far as cove is
concerned (``auth: trusted``), so the socket must never exist, not even for
an instant, with a looser mode than 0600: it is bound under a umask that
leaves only the owner's read and write, then chmod'ed to be sure. A socket
file left by a coved that died is removed; one that still answers belongs
to a live coved and is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

__all__ = ["SocketInUse", "bind_unix"]


class SocketInUse(RuntimeError):
    """Another process answers on the socket path (a coved already runs)."""


def _remove_stale(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket: refusing to replace it",
                              str(path))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: left by a coved that died
    else:
        raise SocketInUse(f"{path}: another coved is listening on it")
    finally:
        probe.close()


def bind_unix(path: Path, *, mode: int = 0o600) -> socket.socket:
    """Bind (not yet listen) a unix stream socket at ``path`` with ``mode``.

    Raises:
        SocketInUse: a live process answers on ``path``.
        FileExistsError: ``path`` exists and is not a socket.
    """
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o777 & ~mode)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, mode)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return sock
