"""Exec into a stopped instance (``cove exec --stopped NAME -- CMD``, the
``stopped`` field of an exec; SPOC's ``lxc-execute``, which LXD refuses).

Design note: the command runs as the init of a temporary container, runc
id ``KEY.exec`` (no instance name has a dot), on the instance's own rootfs
and with the spec a start would use (its environment, user, limits, its own
cgroup, a network namespace with only ``lo``: its NICs are not attached),
without its init and without conmon: ``runc run`` in the foreground with
pipes, so the session ends with the command. An operation holds the
instance's lock for as long as the session lives, so the instance cannot
be started under it. Closing the session deletes the container, unmounts
the rootfs and removes the bundle; a coved killed meanwhile leaves a runc
container no row owns and a mount no run holds, both of which the
reconciler removes at the next start.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cove.api import InstanceExecPost
from cove.engine._rootfs import Rootfs
from cove.engine._runs import Paths
from cove.engine.operations import Operations
from cove.model.errors import BadRequest
from cove.model.projects import instance_key, instance_url, split_key
from cove.model.records import Instance
from cove.model.states import Status
from cove.runtime.runc import ExecProcess, Runc
from cove.store import Store

__all__ = ["StoppedExec"]

log = logging.getLogger("cove.engine")

SpecFor = Callable[[Instance, Path], dict[str, Any]]


class _Session:
    """An ``ExecSession`` whose ``close()`` also tears the container down."""

    def __init__(self, process: ExecProcess, cleanup: Callable[[], None]) -> None:
        self._p = process
        self._cleanup = cleanup
        self._closed = False
        self._lock = threading.Lock()
        self.pty_fd: int | None = None
        self.stdin_fd = process.stdin_fd
        self.stdout_fd = process.stdout_fd
        self.stderr_fd = process.stderr_fd

    def wait(self, timeout: float | None = None) -> int | None:
        return self._p.wait(timeout)

    def resize(self, width: int, height: int) -> None:
        pass

    def signal(self, signum: int) -> None:
        self._p.signal(signum)

    def kill(self) -> None:
        self._p.kill()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._p.wait(0) is None:
                self._p.kill()
                self._p.wait(10)
            self._p.close()
        finally:
            self._cleanup()


class StoppedExec:
    """Runs commands in temporary containers on stopped instances. Thread-safe."""

    def __init__(self, *, store: Store, runtime: Runc, paths: Paths, rootfs: Rootfs,
                 operations: Operations, spec_for: SpecFor) -> None:
        self._store = store
        self._runtime = runtime
        self._paths = paths
        self._rootfs = rootfs
        self._operations = operations
        self._spec_for = spec_for  # the spec a start of the instance would use

    def exec(self, name: str, req: InstanceExecPost, *, project: str = "default") -> _Session:
        """Start ``req.command`` in a temporary container on the stopped
        instance ``name``; the caller owns the session and must close it.

        Raises:
            NotFound: no such instance.
            BadRequest: it is not stopped, or an interactive session was asked for.
            Conflict: an operation holds it.
            InternalError: runc failed.
        """
        key = instance_key(project, name)
        inst = self._store.get_instance(key)
        if inst.status is not Status.STOPPED:
            raise BadRequest("The instance is not stopped: exec into it without 'stopped'")
        if req.interactive:
            raise BadRequest("A stopped instance's exec has no terminal: use it non-interactive")
        ended = threading.Event()
        self._operations.run(
            lambda op: ended.wait(), description="Executing command in stopped instance",
            resources={"instances": [instance_url(key)]}, lock=f"instance:{key}",
            project=split_key(key)[0])
        try:
            return self._start(key, req, ended)
        except BaseException:
            ended.set()
            raise

    def _start(self, key: str, req: InstanceExecPost, ended: threading.Event) -> _Session:
        inst = self._store.get_instance(key)
        if inst.status is not Status.STOPPED:
            raise BadRequest("The instance is not stopped: exec into it without 'stopped'")
        cid = f"{key}.exec"
        bundle = self._paths.instance_dir(key) / "exec-stopped"
        rootfs = self._rootfs.mount(key)
        done = False

        def cleanup() -> None:
            try:
                self._runtime.delete(cid, force=True)
                self._rootfs.unmount(key)
                shutil.rmtree(bundle, ignore_errors=True)
            except Exception:
                log.exception("cleaning up the stopped exec of %s", key)
            finally:
                ended.set()

        try:
            self._runtime.delete(cid, force=True)  # a crash's leftover
            shutil.rmtree(bundle, ignore_errors=True)
            bundle.mkdir(mode=0o700)
            spec = self._spec_for(inst, rootfs)
            process = spec["process"]
            process["args"] = list(req.command)
            process["terminal"] = False
            env = dict(e.split("=", 1) for e in process.get("env", []) if "=" in e)
            env.update(req.environment or {})
            process["env"] = [f"{k}={v}" for k, v in env.items()]
            if req.cwd:
                process["cwd"] = req.cwd
            if isinstance(req.user, int):
                process.setdefault("user", {})["uid"] = req.user
            if isinstance(req.group, int):
                process.setdefault("user", {})["gid"] = req.group
            (bundle / "config.json").write_text(json.dumps(spec))
            session = _Session(self._runtime.run_once(cid, bundle), cleanup)
            done = True
            return session
        finally:
            if not done:
                cleanup()
