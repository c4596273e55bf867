"""The Transport interface: one container (or this host), whatever the way in.

Design notes:

* The public methods check their arguments and resolve users here, once, so
  every transport refuses the same bad input with the same error before it
  does anything: a container path must be absolute (``BadRequest``), a user
  name must be in the container's ``/etc/passwd``. Users are resolved on the
  client from that file and sent as numbers, because LXD's exec takes only
  numbers (cove's takes names too) and LXD does not set the group from it.
* Each transport implements a handful of primitives (``_exec``, ``_read``,
  ``_write``, the four tree copies). Transports whose host has LXD's file API
  (REST, cove's engine) get the tree copies from ``FileApiTrees``, written
  once on two primitives (``_get`` and ``_put``).
* Folders: ``upload_folder(local, path)`` makes ``path/<basename of local>``
  and ``download_folder(path, local)`` makes ``local/<basename of path>``, as
  ``lxc file push -r``/``pull -r`` and ``scp -r`` do; the destination folder
  is created if missing. Modes are kept; symlinks are copied as links, never
  followed. (LXD 5.0 reports a relative link target joined to the link's
  folder, so a link downloaded from LXD points to the same place by an
  absolute path.)
* ``user(u)`` gives a transport bound to ``u``: commands run as that uid and
  primary gid, in its home with ``HOME`` and ``USER`` set, and files it
  writes are owned by it unless told otherwise.
"""

from __future__ import annotations

import copy
import os
import posixpath
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cove.client._exec import CommandNotFound, ExecResult
from cove.client._flow import drive
from cove.client.transports import _trees as trees
from cove.model.errors import BadRequest, NotFound
from cove.model.passwd import PasswdEntry, parse_passwd, resolve_user

if TYPE_CHECKING:
    from cove.client._rest import InstanceFile

__all__ = [
    "ExecPlan",
    "FileApiTrees",
    "OutputCallback",
    "StdinLike",
    "Transport",
    "check_container_path",
    "check_local",
]

#: ``stream(fd_name, chunk)``: output as it comes; fd_name is "stdout" or "stderr".
OutputCallback = Callable[[str, bytes], None]
StdinLike = bytes | str | BinaryIO | None


def check_container_path(path: object, what: str = "path") -> str:
    """A path inside a container: absolute, no NUL. Returns it normalised.

    Raises:
        BadRequest: relative, empty or not a string.
    """
    if not isinstance(path, str) or not path:
        raise BadRequest(f"The {what} in the container must be a non-empty string")
    if not path.startswith("/"):
        raise BadRequest(f"The {what} in the container must be absolute: {path!r} "
                         "(local paths go in the other argument)")
    if "\0" in path:
        raise BadRequest(f"The {what} in the container contains a NUL byte")
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/")


def check_local(path: object, what: str = "local path") -> Path:
    if isinstance(path, Path):
        return path
    if not isinstance(path, str) or not path:
        raise BadRequest(f"The {what} must be a non-empty string or Path")
    return Path(path)


