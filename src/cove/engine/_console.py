"""An instance's console: attaching to it, and clearing its log.

Design note: which instances have a console is decided when they start
(``Instances._spec_for``): a system container, running the image's init,
gets a pty as ``/dev/console`` held by its conmon monitor (see
``runtime._console``), as every LXD container has one; an application
(``cove.cmd``, an OCI image's command) keeps plain pipes, and attaching to
it is refused with the reason. An instance started by an older cove has no
console until it restarts.

One client at a time, as LXD (liblxc answers a second ``lxc console``
"terminal already in use"): a second attach is refused while the first is
there. The log (``GET .../console``) is the access service's; clearing it
asks a running instance's conmon to start a new log file, and empties a
stopped one's.
"""

from __future__ import annotations

import json
import os
import threading

from cove.engine._runs import Paths
from cove.model.errors import BadRequest, Conflict
from cove.model.states import Status
from cove.runtime._console import ConsoleAttachment, attach, reopen_log
from cove.runtime.runc import Runc
from cove.store import Store

__all__ = ["AttachedConsole", "Console"]

CONSOLE_LOG = "console.log"


class AttachedConsole:
    """One client's attachment to an instance's console; ``close()`` (idempotent)
    lets another client attach. ``fileno()`` is readable when output (or the
    end) is there; ``read()`` gives it (b"" at the end, None for nothing yet)."""

    def __init__(self, attachment: ConsoleAttachment, release: threading.Lock) -> None:
        self._att = attachment
        self._release: threading.Lock | None = release

    def fileno(self) -> int:
        return self._att.fileno()

    def read(self) -> bytes | None:
        return self._att.read()

    def write(self, data: bytes) -> None:
        """Raises: OSError when the console is gone (the instance stopped)."""
        self._att.write(data)

    def resize(self, width: int, height: int) -> None:
        self._att.resize(width, height)

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            self._att.close()
            release.release()


class Console:
    """Console attachments of the instances of one root. Thread-safe."""

    def __init__(self, *, store: Store, runtime: Runc, paths: Paths) -> None:
        self._store = store
        self._runtime = runtime
        self._paths = paths
        self._lock = threading.Lock()
        self._held: dict[str, threading.Lock] = {}

    def attach(self, name: str, width: int = 0, height: int = 0) -> AttachedConsole:
        """Attach to the console of the running instance ``name``, sized
        ``width`` x ``height`` when both are given. Not idempotent: the
        caller must ``close()`` the session.

        Raises:
            NotFound: no such instance.
            BadRequest: it is not running, is frozen, or has no console.
            Conflict: another client is attached.
        """
        inst = self._store.get_instance(name)
        if inst.status is Status.FROZEN:
            raise BadRequest("Instance is frozen")
        if inst.status is not Status.RUNNING:
            raise BadRequest("Instance is not running")
        if not self._has_console(name):
            raise BadRequest(
                f"Instance {name} has no console: it runs an application (cove.cmd or the "
                "image's command), not an init; use exec, or the log (console --show-log)")
        with self._lock:
            held = self._held.setdefault(name, threading.Lock())
        if not held.acquire(blocking=False):
            raise Conflict(f"The console of {name} is already in use by another client")
        try:
            att = attach(self._runtime.attach_socket(name), self._paths.instance_dir(name) / "ctl")
        except BaseException:
            held.release()
            raise
        if width > 0 and height > 0:
            att.resize(width, height)
        return AttachedConsole(att, held)

    def clear_log(self, name: str) -> None:
        """Empty the console log (``DELETE .../console``). Idempotent.

        Raises:
            NotFound: no such instance.
        """
        inst = self._store.get_instance(name)
        d = self._paths.instance_dir(name)
        if inst.status is not Status.STOPPED and reopen_log(d / "ctl"):
            return
        try:
            fd = os.open(d / CONSOLE_LOG, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def _has_console(self, name: str) -> bool:
        """Whether the running container was made with a console pty (its
        bundle's spec, as runc read it at start)."""
        try:
            with open(self._paths.instance_dir(name) / "config.json", "rb") as f:
                return bool(json.load(f)["process"].get("terminal"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
