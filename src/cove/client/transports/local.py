"""``LocalTransport``: this host, as if it were a container; ``EngineTransport``:
a container of cove's engine running in this process (``LocalDriver``'s).

It is what a ``CliDriver`` runs ``lxc``/``cove`` with on the machine the
program runs on, and it is the innermost link of every nesting chain. Files
are this host's; "the container's" /etc/passwd is /etc/passwd. Commands run
with ``subprocess`` (as another user through ``user()``: its uid, primary
gid and no supplementary groups); the copy of stdin and output is the same
``pump`` the engine transport uses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cove.client._exec import CommandNotFound
from cove.client.transports._pump import pump
from cove.client.transports.base import FileApiTrees, Transport
from cove.model.errors import BadRequest, Forbidden, NotFound, Timeout

if TYPE_CHECKING:
    from cove.client._wire import InstanceFile
    from cove.engine.surface import EngineAPI

__all__ = ["EngineTransport", "LocalTransport"]


def _os_error(e: OSError, path: str) -> Exception:
    if isinstance(e, FileNotFoundError):
        return NotFound(f"No such file: {path}")
    if isinstance(e, IsADirectoryError):
        return BadRequest(f"{path} is a folder")
    if isinstance(e, PermissionError):
        return Forbidden(f"Permission denied: {path}")
    return BadRequest(f"{path}: {e.strerror or e}")


def _copy_entry(src: Path, dst: Path) -> None:
    """One file or symlink, keeping mode (and the link as a link)."""
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)


def _copy_tree(src: Path, dst: Path, uid: int | None = None, gid: int | None = None) -> None:
    dst.mkdir(exist_ok=True)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        s, d = Path(entry.path), dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(s, d, uid, gid)
        elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
            _copy_entry(s, d)
            if uid is not None or gid is not None:
                os.lchown(d, -1 if uid is None else uid, -1 if gid is None else gid)
    shutil.copystat(src, dst, follow_symlinks=False)
    if uid is not None or gid is not None:
        os.chown(dst, -1 if uid is None else uid, -1 if gid is None else gid)


class LocalTransport(Transport):
    """This host. ``env`` is added to every command's environment, which
    otherwise is this process's. A command past its timeout gets SIGTERM,
    then SIGKILL ``kill_grace`` seconds later (both to its process group)."""

    kill_grace = 3.0

    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        self.env = dict(env or {})

    def __repr__(self) -> str:
        return "LocalTransport()"

    # -- commands -------------------------------------------------------------------
    def _exec(self, argv: list[str], *, env: dict[str, str], cwd: str | None,
              uid: int | None, gid: int | None, stdin: bytes | BinaryIO | None,
              timeout: float | None, on_stdout: Callable[[bytes], None],
              on_stderr: Callable[[bytes], None]) -> int:
        full_env = {**os.environ, **self.env, **env}
        ids: dict[str, object] = {}
        if uid is not None:
            ids = {"user": uid, "group": gid if gid is not None else uid, "extra_groups": []}
        try:
            proc = subprocess.Popen(
                argv, env=full_env, cwd=cwd, stdin=subprocess.PIPE if stdin is not None
                else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, **ids)  # type: ignore[call-overload]
        except FileNotFoundError as e:
            if cwd is not None and e.filename == cwd:
                raise BadRequest(f"No such folder: {cwd}") from None
            raise CommandNotFound(f"Command not found: {argv[0]}", argv) from None
        except PermissionError as e:
            raise Forbidden(f"Cannot run {argv[0]}: {e.strerror}") from None
        assert proc.stdout is not None and proc.stderr is not None

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 9)

        def stop() -> None:
            # SIGTERM first: ``lxc exec`` and ``cove exec`` pass it on to the
            # command in the container, which SIGKILL to them could not.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 15)
            timer = threading.Timer(self.kill_grace, kill)
            timer.daemon = True
            timer.start()

        try:
            timed_out = pump(
                proc.stdin.fileno() if proc.stdin is not None else None,
                {proc.stdout.fileno(): on_stdout, proc.stderr.fileno(): on_stderr},
                stdin, exited=lambda: proc.poll() is not None, timeout=timeout,
                on_timeout=stop)
            code = proc.wait()
        except BaseException:
            kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
            proc.stderr.close()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if timed_out:
            raise Timeout(f"{' '.join(argv)} ran longer than {timeout:g}s and was killed")
        return int(128 - code if code < 0 else code)

    # -- files ------------------------------------------------------------------------
    def _passwd(self) -> str:
        try:
            return Path("/etc/passwd").read_text(errors="replace")
        except OSError:
            return ""

    def _names_in(self, folder: str) -> list[str] | None:
        try:
            return os.listdir(folder)
        except OSError:
            return None

    def _read(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise _os_error(e, path) from None

    def _write(self, path: str, data: bytes, uid: int | None, gid: int | None,
               mode: int | None) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o644 if mode is None else mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if mode is not None:
                    os.fchmod(f.fileno(), mode)
                if uid is not None or gid is not None:
                    os.fchown(f.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
        except OSError as e:
            raise _os_error(e, path) from None

    def _download_file(self, path: str, local: Path) -> None:
        src = Path(path)
        if not src.is_symlink() and src.is_dir():
            raise BadRequest(f"{path} is a folder: use download_folder")
        try:
            _copy_entry(src, local)
        except OSError as e:
            raise _os_error(e, path) from None

    def _upload_file(self, local: Path, path: str, uid: int | None, gid: int | None,
                     mode: int | None) -> None:
        dst = Path(path)
        try:
            _copy_entry(local, dst)
            if mode is not None and not dst.is_symlink():
                os.chmod(dst, mode)
            if uid is not None or gid is not None:
                os.lchown(dst, -1 if uid is None else uid, -1 if gid is None else gid)
        except OSError as e:
            raise _os_error(e, path) from None

    def _download_folder(self, path: str, local_dir: Path) -> None:
        src = Path(path)
        if src.is_symlink() or not src.is_dir():
            raise NotFound(f"No such folder: {path}") if not src.exists() else \
                BadRequest(f"{path} is not a folder: use download_file")
        try:
            _copy_tree(src, local_dir / src.name)
        except OSError as e:
            raise _os_error(e, path) from None

    def _upload_folder(self, local: Path, path: str, uid: int | None,
                       gid: int | None) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
            _copy_tree(local, Path(path) / local.name, uid, gid)
        except OSError as e:
            raise _os_error(e, path) from None


class EngineTransport(FileApiTrees, Transport):
    """Container ``name`` of a cove engine in this process (``LocalDriver``).

    The same engine calls coved makes for exec and files, without HTTP.
    """

    def __init__(self, engine: EngineAPI, name: str) -> None:
        self.engine = engine
        self.name = name

    def __repr__(self) -> str:
        return f"EngineTransport({str(self.engine.root)!r}, {self.name!r})"

    def _exec(self, argv: list[str], *, env: dict[str, str], cwd: str | None,
              uid: int | None, gid: int | None, stdin: bytes | BinaryIO | None,
              timeout: float | None, on_stdout: Callable[[bytes], None],
              on_stderr: Callable[[bytes], None]) -> int:
        from cove.api import InstanceExecPost
        from cove.engine._access import FinishedExec

        session = self.engine.access.exec(self.name, InstanceExecPost(
            command=argv, environment=env, user=uid, group=gid, cwd=cwd))
        try:
            if isinstance(session, FinishedExec):
                raise CommandNotFound(f"Command not found in {self.name}: {argv[0]}", argv)
            outputs = {fd: cb for fd, cb in ((session.stdout_fd, on_stdout),
                                             (session.stderr_fd, on_stderr)) if fd is not None}
            timed_out = pump(session.stdin_fd, outputs, stdin,
                             exited=lambda: session.wait(0) is not None, timeout=timeout,
                             on_timeout=lambda: session.signal(9))
            code = session.wait()
        finally:
            session.close()
        if timed_out:
            raise Timeout(f"{' '.join(argv)} ran longer than {timeout:g}s in {self.name} "
                          "and was killed")
        return int(code if code is not None else 0)

    def _get(self, path: str) -> InstanceFile:
        from cove.client._wire import InstanceFile

        info = self.engine.access.file_get(self.name, path)
        f = InstanceFile(path, info.type, info.uid, info.gid, info.mode)
        if info.type == "directory":
            f.entries = list(info.entries or [])
        elif info.type == "symlink":
            f.content = (info.target or "").encode("utf-8", "surrogateescape")
        elif info.fd is not None:
            with os.fdopen(info.fd, "rb") as src:
                f.content = src.read()
        return f

    def _put(self, path: str, type: str, *, data: bytes = b"", target: str = "",
             uid: int | None = None, gid: int | None = None, mode: int | None = None) -> None:
        self.engine.access.file_put(self.name, path, type=type, data=data,
                             target=target or None, uid=uid, gid=gid,
                             mode=None if type == "symlink" else mode)