def _argv(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        if not command.strip():
            raise BadRequest("The command is empty")
        return ["sh", "-c", command]
    argv = [str(a) for a in command]
    if not argv or not argv[0]:
        raise BadRequest("The command is empty")
    return argv


class ExecPlan:
    """What ``execute`` sends (argv, env, cwd, ids, stdin) and how it gathers
    the output into an ``ExecResult``; the same for sync and async transports.

    A bound user runs in its home with ``HOME`` and ``USER`` set, unless
    ``cwd``/``env`` say otherwise.
    """

    def __init__(self, command: str | Sequence[str], env: Mapping[str, str] | None,
                 cwd: str | None, who: PasswdEntry | None, stdin: StdinLike,
                 capture: bool, stream: OutputCallback | None, timeout: float | None) -> None:
        self.argv = _argv(command)
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise BadRequest("timeout must be a positive number of seconds")
        self.cwd = check_container_path(cwd, "cwd") if cwd is not None else None
        self.env: dict[str, str] = {}
        if who is not None:
            self.env.update({"HOME": who.home, "USER": who.name})
            if self.cwd is None and who.home.startswith("/"):
                self.cwd = who.home
        self.env.update({str(k): str(v) for k, v in (env or {}).items()})
        self.uid = who.uid if who is not None else None
        self.gid = who.gid if who is not None else None
        self.stdin: bytes | BinaryIO | None = stdin.encode() if isinstance(stdin, str) \
            else stdin
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._capture = capture
        self._stream = stream

    def _take(self, name: str, buf: list[bytes], chunk: bytes) -> None:
        if self._capture:
            buf.append(chunk)
        if self._stream is not None:
            self._stream(name, chunk)

    def on_stdout(self, chunk: bytes) -> None:
        self._take("stdout", self._out, chunk)

    def on_stderr(self, chunk: bytes) -> None:
        self._take("stderr", self._err, chunk)

    def result(self, code: int) -> ExecResult:
        return ExecResult(code, b"".join(self._out), b"".join(self._err), self.argv)


class Transport(ABC):
    """Run commands in, and move files in and out of, one container.

    Errors: ``BadRequest`` for bad arguments (before anything happens),
    ``NotFound`` for a missing file or container (``CommandNotFound`` for a
    program that is not there), ``Timeout`` for a command past its
    ``timeout`` (it is killed), the server's own errors otherwise.
    """

    #: The user this transport is bound to (None: the container's default, root).
    bound_user: PasswdEntry | None = None

    # -- primitives ---------------------------------------------------------------
    @abstractmethod
    def _exec(self, argv: list[str], *, env: dict[str, str], cwd: str | None,
              uid: int | None, gid: int | None, stdin: bytes | BinaryIO | None,
              timeout: float | None, on_stdout: Callable[[bytes], None],
              on_stderr: Callable[[bytes], None]) -> int:
        """Run ``argv`` to its end, feeding output to the callbacks; return the
        exit code. Raises CommandNotFound, and Timeout after killing it."""

    @abstractmethod
    def _read(self, path: str) -> bytes:
        """A regular file's bytes (NotFound; BadRequest for a directory)."""

    @abstractmethod
    def _write(self, path: str, data: bytes, uid: int | None, gid: int | None,
               mode: int | None) -> None:
        """Create or replace a regular file."""

    @abstractmethod
    def _download_file(self, path: str, local: Path) -> None:
        """Copy one file (or symlink, as a link) out, keeping its mode."""

    @abstractmethod
    def _upload_file(self, local: Path, path: str, uid: int | None, gid: int | None,
                     mode: int | None) -> None:
        """Copy one local file (or symlink, as a link) in."""

    @abstractmethod
    def _download_folder(self, path: str, local_dir: Path) -> None:
        """Copy folder ``path`` to ``local_dir/<basename>`` (local_dir exists)."""

    @abstractmethod
    def _upload_folder(self, local: Path, path: str, uid: int | None,
                       gid: int | None) -> None:
        """Copy local folder ``local`` to ``path/<basename>`` (path may be missing)."""

    @abstractmethod
    def _names_in(self, folder: str) -> list[str] | None:
        """The names in ``folder`` of the container; None if it is no folder."""

    def _program_exists(self, program: str, path_var: str | None) -> bool:
        return drive(trees.program_exists(program, path_var),
                     lambda op: self._names_in(op.folder))

    def _passwd(self) -> str:
        """The text of the container's /etc/passwd ('' when it has none)."""
        try:
            return self._read("/etc/passwd").decode("utf-8", "replace")
        except NotFound:
            return ""

    # -- users ----------------------------------------------------------------------
    def _resolve(self, user: int | str) -> PasswdEntry:
        if isinstance(user, bool) or not isinstance(user, (int, str)) or user == "":
            raise BadRequest(f"A user is a name or a uid, not {user!r}")
        return resolve_user(user, parse_passwd(self._passwd()))

    def user(self, user: int | str) -> Transport:
        """A transport into the same container bound to ``user`` (a name from
        the container's /etc/passwd, or a uid).

        Raises:
            BadRequest: no such user name in the container.
        """
        bound = copy.copy(self)
        bound.bound_user = self._resolve(user)
        return bound

    def _who(self, user: int | str | None) -> PasswdEntry | None:
        return self._resolve(user) if user is not None else self.bound_user

    def _owner(self, uid: int | None, gid: int | None) -> tuple[int | None, int | None]:
        u = self.bound_user
        if u is not None:
            return (u.uid if uid is None else uid, u.gid if gid is None else gid)
        return uid, gid

    # -- commands --------------------------------------------------------------------
    def execute(self, command: str | Sequence[str], *, env: Mapping[str, str] | None = None,
                cwd: str | None = None, user: int | str | None = None,
                stdin: StdinLike = None, timeout: float | None = None, capture: bool = True,
                stream: OutputCallback | None = None) -> ExecResult:
        """Run ``command`` (an argv list, or a string for ``sh -c``) to its end.

        ``stdin`` is bytes, text or a binary file; ``stream(fd_name, chunk)``
        gets output as it comes (also kept in the result unless ``capture``
        is False). A non-zero exit is not an error until ``check()``.

        Raises:
            CommandNotFound: the program does not exist in the container (exit
                status 127 and no such file by its path or in the PATH).
            Timeout: it ran past ``timeout`` seconds and was killed.
            BadRequest: an empty command, a relative ``cwd``, an unknown user.
            NotFound: the container does not exist.
        """
        plan = ExecPlan(command, env, cwd, self._who(user), stdin, capture, stream, timeout)
        code = self._exec(plan.argv, env=plan.env, cwd=plan.cwd, uid=plan.uid, gid=plan.gid,
                          stdin=plan.stdin, timeout=timeout, on_stdout=plan.on_stdout,
                          on_stderr=plan.on_stderr)
        if code == 127 and not self._program_exists(plan.argv[0], plan.env.get("PATH")):
            raise CommandNotFound(f"Command not found: {plan.argv[0]}", plan.argv)
        return plan.result(code)

    # -- files ----------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        """The bytes of a regular file in the container.

        Raises:
            NotFound: no such file.  BadRequest: a relative path, or a folder.
        """
        return self._read(check_container_path(path))

    def write_file(self, path: str, content: bytes | str, *, uid: int | None = None,
                   gid: int | None = None, mode: int | None = None) -> None:
        """Create or replace a file (its folder must exist). Owner defaults
        to the bound user (root), mode to 0644 for a new file."""
        path = check_container_path(path)
        data = content.encode() if isinstance(content, str) else bytes(content)
        uid, gid = self._owner(uid, gid)
        self._write(path, data, uid, gid, mode)

    def download_file(self, path: str, local_path: str | os.PathLike[str]) -> None:
        """Copy a file out to ``local_path`` with its mode (a symlink as a link)."""
        self._download_file(check_container_path(path), check_local(local_path))

    def upload_file(self, local_path: str | os.PathLike[str], path: str, *,
                    uid: int | None = None, gid: int | None = None,
                    mode: int | None = None) -> None:
        """Copy a local file in; ``mode`` defaults to the local file's."""
        local = check_local(local_path)
        if not local.is_symlink() and not local.is_file():
            raise NotFound(f"No local file {str(local)!r}") if not local.exists() else \
                BadRequest(f"{str(local)!r} is not a file: use upload_folder")
        path = check_container_path(path)
        uid, gid = self._owner(uid, gid)
        if mode is None and not local.is_symlink():
            mode = stat.S_IMODE(local.stat().st_mode)
        self._upload_file(local, path, uid, gid, mode)

    def download_folder(self, path: str, local_path: str | os.PathLike[str]) -> None:
        """Copy folder ``path`` to ``local_path/<its name>`` (modes kept,
        symlinks as links); ``local_path`` is created if missing."""
        path = check_container_path(path)
        if path == "/":
            raise BadRequest("Refusing to download the whole container: name a folder")
        local = check_local(local_path)
        local.mkdir(parents=True, exist_ok=True)
        self._download_folder(path, local)

    def upload_folder(self, local_path: str | os.PathLike[str], path: str, *,
                      uid: int | None = None, gid: int | None = None) -> None:
        """Copy local folder ``local_path`` to ``path/<its name>`` (modes kept,
        symlinks as links); ``path`` is created if missing."""
        local = check_local(local_path)
        if not local.is_dir() or local.is_symlink():
            raise NotFound(f"No local folder {str(local)!r}") if not local.exists() else \
                BadRequest(f"{str(local)!r} is not a folder: use upload_file")
        path = check_container_path(path)
        uid, gid = self._owner(uid, gid)
        self._upload_folder(local.absolute(), path, uid, gid)


class FileApiTrees(ABC):
    """File and tree copies on LXD's file API, from two primitives: ``_get``
    and ``_put`` (the flows are in ``_trees``, shared with asyncio).
    For transports whose host has the file API: REST and cove's engine."""

    @abstractmethod
    def _get(self, path: str) -> InstanceFile:
        """``GET .../files?path=``: NotFound when missing; links not followed."""

    @abstractmethod
    def _put(self, path: str, type: str, *, data: bytes = b"", target: str = "",
             uid: int | None = None, gid: int | None = None, mode: int | None = None) -> None:
        """``POST .../files?path=`` of a file, directory or symlink."""

    def _file_op(self, op: trees.Get | trees.Put | trees.ListDir) -> Any:
        if isinstance(op, trees.Get):
            return self._get(op.path)
        if isinstance(op, trees.ListDir):
            return drive(trees.names_in(op.folder), self._file_op)
        return self._put(op.path, op.type, data=op.data, target=op.target, uid=op.uid,
                         gid=op.gid, mode=op.mode)

    def _names_in(self, folder: str) -> list[str] | None:
        return drive(trees.names_in(folder), self._file_op)

    def _read(self, path: str) -> bytes:
        return drive(trees.read(path), self._file_op)

    def _write(self, path: str, data: bytes, uid: int | None, gid: int | None,
               mode: int | None) -> None:
        drive(trees.write(path, data, uid, gid, mode), self._file_op)

    def _download_file(self, path: str, local: Path) -> None:
        drive(trees.download_file(path, local), self._file_op)

    def _upload_file(self, local: Path, path: str, uid: int | None, gid: int | None,
                     mode: int | None) -> None:
        drive(trees.upload_file(local, path, uid, gid, mode), self._file_op)

    def _download_folder(self, path: str, local_dir: Path) -> None:
        drive(trees.download_folder(path, local_dir), self._file_op)

    def _upload_folder(self, local: Path, path: str, uid: int | None,
                       gid: int | None) -> None:
        drive(trees.upload_folder(local, path, uid, gid), self._file_op)
