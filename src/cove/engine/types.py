"""Request and result types the engine takes and gives (shared with the server)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CreateRequest", "ExecRequest", "ExecSession", "FileInfo"]


@dataclass
class CreateRequest:
    """What a new instance is made of (the parsed ``POST /1.0/instances`` body)."""

    name: str
    image: str  # alias, fingerprint or fingerprint prefix
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=lambda: ["default"])
    ephemeral: bool = False
    description: str = ""
    start: bool = False


@dataclass
class ExecRequest:
    """A command to run in a running instance (``POST .../exec``)."""

    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    interactive: bool = False  # a pty, stdin+stdout+stderr on one stream
    width: int = 80
    height: int = 24
    user: int | str | None = None  # uid, or a name resolved in the container's /etc/passwd
    group: int | str | None = None
    cwd: str | None = None


class ExecSession(Protocol):
    """A running command. The server copies between these fds and websockets.

    Interactive: ``pty_fd`` is the pty master (read output, write input), the
    three stdio fds are None. Otherwise ``stdin_fd`` (write; close for EOF),
    ``stdout_fd`` and ``stderr_fd`` (read until EOF). ``wait()`` returns the
    exit code (128+N when killed by signal N). Every fd is owned by the
    session and closed by ``close()``.
    """

    pty_fd: int | None
    stdin_fd: int | None
    stdout_fd: int | None
    stderr_fd: int | None

    def wait(self, timeout: float | None = None) -> int | None: ...
    def resize(self, width: int, height: int) -> None: ...
    def signal(self, signum: int) -> None: ...
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
