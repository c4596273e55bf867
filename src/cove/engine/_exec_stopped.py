"""Exec into a stopped instance (``cove exec --stopped NAME -- CMD``, the
``stopped`` field of an exec; SPOC's ``lxc-execute``, which LXD refuses).

Design note: the command runs as the init of a temporary container, runc
id ``KEY.exec`` (no instance name has a dot), on the instance's own rootfs
and with what a start would give it (``Instances.run_spec``: its
environment, user, limits, its own cgroup, its disk devices, and its NICs
with the instance's own leases, so its addresses, /etc/hosts and
resolv.conf are those of a start), without its init and without conmon:
``runc run`` in the foreground with pipes, so the session ends with the
command. ``runc run`` has no create/start split to attach NICs in, so a
``createRuntime`` hook (run by runc once the container's namespaces exist,
before its process starts) hands the init's pid to coved through a FIFO
in the bundle and waits on a second FIFO while coved attaches the NICs;
an attach that fails answers "no" and runc tears the container down.

An operation holds the instance's lock for as long as the session lives,
so the instance cannot be started under it. Closing the session (the
command ended, was killed, or the client went) deletes the container
(its namespace takes the veths with it), releases the leases, DNS names
and published ports, unmounts the rootfs and removes the bundle. A coved
killed meanwhile leaves a runc container no row owns (perhaps with its
hook still waiting: ``release_hook`` answers it), leases of an instance
that does not run, a mount no run holds and the bundle: the reconciler
removes each at the next start.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from cove.api import InstanceExecPost
from cove.engine._exec_user import resolve_ids
from cove.engine._failpoints import failpoint
from cove.engine._net_base import NetPlan
from cove.engine._rootfs import Rootfs
from cove.engine._runs import Paths
from cove.engine.operations import Operations
from cove.engine.ports import NetworkPort
from cove.host import proc
from cove.model.errors import BadRequest, InternalError
from cove.model.projects import instance_key, instance_url, split_key
from cove.model.records import Instance
from cove.model.states import Status
from cove.runtime.runc import ExecProcess, Runc
from cove.storage.safefs import RootFS
from cove.store import Store

__all__ = ["BUNDLE", "StoppedExec", "release_hook"]

log = logging.getLogger("cove.engine")

BUNDLE = "exec-stopped"  # under the instance's directory; the reconciler sweeps it
_HOOK_TIMEOUT = 60  # seconds runc gives the hook, and coved the attach
# The hook: the container's state (its init's pid) into one FIFO, then wait
# for coved's word on the other; anything but "ok" fails the run.
_HOOK = 'cat > "$0" && read -r ok < "$1" && [ "$ok" = ok ]'


class RunSpecs(Protocol):
    """What a start of an instance would run (``Instances.run_spec``)."""

    def run_spec(self, inst: Instance, rootfs: Path,
                 undo: ExitStack) -> tuple[dict[str, Any], NetPlan]: ...


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
                 operations: Operations, specs: RunSpecs, network: NetworkPort) -> None:
        self._store = store
        self._runtime = runtime
        self._paths = paths
        self._rootfs = rootfs
        self._operations = operations
        self._specs = specs  # the spec, disks and network plan a start would use
        self._net = network  # attaches the planned NICs, releases them

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
        _check_stopped(inst)
        if req.interactive:
            raise BadRequest("A stopped instance's exec has no terminal: use it non-interactive")
        ended = threading.Event()
        held = self._operations.run(
            lambda op: ended.wait(), description="Executing command in stopped instance",
            resources={"instances": [instance_url(key)]}, lock=f"instance:{key}",
            project=split_key(key)[0])

        def release() -> None:
            """Let the instance go; once this returns its lock is free (a
            client told the exec ended may start the instance at once)."""
            ended.set()
            held.wait(10)

        try:
            return self._start(key, req, release)
        except BaseException:
            release()
            raise

    def _start(self, key: str, req: InstanceExecPost, release: Callable[[], None]) -> _Session:
        inst = self._store.get_instance(key)
        _check_stopped(inst)
        cid = f"{key}.exec"
        bundle = self._paths.instance_dir(key) / BUNDLE
        undo = ExitStack()  # the rootfs, then the network (leases, veths, names, ports)

        def cleanup() -> None:
            try:
                failpoint("exec-stopped.cleanup")  # a test holds the teardown open
                steps: tuple[Callable[[], object], ...] = (
                    lambda: self._runtime.delete(cid, force=True),  # netns, veths with it
                    undo.close,
                    lambda: self._net.release(key))  # what the undo did not know of
                for step in steps:
                    try:
                        step()
                    except Exception:
                        log.exception("cleaning up the stopped exec of %s", key)
                shutil.rmtree(bundle, ignore_errors=True)
            finally:
                release()

        done = False
        try:
            self._runtime.delete(cid, force=True)  # a crash's leftover
            shutil.rmtree(bundle, ignore_errors=True)
            bundle.mkdir(mode=0o700)
            rootfs = self._rootfs.mount(key)
            undo.callback(self._rootfs.unmount, key)
            spec, plan = self._specs.run_spec(inst, rootfs, undo)
            _set_process(spec["process"], req, rootfs)
            attach = bool(plan.nics or plan.cni or plan.forwards or plan.ports)
            if attach:
                for fifo in ("hook.state", "hook.ok"):
                    os.mkfifo(bundle / fifo, 0o600)
                spec.setdefault("hooks", {})["createRuntime"] = [{
                    "path": "/bin/sh", "timeout": _HOOK_TIMEOUT,
                    "args": ["sh", "-c", _HOOK, str(bundle / "hook.state"),
                             str(bundle / "hook.ok")]}]
            (bundle / "config.json").write_text(json.dumps(spec))
            process = self._runtime.run_once(cid, bundle)
            session = _Session(process, cleanup)
            try:
                if attach:
                    self._attach(key, process, bundle, plan, undo)
            except BaseException:
                session.close()
                done = True  # the session's close cleaned up
                raise
            done = True
            return session
        finally:
            if not done:
                cleanup()

    def _attach(self, key: str, process: ExecProcess, bundle: Path, plan: NetPlan,
                undo: ExitStack) -> None:
        """Wait for the hook's pid, attach the NICs in its namespace, and
        let the hook (and so the command) go on. A runc that ended before
        its hook ran returns at once: the session reports its failure.

        Raises:
            InternalError: the hook did not report within its timeout.
            BadRequest, Conflict: the NICs or ports could not be attached.
        """
        deadline = time.monotonic() + _HOOK_TIMEOUT
        state = _read_fifo(bundle / "hook.state", process, deadline)
        if state is None:
            return  # runc failed before the hook: its stderr says why
        ok = False
        try:
            failpoint("exec-stopped.hooked")  # the hook waits on coved's word
            self._net.attach(key, int(json.loads(state)["pid"]), plan, undo)
            ok = True
        finally:
            _write_fifo(bundle / "hook.ok", b"ok\n" if ok else b"no\n", deadline)


def _check_stopped(inst: Instance) -> None:
    """Raises BadRequest in LXD's words ("Instance is running") unless stopped."""
    if inst.status is not Status.STOPPED:
        raise BadRequest(f"Instance is {inst.status.value.lower()}: exec into it "
                         "without 'stopped'")


