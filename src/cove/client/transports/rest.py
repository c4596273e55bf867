"""``RestTransport``: one container through the LXD API (exec websockets, file API)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from cove.client.transports.base import FileApiTrees, Transport
from cove.model.errors import CoveError, Timeout

if TYPE_CHECKING:
    from cove.client._rest import Client
    from cove.client._wire import InstanceFile

__all__ = ["RestTransport"]


class _Sink:
    """A file-like end for an exec output stream: every chunk to a callback."""

    def __init__(self, take: Callable[[bytes], None]) -> None:
        self.write = take

    def flush(self) -> None:
        pass


class RestTransport(FileApiTrees, Transport):
    """Container ``name`` on the host ``client`` talks to."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"RestTransport({self.client.transport.endpoint!r}, {self.name!r})"

    def _exec(self, argv: list[str], *, env: dict[str, str], cwd: str | None,
              uid: int | None, gid: int | None, stdin: bytes | BinaryIO | None,
              timeout: float | None, on_stdout: Callable[[bytes], None],
              on_stderr: Callable[[bytes], None]) -> int:
        session = self.client.exec_start(self.name, argv, environment=env, user=uid,
                                         group=gid, cwd=cwd)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            session.signal(9)

        timer = threading.Timer(timeout, kill) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            result = session.run(stdin, _Sink(on_stdout), _Sink(on_stderr))
        except CoveError:
            op = session.operation
            code = op.metadata.get("return") if op.status == "Failure" else None
            if code is None:
                raise
            # LXD fails the operation of every exec that exits 127 ("Command
            # not found") or 126 ("Command not executable"), with the exit
            # status beside it: that is an exit status, and execute() finds
            # out whether the program is really missing.
            return int(code)
        finally:
            if timer is not None:
                timer.cancel()
        if killed.is_set():
            raise Timeout(f"{' '.join(argv)} ran longer than {timeout:g}s in {self.name} "
                          "and was killed")
        return result.exit_code

    def _get(self, path: str) -> InstanceFile:
        return self.client.file_get(self.name, path)

    def _put(self, path: str, type: str, *, data: bytes = b"", target: str = "",
             uid: int | None = None, gid: int | None = None, mode: int | None = None) -> None:
        body = target.encode() if type == "symlink" else data
        self.client.file_put(self.name, path, body, uid=uid, gid=gid,
                             mode=None if type == "symlink" else mode, type=type)
