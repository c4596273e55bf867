"""What every ``cove`` command gets: the root, output streams, a client.

Design note: the client is made on first use, so ``--help`` and usage
errors never touch the socket. Making it opens one connection at once (kept
for the first request, so it costs no extra round trip); if nobody listens,
the daemon is started here (``cove.cli.daemon``) unless ``COVE_NO_AUTOSTART``
is set.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TextIO

    from cove.client import Client

__all__ = ["Context", "UsageError", "config_dir", "current_project", "default_root",
           "parse_kv", "read_config", "save_project", "split_target", "write_config"]


class UsageError(Exception):
    """The command line is wrong; ``cove`` prints it and exits 2."""


def default_root() -> str:
    return os.environ.get("COVE_DIR") or "/var/lib/cove"


def config_dir() -> str:
    """The CLI's own config directory: ``$XDG_CONFIG_HOME/cove`` (``~/.config/cove``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "cove")


def _config_path() -> str:
    return os.path.join(config_dir(), "config.json")


def read_config() -> dict[str, Any]:
    """The CLI's config (``config.json``); ``{}`` when missing or unreadable."""
    try:
        with open(_config_path(), encoding="utf-8") as f:
            from cove.client._json import loads  # json's, without importing json

            data = loads(f.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def current_project(root: str) -> str:
    """The project commands on ``root`` work in: ``$COVE_PROJECT``, else what
    ``cove project switch`` recorded for the root, else ``default``."""
    env = os.environ.get("COVE_PROJECT")
    if env:
        return env
    projects = read_config().get("projects")
    value = projects.get(os.path.abspath(root)) if isinstance(projects, dict) else None
    return value if isinstance(value, str) and value else "default"


def save_project(root: str, project: str) -> None:
    """Record ``project`` as the current one of ``root`` (``cove project switch``)."""
    data = read_config()
    projects = data.get("projects")
    if not isinstance(projects, dict):
        projects = {}
    projects[os.path.abspath(root)] = project
    data["projects"] = projects
    write_config(data)


def write_config(data: dict[str, Any]) -> None:
    """Write the CLI's config whole, then rename it into place (mode 0600: it
    names auth files and remotes)."""
    import json

    path = _config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class Context:
    def __init__(self, root: str, *, quiet: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None, project: str | None = None) -> None:
        self.root = root
        self.quiet = quiet
        self.project = project or current_project(root)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._client: Client | None = None

    @property
    def socket_path(self) -> str:
        return os.path.join(self.root, "unix.socket")

    def client(self) -> Client:
        """The client, connected; starts coved first if it is not running."""
        if self._client is None:
            from cove.client import Client, ConnectionFailed

            client = Client(self.socket_path, project=self.project)
            try:
                client.connect()
            except ConnectionFailed as e:
                if not e.not_running or os.environ.get("COVE_NO_AUTOSTART"):
                    raise
                from cove.cli.daemon import ensure_daemon

                ensure_daemon(self.root)
                client.connect()
            self._client = client
        return self._client

    def info(self, message: str) -> None:
        """A progress line on stdout (``Creating c1``), unless ``--quiet``."""
        if not self.quiet:
            self.out.write(message + "\n")
            self.out.flush()

    def binary_out(self) -> BinaryIO:
        """stdout for bytes (text written so far is flushed first)."""
        self.out.flush()
        return self.out.buffer

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def parse_kv(items: list[str] | None, what: str = "KEY=VALUE") -> dict[str, str]:
    """``["a=1", "b=2"]`` → ``{"a": "1", "b": "2"}``; UsageError without ``=``."""
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected {what}, got {item!r}")
        result[key] = value
    return result


def split_target(spec: str) -> tuple[str, str]:
    """``NAME/PATH`` → ``(NAME, /PATH)``; UsageError if there is no path."""
    name, sep, path = spec.partition("/")
    if not sep or not name:
        raise UsageError(f"expected NAME/PATH, got {spec!r}")
    return name, "/" + path
