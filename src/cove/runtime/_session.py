"""One exec session's processes, as a sub-cgroup of its container.

Design note: an exec session must end with its client (LXD kills the command
when the control websocket, or for a non-interactive session the stdout one,
goes away; lxd#9594). Killing the process cove started is not enough: in
``sh -c 'cat /dev/zero | sleep 1002'`` the shell's children live on. A
process group or session does not hold them either: any process may call
``setsid()`` (a daemonising command does) and leave it. A cgroup does: a
process cannot leave one without write access to the cgroup tree, which the
container does not have. So each session gets its own child cgroup of the
container's cgroup v2 directory (``cove-exec-<random>``; on a hybrid host the
``unified`` hierarchy, which has ``cgroup.kill`` and no controllers, so no
"no internal processes" rule applies), the helper's command joins it
instead of the container's own before it execs, and ending the tree is one
write of ``1`` to ``cgroup.kill`` (Linux 5.14+; before that each member is
sent SIGKILL until none is left). The v1 hierarchies and the container's
limits are unchanged: the sub-cgroup has no controllers, so its processes
count against the container's.

A session that ends normally may leave processes on purpose (``lxc exec C --
sh -c 'daemon &'`` starts a service): ``release()`` moves whatever is left
into the container's cgroup and removes the directory. What a crashed coved
leaves is ended by the next coved (``sweep``, from the reconciler: the
clients of those sessions went with the old coved) and would otherwise go
with the container's cgroup (runc deletes sub-cgroups).
Cost: a mkdir and an rmdir in cgroupfs per session, ~50 us here; an
engine exec of ``true`` measured 4.5 ms with it against 4.3 ms without
(medians of 200, within the noise of a shared host).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

__all__ = ["PREFIX", "SessionCgroup", "sweep"]

PREFIX = "cove-exec-"
_MOVE_ROUNDS = 20  # a forking leftover can add members while they are moved


def _pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


class SessionCgroup:
    """The sub-cgroup of one exec session. ``kill()`` and ``release()`` are
    idempotent and never raise for a cgroup that is already gone."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def make(cls, container_cgroup: str) -> SessionCgroup | None:
        """A new session cgroup under the container's cgroup v2 directory;
        None when there is none (a pure v1 host) or it cannot be made, and
        the session then falls back to signalling its process group."""
        parent = Path(container_cgroup)
        if not (parent / "cgroup.procs").exists() or not (parent / "cgroup.type").exists():
            return None  # not a cgroup v2 directory
        path = parent / f"{PREFIX}{secrets.token_hex(6)}"
        try:
            path.mkdir()
        except OSError:
            return None
        return cls(path)

    def kill(self) -> None:
        """SIGKILL every process of the session, whoever forked it."""
        try:
            with open(self.path / "cgroup.kill", "w") as f:
                f.write("1")
            return
        except FileNotFoundError:
            if not self.path.exists():
                return  # released already
        except OSError:
            pass
        for _ in range(_MOVE_ROUNDS):  # no cgroup.kill: the kernel is older than 5.14
            pids = _pids(self.path)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def release(self) -> None:
        """Hand what is left to the container's cgroup and remove ours."""
        parent = self.path.parent / "cgroup.procs"
        for _ in range(_MOVE_ROUNDS):
            pids = _pids(self.path)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError), open(parent, "w") as f:
                    f.write(str(pid))
        with contextlib.suppress(OSError):
            self.path.rmdir()


def sweep(container_cgroup: str, grace: float = 1.0) -> list[str]:
    """Kill and remove every session cgroup under a container's cgroup v2
    directory; what coved left when it died (their clients went with it).
    Returns the names of the sessions ended. Idempotent."""
    parent = Path(container_cgroup)
    try:
        found = [d for d in parent.iterdir() if d.name.startswith(PREFIX) and d.is_dir()]
    except OSError:
        return []
    for path in found:
        SessionCgroup(path).kill()
    deadline = time.monotonic() + grace
    for path in found:
        while _pids(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            path.rmdir()
    return [d.name for d in found]