def _set_process(process: dict[str, Any], req: InstanceExecPost, rootfs: Path) -> None:
    """The command, environment, directory, user and group of the request
    over what a start would run. Raises BadRequest (a user or group missing
    from the instance's own /etc/passwd or /etc/group)."""
    process["args"] = list(req.command)
    process["terminal"] = False
    env = dict(e.split("=", 1) for e in process.get("env", []) if "=" in e)
    user = process.setdefault("user", {})
    if req.user not in (None, "") or req.group not in (None, ""):
        with RootFS(rootfs) as fs:  # the instance's files, never the host's
            who = req.user if req.user not in (None, "") else int(user.get("uid", 0))
            entry, gid = resolve_ids(fs, who, req.group)
        user["gid"] = gid
        if req.user not in (None, ""):
            user["uid"] = entry.uid
            env.update(HOME=entry.home, USER=entry.name)
            if not req.cwd:
                process["cwd"] = entry.home
    env.update(req.environment or {})
    process["env"] = [f"{k}={v}" for k, v in env.items()]
    if req.cwd:
        process["cwd"] = req.cwd


def _read_fifo(path: Path, process: ExecProcess, deadline: float) -> bytes | None:
    """All a writer puts into the FIFO ``path``; None if ``process`` ended
    first. Raises InternalError at ``deadline``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    try:
        while True:
            if time.monotonic() > deadline:
                raise InternalError("The exec's network hook did not report its container")
            if proc.readable([fd], 0.1):
                chunk = os.read(fd, 65536)
                if chunk:
                    data += chunk
                    continue
                if data:
                    return data  # the writer closed
                time.sleep(0.05)  # a writer came and went with nothing: wait on
            if process.wait(0) is not None:
                return None
    finally:
        os.close(fd)


def release_hook(bundle: Path) -> None:
    """Tell a hook that a killed coved left waiting in ``bundle`` "no", so
    that runc ends that container now rather than at the hook's timeout (a
    minute with a process and a cgroup). For the reconciler, before it
    deletes the container. Never raises."""
    _write_fifo(bundle / "hook.ok", b"no\n", time.monotonic())  # one try: a waiter or none


def _write_fifo(path: Path, data: bytes, deadline: float) -> None:
    """Write ``data`` to the reader of the FIFO ``path`` once it opened it;
    gives up silently at ``deadline`` (the hook was killed: runc fails)."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                return
            time.sleep(0.01)
            continue
        try:
            os.write(fd, data)
        except OSError:
            pass  # the reader went (killed at runc's timeout): runc fails the run
        finally:
            os.close(fd)
        return
