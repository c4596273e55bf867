"""Reaching into an instance: exec, files, its console log and the
outputs exec recorded.

Every path that comes from a request is a path inside the instance and is
resolved by ``storage.safefs.RootFS`` within the instance's root, so a
symlink in the container can never point cove at the host's files. The same
goes for the container's /etc/passwd, read to turn user names into ids:
it is read through the container's root and parsed, never executed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from cove.api import InstanceExecPost
from cove.engine._exec_out import (
    CONSOLE_LOG,
    CONSOLE_NAMES,
    Reader,
    check_log_name,
    file_reader,
    parse_k8s_log,
    run_detached,
)
from cove.engine._exec_stopped import StoppedExec
from cove.engine._exec_user import resolve_ids
from cove.engine._rootfs import Rootfs
from cove.engine._runs import Paths
from cove.engine.operations import Operation, Operations
from cove.engine.ports import ProfileSource
from cove.engine.types import ExecSession, FileInfo
from cove.model import config as cfg
from cove.model.errors import BadRequest, CoveError, NotFound
from cove.model.projects import DEFAULT, instance_key, instance_url, split_key
from cove.model.states import Status
from cove.runtime.runc import ExecSpec, Runc
from cove.runtime.spec import DEFAULT_PATH
from cove.storage.safefs import RootFS
from cove.store import Store

__all__ = ["EXEC_SETTLE", "Access", "FinishedExec", "parse_k8s_log"]


EXEC_SETTLE = 120.0


class FinishedExec:
    """An exec that ended before it began (command not found): exit code and
    a message on stderr, through the same interface as a real one."""

    def __init__(self, code: int, message: str) -> None:
        self.pty_fd: int | None = None
        self.stdin_fd: int | None = None
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        os.close(w1)
        os.write(w2, message.encode())
        os.close(w2)
        self.stdout_fd: int | None = r1
        self.stderr_fd: int | None = r2
        self._code = code

    def wait(self, timeout: float | None = None) -> int | None:
        return self._code

    def resize(self, width: int, height: int) -> None:
        pass

    def signal(self, signum: int) -> None:
        pass

    def kill(self) -> None:
        pass

    def close(self) -> None:
        for fd in (self.stdout_fd, self.stderr_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.stdout_fd = self.stderr_fd = None


def _find_executable(fs: RootFS, cmd: str, path_var: str) -> bool:
    candidates = [cmd] if "/" in cmd else [f"{d.rstrip('/')}/{cmd}"
                                           for d in path_var.split(":") if d.startswith("/")]
    for cand in candidates:
        if not cand.startswith("/"):
            return True  # relative to cwd: let the runtime decide
        try:
            s = fs.stat(cand)
        except CoveError:
            continue
        if s.type == "file" and s.mode & 0o111:
            return True
    return False


class Access:
    """Exec, files and logs of the instances of one root. Thread-safe."""

    def __init__(self, *, store: Store, runtime: Runc, paths: Paths, rootfs: Rootfs,
                 operations: Operations, profiles: ProfileSource,
                 stopped: StoppedExec | None = None) -> None:
        self._stopped = stopped  # exec into a stopped instance (``_exec_stopped``)
        self._profiles = profiles  # exec reads the expanded config (profiles' keys too)
        self._store = store
        self._runtime = runtime
        self._paths = paths
        self._rootfs = rootfs
        self._operations = operations

    # -- exec ------------------------------------------------------------------
    def exec(self, name: str, req: InstanceExecPost, *, project: str = DEFAULT) -> ExecSession:
        """Start ``req.command`` in the running instance ``name``; the caller
        owns the session (and must ``close()`` it).

        Raises:
            NotFound: no such instance.
            BadRequest: the instance is not running, or the user/group/command is bad.
        """
        if req.stopped and self._stopped is not None:
            return self._stopped.exec(name, req, project=project)
        name = instance_key(project, name)
        self.settle(name)
        inst = self._store.get_instance(name)
        if inst.status is Status.STOPPED:
            raise BadRequest("Instance is not running")
        if inst.status is Status.FROZEN:
            raise BadRequest("Instance is frozen")
        if not req.command or not all(isinstance(c, str) for c in req.command):
            raise BadRequest("command must be a non-empty list of strings")
        with self._rootfs.held(name) as root, RootFS(root) as fs:
            entry, gid = resolve_ids(fs, req.user, req.group)
            env = {"HOME": entry.home, "USER": entry.name, "LANG": "C.UTF-8"}
            if req.interactive:
                env["TERM"] = "xterm"
            # The config as it is now, not as it was at start: LXD gives a
            # changed environment.* to the next exec, no restart needed.
            conf = self._profiles.expanded_config(inst)  # with its profiles' keys
            env.update(cfg.environment_from_config(conf))
            env.update(req.environment or {})
            # the instance's own working dir first (``docker exec`` runs in
            # the container's WorkingDir), else LXD's: the user's home
            cwd = req.cwd or conf.get("cove.cwd") or (
                entry.home if _is_dir(fs, entry.home) else "/")
            if not cwd.startswith("/"):
                raise BadRequest(f"cwd must be an absolute path: {cwd!r}")
            path_var = env.get("PATH") or conf.get("environment.PATH") or DEFAULT_PATH
            if not _find_executable(fs, req.command[0], path_var):
                return FinishedExec(127, f"cove: {req.command[0]}: command not found\n")
        return self._runtime.exec(name, ExecSpec(
            args=list(req.command), env=env, cwd=cwd, uid=entry.uid, gid=gid,
            tty=req.interactive, width=req.width or 80, height=req.height or 24))

    def settle(self, name: str, *, project: str = DEFAULT) -> None:
        """An exec into an instance that is starting, stopping or restarting
        waits for that to end (SPOC does), rather than failing on a state
        about to change; at most ``EXEC_SETTLE`` seconds. Never raises."""
        holder = self._operations.holder(f"instance:{instance_key(project, name)}")
        if holder is not None:
            holder.wait(EXEC_SETTLE)

    def exec_detached(self, name: str, req: InstanceExecPost, *, project: str = DEFAULT, record: bool) -> Operation:
        """Run ``req.command`` with no websockets, as an operation whose
        metadata gets ``return`` (and ``output``, the log paths, when
        ``record``). Cancelling the operation kills the command and every
        process it started. Not idempotent.

        Raises:
            as ``exec``.
        """
        name = instance_key(project, name)
        session = self.exec(name, req)
        log_dir = self._paths.exec_log_dir(name) if record else None
        try:
            op = self._operations.run(
                lambda op: run_detached(session, log_dir, name, op),
                description="Executing command", may_cancel=True,
                resources={"instances": [instance_url(name)]}, project=split_key(name)[0])
        except BaseException:
            session.close()
            raise
        # Cancelling (DELETE /1.0/operations/ID) ends the command's whole
        # tree; the body then drains what is left and ends CANCELLED.
        op.on_cancel(session.kill)
        return op

    # -- files -----------------------------------------------------------------
    def file_get(self, name: str, path: str, *, project: str = DEFAULT) -> FileInfo:
        """What is at ``path`` (symlinks not followed); a file's ``fd`` is the
        caller's to close.

        Raises:
            NotFound: no such instance or path.  BadRequest: a relative path,
                or neither a file, a directory nor a symlink.
        """
        name = instance_key(project, name)
        _check_path(path)
        self._store.get_instance(name)
        with self._rootfs.held(name) as root, RootFS(root) as fs:
            s = fs.stat(path, follow=False)
            if s.type == "symlink":
                return FileInfo("symlink", s.uid, s.gid, s.mode, target=fs.readlink(path))
            if s.type == "directory":
                return FileInfo("directory", s.uid, s.gid, s.mode,
                                entries=sorted(fs.listdir(path)))
            if s.type != "file":
                raise BadRequest(f"{path} is not a regular file, directory or symlink")
            fd = fs.open_read(path)
            return FileInfo("file", s.uid, s.gid, s.mode, size=os.fstat(fd).st_size, fd=fd)

    def file_put(self, name: str, path: str, *, project: str = DEFAULT, type: str = "file",
                 data: BinaryIO | bytes | None = None, uid: int | None = None,
                 gid: int | None = None, mode: int | None = None,
                 write: str = "overwrite", target: str | None = None,
                 make_parents: bool = False) -> None:
        """Write a file, make a directory or a symlink at ``path``; idempotent
        for directories, overwriting (or appending to) files.

        Raises:
            NotFound: no such instance or parent.  BadRequest: a bad path,
                type, write mode or symlink.
        """
        name = instance_key(project, name)
        _check_path(path)
        if write not in ("overwrite", "append"):
            raise BadRequest(f"Invalid write mode {write!r}: overwrite or append")
        self._store.get_instance(name)
        with self._rootfs.held(name) as root, RootFS(root) as fs:
            if type == "file":
                fs.write_file(path, data if data is not None else b"", uid=uid, gid=gid,
                              mode=mode, append=write == "append", make_parents=make_parents)
            elif type == "directory":
                fs.mkdir(path, uid=uid, gid=gid, mode=mode if mode is not None else 0o755,
                         parents=make_parents, exist_ok=True)
            elif type == "symlink":
                if not target:
                    raise BadRequest("A symlink needs a target")
                fs.symlink(path, target, uid=uid, gid=gid)
            else:
                raise BadRequest(f"Invalid file type {type!r}: file, directory or symlink")

    def file_delete(self, name: str, path: str, *, project: str = DEFAULT) -> None:
        """Remove a file, symlink or empty directory. Not idempotent.

        Raises:
            NotFound: no such instance or path.
        """
        name = instance_key(project, name)
        _check_path(path)
        self._store.get_instance(name)
        with self._rootfs.held(name) as root, RootFS(root) as fs:
            fs.remove(path, recursive=False)

    # -- logs --------------------------------------------------------------------
    def console_log(self, name: str, *, project: str = DEFAULT) -> os.PathLike[str]:
        """Path of the raw (k8s-file) console log; use ``read_console`` for
        text. Raises: NotFound."""
        name = instance_key(project, name)
        self._store.get_instance(name)
        return self._paths.instance_dir(name) / CONSOLE_LOG

    def read_console(self, name: str, offset: int = 0, *, project: str = DEFAULT) -> tuple[bytes, int]:
        """Plain output of the instance from raw byte ``offset`` on, and the new offset.

        Only whole lines are returned, so following by offset never splits one.

        Raises:
            NotFound: no such instance.
        """
        name = instance_key(project, name)
        path = self.console_log(name)
        try:
            with open(path, "rb") as f:
                if offset > os.fstat(f.fileno()).st_size:
                    offset = 0  # cleared (DELETE .../console): a new log began
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return b"", 0
        end = data.rfind(b"\n") + 1
        return parse_k8s_log(data[:end]), offset + end

    def log_names(self, name: str, *, project: str = DEFAULT) -> list[str]:
        """``console.log``, then the recorded exec outputs. Raises: NotFound."""
        name = instance_key(project, name)
        self._store.get_instance(name)
        try:
            recorded = sorted(p.name for p in self._paths.exec_log_dir(name).iterdir()
                              if p.is_file())
        except FileNotFoundError:
            recorded = []
        return [CONSOLE_LOG, *recorded]

    def log_reader(self, name: str, file: str, *, project: str = DEFAULT) -> Reader:
        """A reader of one log (``console.log`` as plain text).

        Raises:
            NotFound: no such instance or log.  BadRequest: a bad file name.
        """
        name = instance_key(project, name)
        check_log_name(file)
        self._store.get_instance(name)
        if file in CONSOLE_NAMES:
            return lambda offset: self.read_console(name, offset)
        path = self._exec_log(name, file)
        if not path.is_file():
            raise NotFound(f"Log file not found: {file}")
        return file_reader(path)

    def delete_log(self, name: str, file: str, *, project: str = DEFAULT) -> None:
        """Remove a recorded exec output. Not idempotent.

        Raises:
            NotFound: no such instance or log.
            BadRequest: a bad name, or the console log (which cannot go).
        """
        name = instance_key(project, name)
        check_log_name(file)
        if file in CONSOLE_NAMES:
            raise BadRequest("The console log cannot be deleted; only exec output logs can")
        self._store.get_instance(name)
        try:
            os.unlink(self._exec_log(name, file))
        except FileNotFoundError:
            raise NotFound(f"Log file not found: {file}") from None

    def _exec_log(self, name: str, file: str) -> Path:
        return self._paths.exec_log_dir(name) / file


def _check_path(path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest(f"Path must be absolute: {path!r}")
    if "\0" in path:
        raise BadRequest("Path contains a NUL byte")


def _is_dir(fs: RootFS, path: str) -> bool:
    try:
        return fs.stat(path).type == "directory"
    except (CoveError, NotFound):
        return False


