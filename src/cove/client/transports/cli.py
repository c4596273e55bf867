"""``CliTransport``: one container through ``lxc exec`` and ``lxc file``
(or ``cove``'s), run by its driver's transport.

Design notes:

* Output and input travel as the command's own stdout and stdin, so reading
  and writing files, and exec, work at any depth of nesting without copies
  in between: ``file pull C/PATH -`` prints the file, ``file push - C/PATH``
  reads it.
* Copies to or from local paths (``download_*``, ``upload_*``) need the
  local path where the command runs. When that is this host
  (``LocalTransport``) the command reads and writes it directly; otherwise
  the copy is staged in a temporary folder where the command runs and moved
  by the driver's own transport, which nests the same way.
* A failure is explained by looking, not by reading the message: a missing
  file is one its folder's listing (``query .../files?path=FOLDER``) lacks;
  exit 127 is a missing program if no folder of the PATH holds it.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import quote

from cove.client.transports.base import Transport
from cove.model.errors import BadRequest, InternalError, NotFound

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cove.client._exec import ExecResult

__all__ = ["CliHost", "CliTransport"]


class CliHost(Protocol):
    """What a ``CliTransport`` needs of its driver (``CliDriver`` is one): the
    command and where it runs, and a few calls of it. A Protocol, so the
    transport does not import the driver that imports it."""

    @property
    def transport(self) -> Transport: ...

    @property
    def command(self) -> Sequence[str]: ...

    @property
    def env(self) -> Mapping[str, str]: ...

    def argv(self, *args: str) -> list[str]:
        """The command line of ``args`` (the command, its global options, ``args``)."""
        ...

    def target(self, name: str) -> str: ...

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True,
            timeout: float | None = None) -> ExecResult: ...

    def query(self, path: str, *, method: str = "GET", data: Any = None,
              wait: bool = False) -> Any: ...

    def find_instance(self, name: str) -> dict[str, Any] | None: ...

    def staged(self, local: Path) -> contextlib.AbstractContextManager[tuple[str, Any]]: ...


class CliTransport(Transport):
    """Container ``name`` of the host ``driver`` commands."""

    def __init__(self, driver: CliHost, name: str) -> None:
        self.driver = driver
        self.name = name

    def __repr__(self) -> str:
        return f"CliTransport({self.driver!r}, {self.name!r})"

    def _spec(self, path: str) -> str:
        return f"{self.driver.target(self.name)}{path}"

    # -- looking instead of guessing --------------------------------------------------
    def _listing(self, folder: str) -> list[str] | None:
        """Names in ``folder`` of the container, or None if it is not a folder."""
        path = f"/1.0/instances/{quote(self.name, safe='')}/files?path={quote(folder, safe='')}"
        try:
            found = self.driver.query(path)
        except InternalError:
            return None
        return [str(x) for x in found] if isinstance(found, list) else None

    def _exists(self, path: str) -> bool:
        parent, base = posixpath.split(path.rstrip("/"))
        if not base:
            return True
        names = self._listing(parent or "/")
        return names is not None and base in names

    def _explain(self, e: InternalError, path: str) -> Exception:
        if self.driver.find_instance(self.name) is None:
            return NotFound(f"Instance not found: {self.name}")
        if not self._exists(path):
            return NotFound(f"No such file in {self.name}: {path}")
        return e

    # -- commands -----------------------------------------------------------------------
    def _exec(self, argv: list[str], *, env: dict[str, str], cwd: str | None,
              uid: int | None, gid: int | None, stdin: bytes | BinaryIO | None,
              timeout: float | None, on_stdout: Callable[[bytes], None],
              on_stderr: Callable[[bytes], None]) -> int:
        args = self.driver.argv("exec", self.driver.target(self.name), "-T")
        if stdin is None:
            args.append("-n")
        for k, v in env.items():
            args += ["--env", f"{k}={v}"]
        if cwd is not None:
            args += ["--cwd", cwd]
        if uid is not None:
            args += ["--user", str(uid)]
        if gid is not None:
            args += ["--group", str(gid)]
        args += ["--", *argv]

        def relay(name: str, chunk: bytes) -> None:
            (on_stdout if name == "stdout" else on_stderr)(chunk)

        result = self.driver.transport.execute(args, env=self.driver.env, stdin=stdin,
                                               timeout=timeout, capture=False, stream=relay)
        if result.exit_code != 0:
            # Did the command run at all? The CLI says so only in words.
            inst = self.driver.find_instance(self.name)
            if inst is None:
                raise NotFound(f"Instance not found: {self.name}")
            if str(inst.get("status", "")).lower() != "running":
                raise BadRequest(f"Instance {self.name} is not running")
        return result.exit_code

    def _names_in(self, folder: str) -> list[str] | None:
        return self._listing(folder)

    # -- files ------------------------------------------------------------------------
    def _read(self, path: str) -> bytes:
        try:
            return self.driver.run("file", "pull", self._spec(path), "-").stdout
        except InternalError as e:
            if self._listing(path) is not None:
                raise BadRequest(f"{path} is a folder: use download_folder") from None
            raise self._explain(e, path) from None

    def _write(self, path: str, data: bytes, uid: int | None, gid: int | None,
               mode: int | None) -> None:
        args = ["file", "push", "-", self._spec(path), *_owner_args(uid, gid, mode)]
        try:
            self.driver.run(*args, stdin=data)
        except InternalError as e:
            raise self._explain(e, posixpath.dirname(path)) from None

    def _where_command_runs(self, local: Path) -> contextlib.AbstractContextManager[
            tuple[str, Any]]:
        return self.driver.staged(local)

    def _download_file(self, path: str, local: Path) -> None:
        with self._where_command_runs(local) as (there, outer):
            dest = there if outer is None else posixpath.join(there, local.name or "file")
            try:
                self.driver.run("file", "pull", self._spec(path), dest)
            except InternalError as e:
                raise self._explain(e, path) from None
            if outer is not None:
                outer.download_file(dest, local)

    def _upload_file(self, local: Path, path: str, uid: int | None, gid: int | None,
                     mode: int | None) -> None:
        with self._where_command_runs(local) as (there, outer):
            src = there
            if outer is not None:
                outer.upload_file(local, posixpath.join(there, local.name), mode=mode)
                src = posixpath.join(there, local.name)
            try:
                self.driver.run("file", "push", src, self._spec(path),
                                *_owner_args(uid, gid, mode))
            except InternalError as e:
                raise self._explain(e, posixpath.dirname(path)) from None

    def _download_folder(self, path: str, local_dir: Path) -> None:
        with self._where_command_runs(local_dir) as (there, outer):
            try:
                self.driver.run("file", "pull", "-r", self._spec(path), there)
            except InternalError as e:
                raise self._explain(e, path) from None
            if outer is not None:
                outer.download_folder(posixpath.join(there, posixpath.basename(path)),
                                      local_dir)

    def _upload_folder(self, local: Path, path: str, uid: int | None,
                       gid: int | None) -> None:
        with self._where_command_runs(local) as (there, outer):
            src = str(local)
            if outer is not None:
                outer.upload_folder(local, there)
                src = posixpath.join(there, local.name)
            args = ["file", "push", "-r", "-p", src, self._spec(path.rstrip("/") + "/")]
            args += _owner_args(uid, gid, None)
            try:
                self.driver.run(*args)
            except InternalError as e:
                raise self._explain(e, path) from None


def _owner_args(uid: int | None, gid: int | None, mode: int | None) -> list[str]:
    args: list[str] = []
    if uid is not None:
        args += ["--uid", str(uid)]
    if gid is not None:
        args += ["--gid", str(gid)]
    if mode is not None:
        args += ["--mode", f"{mode:04o}"]
    return args

