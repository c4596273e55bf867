"""Result types the engine gives (shared with the server). The requests it
takes are the wire classes of ``cove.api`` (``InstancesPost``, ``InstanceExecPost``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cove.model.records import Instance

__all__ = ["ConsoleSession", "ExecSession", "FileInfo", "Listed"]


class ExecSession(Protocol):
    """A running command. The server copies between these fds and websockets.

    Interactive: ``pty_fd`` is the pty master (read output, write input), the
    three stdio fds are None. Otherwise ``stdin_fd`` (write; close for EOF),
    ``stdout_fd`` and ``stderr_fd`` (read until EOF). ``wait()`` returns the
    exit code (128+N when killed by signal N). ``kill()`` ends the whole
    process tree of the session (its client went away, or its operation was
    cancelled). Every fd is owned by the session and closed by ``close()``.
    """

    pty_fd: int | None
    stdin_fd: int | None
    stdout_fd: int | None
    stderr_fd: int | None

    def wait(self, timeout: float | None = None) -> int | None: ...
    def resize(self, width: int, height: int) -> None: ...
    def signal(self, signum: int) -> None: ...
    def kill(self) -> None:
        """SIGKILL the command and every process it started; idempotent."""
    def close(self) -> None: ...


class ConsoleSession(Protocol):
    """One client attached to an instance's console. ``fileno()`` polls
    readable when output (or the end) is there; ``read()`` returns it, b""
    at the end (the instance stopped), None when there is nothing yet;
    ``write()`` is input (OSError once the console is gone); ``close()`` is
    idempotent and lets another client attach."""

    def fileno(self) -> int: ...
    def read(self) -> bytes | None: ...
    def write(self, data: bytes) -> None: ...
    def resize(self, width: int, height: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class FileInfo:
    """A path inside an instance, as ``GET .../files`` reports it.

    ``type`` is ``file``, ``directory`` or ``symlink``. For a file, ``fd`` is
    an open read-only descriptor the caller must close; for a directory,
    ``entries`` lists names; for a symlink, ``target`` is its text.
    """

    type: str
    uid: int
    gid: int
    mode: int
    size: int = 0
    fd: int | None = None
    entries: list[str] | None = None
    target: str | None = None


class Listed:
    """One instance of a listing (``instances.listed``): its record, with the
    expanded fields, shared by every listing until its row or a profile
    changes (read it, never change it), ``wire``, its LXD ``Instance``
    (``cove.api.instance``; read only too), and ``json``, that as JSON text
    (``cove.api.instance_json``)."""

    __slots__ = ("inst", "json", "wire")

    def __init__(self, inst: Instance, json: str, wire: dict[str, Any]) -> None:
        self.inst = inst
        self.json = json
        self.wire = wire
