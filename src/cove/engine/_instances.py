"""Instance lifecycle: create, start, stop, restart, freeze, rename, update, delete.

Design note: every multi-step action registers an undo for each step it has
done and drops them only once it succeeded (``ExitStack``), so a failure
half-way leaves nothing behind: no mount, no runc state, no row, no
directory. Long actions are operations that hold the instance's lock
(``instance:NAME``); validation happens before the operation exists, so a
bad request makes nothing. The service owns the exit watcher: when an
instance's init ends, ``finalize`` records it and releases what the run
held, whoever stopped it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cove.api import InstancesPost
from cove.engine._devices import validate_devices
from cove.engine._failpoints import failpoint
from cove.engine._limits import HostLimits, unset_to_unlimited
from cove.engine._listing import InstanceListing
from cove.engine._net_base import NetPlan
from cove.engine._profiles import project_of
from cove.engine._rootfs import Rootfs
from cove.engine._runs import Paths, RunTable
from cove.engine._states import InstanceStates
from cove.engine._templates import apply_at_start, defer
from cove.engine._transitions import check_transition
from cove.engine._watch import ExitWatcher
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.ports import (
    NO_HOOKS,
    DiskPort,
    ImageSource,
    LifecycleHooks,
    NetworkPort,
    ProfileSource,
    ProjectSource,
)
from cove.model import config as cfg
from cove.model.errors import BadRequest, Conflict, InternalError, NotFound, Timeout
from cove.model.names import validate_instance_name
from cove.model.projects import DEFAULT, instance_key, instance_url, split_key
from cove.model.records import Instance
from cove.model.states import Status
from cove.runtime.cgroups import remove_empty
from cove.runtime.runc import Runc
from cove.runtime.spec import SpecInput, build_spec, process_env
from cove.storage import overlay
from cove.store import Store

__all__ = ["DEFAULT_STOP_TIMEOUT", "Instances"]

log = logging.getLogger("cove.engine")

DEFAULT_STOP_TIMEOUT = 10.0
POWER_KEY = "volatile.last_state.power"
_LAST_STATE = "volatile.last_state."
_ACTIONS = ("start", "stop", "restart", "freeze", "unfreeze")
class Instances:
    """The instances of one root. Thread-safe."""

    def __init__(self, *, store: Store, runtime: Runc, paths: Paths, runs: RunTable,
                 rootfs: Rootfs, images: ImageSource, profiles: ProfileSource,
                 network: NetworkPort, operations: Operations, events: EventBus,
                 clock: Callable[[], float], nofile: int, disks: DiskPort,
                 projects: ProjectSource | None = None,
                 limits: HostLimits | None = None) -> None:
        self._store = store
        self._runtime = runtime
        self._paths = paths
        self._runs = runs
        self._rootfs = rootfs
        self._images = images
        self._profiles = profiles
        self._net = network
        self._disks = disks
        self._operations = operations
        self._events = events
        self._now = clock
        self._nofile = nofile
        self._projects = projects
        self._limits = limits or HostLimits()
        self._watcher = ExitWatcher(self._on_exit)
        self.hooks: LifecycleHooks = NO_HOOKS  # the app-stack keys (``_deps``)
        self._states = InstanceStates(runs, paths, network)
        self.states_json = lambda insts, network=True: self._states.states_json(insts, network=network, extra=self.hooks.state)  # states() as text
        self.listed = InstanceListing(store, profiles, projects).listed  # all(), cached

    def close(self) -> None:
        """Stop watching exits (containers keep running). Idempotent."""
        self._watcher.close()
        self._states.close()

    def watch(self, name: str, pid: int) -> None:
        """Call ``finalize`` when ``pid``, the init of ``name``, ends."""
        self._watcher.add(name, pid)

    # -- reads --------------------------------------------------------------------------
    def _key(self, name: str, project: str) -> str:
        """The key of ``name`` in ``project``.

        Raises:
            NotFound: no such project, or a name with ``_`` (no instance has
                one: it would be the key of another project's).
        """
        if project != DEFAULT and self._projects is not None:
            self._projects.check(project)
        if "_" in name:
            raise NotFound(f"Instance not found: {name}")
        return instance_key(project, name)

    def _lifecycle(self, action: str, key: str, **context: Any) -> None:
        self._events.lifecycle(action, instance_url(key), project=split_key(key)[0], **context)

    def _run(self, key: str, work: Callable[[Operation], Any], description: str,
             wait_for_lock: float = 0, check: Callable[[], None] | None = None) -> Operation:
        """An operation on the instance keyed ``key`` that holds its lock
        (``check``: as ``Operations.run``'s)."""
        return self._operations.run(
            work, description=description, resources={"instances": [instance_url(key)]},
            lock=f"instance:{key}", wait_for_lock=wait_for_lock, project=split_key(key)[0],
            check=check)

    def all(self, *, project: str | None = DEFAULT) -> list[Instance]:
        """Every instance of ``project`` (None: of every project), with its
        expanded config and devices; ``name`` is the key, ``project`` says
        whose. Raises: NotFound (no such project)."""
        if project is not None and project != DEFAULT and self._projects is not None:
            self._projects.check(project)
        return [self._expanded(inst) for inst in self._store.list_instances(project)]

    def get(self, name: str, *, project: str = DEFAULT) -> Instance:
        """One instance, with its expanded config and devices. Raises: NotFound."""
        return self._expanded(self._store.get_instance(self._key(name, project)))

    def _expanded(self, inst: Instance) -> Instance:
        inst.expanded_devices = self._profiles.expanded_devices(inst)
        inst.expanded_config = self._profiles.expanded_config(inst)
        return inst

    def expanded_config(self, inst: Instance) -> dict[str, str]:
        """The config ``inst`` runs with: its profiles' overlaid by its own."""
        return self._profiles.expanded_config(inst)

    def state(self, name: str, *, project: str = DEFAULT) -> dict[str, Any]:
        """LXD's ``InstanceState``: status, pid, counters, network. Raises: NotFound."""
        inst = self._store.get_instance(self._key(name, project))
        return {**self._states.state(inst), **self.hooks.state(inst.name)}

    def states(self, insts: list[Instance], *, network: bool = True,
               counters: bool = True) -> dict[str, dict[str, Any]]:
        """The states of rows ``all`` returned, by key, in one call (``_states``),
        each with what the app-stack hooks add (health, readiness)."""
        out = self._states.states(insts, network=network, counters=counters)
        for key, st in out.items():
            st.update(self.hooks.state(key))
        return out

    # -- create ---------------------------------------------------------------
    def create(self, req: InstancesPost, *, project: str = DEFAULT,
               wait_for_lock: float = 0) -> Operation:
        """Make an instance (and start it if ``req.start``), as an operation.
        Not idempotent.

        Raises:
            BadRequest: a bad name, config key, device or image reference.
            NotFound: the image or a profile does not exist.
            Conflict: the name is taken, or a published port is.
        """
        name = self._key(validate_instance_name(req.name), project)
        config = cfg.validate_config(req.config or {})
        self._limits.check(config)
        devices = validate_devices(req.devices)
        image = self._images.resolve(req.source.image_ref(), project=project)
        self._store.check_free(name)
        profiles = req.profiles_or_default  # [] (--no-profiles): no profile, no NIC
        self._profiles.check(profiles, project)
        cfg.resources_from_config(self._profiles.expand_config(profiles, config, project))
        self.hooks.check_config(name, self._profiles.expand_config(profiles, config, project))
        expanded = self._profiles.expand(profiles, devices, project)
        self._net.check_expanded(name, expanded)
        self._disks.check_disks(expanded, project=project)
        self._check_limits(project, config)

        def work(op: Operation) -> Instance:
            now = self._now()
            full = {f"image.{k}": v for k, v in image.properties.items()}
            full.update(self._images.instance_keys(image.fingerprint))  # an OCI image's
            full.update(config)
            full["volatile.base_image"] = image.fingerprint
            full.setdefault("volatile.apply_template", "create")  # templates at first start
            inst = Instance(name=name, image=image.fingerprint, config=full, devices=devices,
                            profiles=profiles, description=req.description or "",
                            ephemeral=bool(req.ephemeral), status=Status.STOPPED,
                            architecture=image.architecture, created_at=now, project=project)
            d = self._paths.instance_dir(name)
            with ExitStack() as undo:
                if d.exists():  # left by a crash; no row owns it
                    self.remove_dir(name)
                d.mkdir(mode=0o700)
                undo.callback(self.remove_dir, name)
                for sub in ("upper", "work", "rootfs"):
                    (d / sub).mkdir(mode=0o755 if sub != "work" else 0o700)
                failpoint("create.after-dir")  # files no row owns: the sweep's
                with self._limits_lock():
                    self._check_limits(project, config)
                    self._store.add_instance(inst)
                undo.callback(self._store.delete_instance, name)
                failpoint("create.after-row")
                # the image may have been deleted since it was resolved; with
                # the row in, a later delete keeps the layers for this one
                self._images.rootfs(image.fingerprint)
                self._images.mark_used(image.fingerprint)
                self._lifecycle("instance-created", name)
                if req.start:
                    op.progress("Starting instance")
                    self.start_now(name)
                undo.pop_all()
            return inst

        failpoint("create.before-lock")  # checked, not yet locked: another may make it now
        return self._run(name, work, "Creating instance", wait_for_lock,
                         check=lambda: self._store.check_free(name))

    # -- state changes --------------------------------------------------------
    def change_state(self, name: str, action: str, *, project: str = DEFAULT,
                     timeout: float = -1, force: bool = False,
                     wait_for_lock: float = 0) -> Operation:
        """Start, stop, restart, freeze or unfreeze, as an operation. Not
        idempotent (the convergent forms are the client's).

        Raises:
            BadRequest: an unknown action, or one the current state refuses.
            NotFound: no such instance.
            Conflict: an operation holds the instance and the caller will not wait.
        """
        if action not in _ACTIONS:
            raise BadRequest(f"Unknown action {action!r}: use one of {', '.join(_ACTIONS)}")
        name = self._key(name, project)
        inst = self._store.get_instance(name)
        # a stop of one waiting for (or in) its restart by policy: Docker's stop of a
        # restarting one; it waits for that restart's start, if any, and then stops
        cancelled = action == "stop" and self.hooks.cancel_restart(name)
        if cancelled:
            wait_for_lock = max(wait_for_lock, 60)
        if not cancelled and not self._busy(name, wait_for_lock):
            check_transition(inst, action)  # else work() checks, once it holds the lock
        desc = {"start": "Starting instance", "stop": "Stopping instance",
                "restart": "Restarting instance", "freeze": "Freezing instance",
                "unfreeze": "Unfreezing instance"}[action]

        def work(op: Operation) -> None:
            current = self._store.get_instance(name)
            if cancelled and current.status is Status.STOPPED:
                return
            check_transition(current, action)
            if action == "start":
                self.start_now(name)
            elif action == "stop":
                self.hooks.before_stop(name, timeout, force)  # its dependents first
                self.stop_now(name, timeout, force)
            elif action == "restart":
                self._runs.restarting.add(name)
                try:
                    if current.status is not Status.STOPPED:
                        self.stop_now(name, timeout, force)
                    self.start_now(name)
                finally:
                    self._runs.restarting.discard(name)
                self._lifecycle("instance-restarted", name)
            elif action == "freeze":
                self._runtime.pause(name)
                self.set_status(name, Status.FROZEN)
                self._lifecycle("instance-paused", name)
            else:
                self._runtime.resume(name)
                self.set_status(name, Status.RUNNING)
                self._lifecycle("instance-resumed", name)

        return self._run(name, work, desc, wait_for_lock)

    def _busy(self, name: str, wait_for_lock: float) -> bool:
        """True if an operation holds ``name`` and the caller will wait for it.

        The lock is checked before the instance's state: while a stop is in
        flight the instance still reads as running, and a second action must
        hear about the operation (a conflict that names it), not about a
        state that is about to change.

        Raises:
            Conflict: an operation holds ``name`` and the caller will not wait.
        """
        holder = self._operations.holder(f"instance:{name}")
        if holder is None:
            return False
        if wait_for_lock <= 0:
            raise Conflict(f"{split_key(name)[1]} is busy: operation {holder.id} "
                           f"({holder.description}) is in flight")
        return True

    def set_status(self, name: str, status: Status, row: Instance | None = None,
                   **fields: Any) -> Instance:
        """Record a new status (and fields) for ``name`` (on ``row`` if read). Raises: NotFound."""
        inst = row if row is not None else self._store.get_instance(name)
        inst.status = status
        for k, v in fields.items():
            setattr(inst, k, v)
        self._store.update_instance(inst)
        return inst

    def _spec_for(self, inst: Instance, rootfs: Path, mounts: tuple[dict[str, Any], ...] = (),
                  scratch: tuple[str, str, str] | None = None,
                  skeleton: str | None = None) -> dict[str, Any]:
        image_cmd, image_env = self._images.run_config(inst.image)  # also of a deleted image
        conf = self._profiles.expanded_config(inst)  # profiles' keys take effect too
        conf = self.hooks.run_config(inst.name, conf)  # ``cove start NAME -- CMD``
        args = cfg.command_from_config(conf, image_cmd or ["/sbin/init"])
        # A system container (the image's /sbin/init) gets a console pty, as
        # every LXD container has /dev/console; an application (cove.cmd,
        # or an OCI image's command) keeps plain pipes: a tty would change
        # its output (isatty, CRLF, stderr merged) and leave its stdin open.
        terminal = not conf.get("cove.cmd") and not image_cmd
        env = dict(image_env)
        env.update(cfg.environment_from_config(conf))
        cgroups_path = self._paths.cgroups_path(inst.name)
        return build_spec(SpecInput(
            hostname=conf.get("cove.hostname") or split_key(inst.name)[1], args=args,
            rootfs=str(rootfs), cgroups_path=cgroups_path, env=env,
            cwd=conf.get("cove.cwd") or "/",
            uid=int(conf.get("cove.uid") or 0),
            gid=int(conf.get("cove.gid") or conf.get("cove.uid") or 0),
            resources=cfg.resources_from_config(conf),
            nofile=(self._nofile, self._nofile),
            mounts=mounts, terminal=terminal, masks=self._runtime.masks(), scratch=scratch,
            cgroupfs=self._runtime.cgroupfs.mounts(skeleton, cgroups_path) if skeleton else None,
        ))

    def run_spec(self, inst: Instance, rootfs: Path,
                 undo: ExitStack) -> tuple[dict[str, Any], NetPlan]:
        """What a start gives ``inst``, for a run on a ``rootfs`` mounted in
        coved's namespace (``_exec_stopped``; a start mounts its disks in the
        container's own namespace instead): its disks' mounts and its
        network plan (leases, /etc/hosts, resolv.conf; undone on ``undo``).
        Raises BadRequest, NotFound (a disk or NIC the host cannot give)."""
        disks = self._disks.mounts(self._profiles.expanded_devices(inst), rootfs,
                                   project=project_of(inst))
        net = self._net.prepare(inst, undo)  # leases, /etc/hosts, resolv.conf
        self._net.rebase_hosts(inst, net, rootfs)
        return self._spec_for(inst, rootfs, (*net.mounts, *disks)), net

    def start_now(self, name: str) -> None:
        """Start ``name`` in the caller's operation (it holds the lock)."""
        self.hooks.before_start(name)  # what it depends on, started and ready
        inst = self._store.get_instance(name)
        d = self._paths.instance_dir(name)
        with ExitStack() as undo:
            net = self._net.prepare(inst, undo)  # leases, /etc/hosts, resolv.conf
            undo.callback(self._rootfs.released, name)
            scratch = self._rootfs.scratch(name)  # its /dev, /dev/shm, /run
            v1 = self._runtime.cgroupfs.names()  # None: runc's /sys/fs/cgroup
            skeleton = self._rootfs.cgroup_skeleton(v1) if scratch and v1 else None
            spec = self._spec_for(inst, d / "rootfs", net.mounts, scratch, skeleton)
            log = d / "console.log"
            log.unlink(missing_ok=True)

            def create(rootfs: Path) -> int:  # in its own mount namespace (_rootfs)
                apply_at_start(self._store, self._images, self._profiles, inst, rootfs, d)
                self._net.rebase_hosts(inst, net, rootfs)  # on what a template wrote
                spec["mounts"] += self._disks.mounts(self._profiles.expanded_devices(inst),
                                                     rootfs, project=project_of(inst))
                (d / "config.json.tmp").write_text(json.dumps(spec))
                os.replace(d / "config.json.tmp", d / "config.json")
                return self._runtime.create(name, d, log, terminal=bool(
                    spec["process"]["terminal"]))
            pid = self._rootfs.create_in(name, create, image=inst.image)
            undo.callback(self._runtime.delete, name, True)
            self._limits.apply(self._paths.cgroups_path(name),
                               self._profiles.expanded_config(inst))
            self._net.attach(name, pid, net, undo)  # veths, names, published ports
            stopped = threading.Event()
            with self._runs.mutex(name):
                self._runs.stopped[name] = stopped
                self._runs.pids[name] = pid
            undo.callback(self._forget_running, name)
            self._runtime.start(name, pid)
            # LXD's onStart records the power state in the config, where
            # Ansible's lxd inventory plugin reads it (not in state.status).
            running = self._store.get_instance(name)
            running.config[POWER_KEY] = "RUNNING"
            self.set_status(name, Status.RUNNING, running, last_used_at=self._now(),
                            last_exit_code=None)
            self.watch(name, pid)
            undo.pop_all()
        self._lifecycle("instance-started", name)

    def _forget_running(self, name: str) -> None:
        with self._runs.mutex(name):
            self._runs.pids.pop(name, None)

    def stop_now(self, name: str, timeout: float, force: bool) -> None:
        """Stop ``name`` in the caller's operation; returns once it ended.

        Raises:
            Timeout: it survived SIGKILL for 30 s.
        """
        inst = self._store.get_instance(name)
        with self._runs.mutex(name):
            stopped = self._runs.stopped.get(name)
            running = name in self._runs.pids
        if not running or stopped is None:
            self.finalize(name, None)
            return
        if inst.status is Status.FROZEN and not force:
            self._runtime.resume(name)
        if not force:
            conf = self._profiles.expanded_config(inst)
            halt = cfg.parse_signal(conf["cove.halt"]) if conf.get("cove.halt") else 15
            self._runtime.kill(name, halt)
            wait = DEFAULT_STOP_TIMEOUT if timeout is None or timeout < 0 else float(timeout)
            if stopped.wait(wait):
                return
        self._runtime.kill(name, 9, all_processes=True)
        if not stopped.wait(30):
            raise Timeout(f"Instance {name} did not stop after SIGKILL")

    def _on_exit(self, name: str, pid: int) -> None:
        """The exit watcher saw the init of ``name`` end."""
        try:
            self.finalize(name, pid)
        except Exception:
            log.exception("finalizing %s failed", name)

    def finalize(self, name: str, pid: int | None) -> None:
        """Record that ``name`` stopped and release what its run held (idempotent)."""
        with self._runs.mutex(name):
            if pid is not None and self._runs.pids.get(name) != pid:
                return
            had = self._runs.pids.pop(name, None) is not None
            stopped = self._runs.stopped.pop(name, None)
            code = self._runtime.wait_exit_code(name, timeout=1.0 if had else 0)
            self._runtime.delete(name, force=True)
            try:
                self._net.release(name)  # ports, names, leases (the veths went with the netns)
            except Exception:
                log.exception("releasing the network of %s", name)
            self._rootfs.released(name)  # the overlay went with its namespaces
            self._states.forget(name)
            remove_empty(self._paths.cgroups_path(name))
            try:
                inst = self._store.get_instance(name)
            except NotFound:
                inst = None
            if inst is not None and (inst.status is not Status.STOPPED or code is not None
                                     or inst.config.get(POWER_KEY, "STOPPED") != "STOPPED"):
                inst.status = Status.STOPPED
                inst.config[POWER_KEY] = "STOPPED"  # as LXD's onStop, on a stop or an exit
                if code is not None:
                    inst.last_exit_code = code
                    inst.config["volatile.last_state.exit_code"] = str(code)
                self._store.update_instance(inst)
        if stopped is not None:
            stopped.set()
        if inst is not None and had:
            self._lifecycle("instance-stopped", name, exit_code=code)
            if inst.ephemeral and name not in self._runs.restarting:
                self.delete_now(name)

    # -- update / rename / delete --------------------------------------------
    def update(self, name: str, *, project: str = DEFAULT,
               config: dict[str, Any] | None = None,
               devices: dict[str, dict[str, str]] | None = None,
               profiles: list[str] | None = None, description: str | None = None,
               ephemeral: bool | None = None, patch: bool = False) -> None:
        """Replace (PUT) or merge (PATCH) the given fields; limits and proxies
        apply live, with the profiles the instance will have.

        Raises:
            BadRequest: a key, value or device is invalid, or a project limit
                would be passed (nothing is changed).
            NotFound: no such instance, or a listed profile does not exist.
            Conflict: another operation holds the instance, or a host port is taken.
        """
        plain, name = name, self._key(name, project)
        holder = self._operations.holder(f"instance:{name}")
        if holder is not None:
            raise Conflict(f"{plain} is busy: operation {holder.id} ({holder.description}) "
                            "is in flight")
        with self._limits_lock():  # from the limits' check to the stored change
            self._update(name, project, config, devices, profiles, description, ephemeral,
                         patch)

    def _update(self, name: str, project: str, config: dict[str, Any] | None,
                devices: dict[str, dict[str, str]] | None, profiles: list[str] | None,
                description: str | None, ephemeral: bool | None, patch: bool) -> None:
        inst = self._store.get_instance(name)
        new_config, new_devices = inst.config, inst.devices
        if config is not None:
            if not isinstance(config, dict):
                raise BadRequest("config must be an object")
            new = dict(inst.config) if patch else {
                k: v for k, v in inst.config.items() if k.startswith(("volatile.", "image."))}
            new.update(config)
            new_config = {k: v for k, v in cfg.validate_config(new).items()
                          if not (patch and v == "" and k in config)}
            # the server's record of the last state, whatever a client sends
            # back (a stale GET must not turn a running instance "STOPPED")
            new_config = {k: v for k, v in new_config.items() if not k.startswith(_LAST_STATE)}
            new_config.update({k: v for k, v in inst.config.items()
                               if k.startswith(_LAST_STATE)})
            self._check_limits(project, new_config, replacing=name)
        if devices is not None:
            devs = validate_devices(devices)
            new_devices = {**inst.devices, **devs} if patch else devs
        new_profiles = inst.profiles
        if profiles is not None:
            self._profiles.check(profiles, project_of(inst))
            new_profiles = list(profiles)
        if config is not None or devices is not None or profiles is not None:
            project = project_of(inst)
            exp_config = self._profiles.expand_config(new_profiles, new_config, project)
            exp_devices = self._profiles.expand(new_profiles, new_devices, project)
            self.check_expansion(inst, exp_config, exp_devices)
            self.apply_expansion(inst, (self._profiles.expanded_config(inst),
                                        self._profiles.expanded_devices(inst)),
                                 exp_config, exp_devices)
        inst.config, inst.devices, inst.profiles = new_config, new_devices, new_profiles
        if description is not None:
            inst.description = str(description)
        if ephemeral is not None:
            inst.ephemeral = bool(ephemeral)
        self._store.update_instance(inst)
        self._lifecycle("instance-updated", name)

    # -- what the profiles service needs (``ProfileUsers``) ----------------------------
    def using_profile(self, profile: str, project: str) -> list[Instance]:
        """The instances of ``project`` that list ``profile``."""
        return [i for i in self._store.list_instances(None)
                if profile in i.profiles and self._profiles.owner(project_of(i)) == project]

    @staticmethod
    def validate_devices(devices: Any) -> dict[str, dict[str, str]]:
        """The shape check of a devices object. Raises: BadRequest."""
        return validate_devices(devices)

    def check_expansion(self, inst: Instance, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        """Raises BadRequest or Conflict if ``inst`` cannot run with this
        expanded config and devices (NICs of a running instance cannot
        change); nothing is changed."""
        cfg.validate_config(config)
        cfg.resources_from_config(config)
        self.hooks.check_config(inst.name, config)
        self._limits.check(config, self._profiles.expanded_config(inst))
        if devices == self._profiles.expanded_devices(inst):
            return  # the devices it has were checked when they were set
        self._net.check_expanded(inst.name, devices)
        self._disks.check_disks(devices, project=project_of(inst))
        if inst.status is not Status.STOPPED:
            self._net.check_nics_unchanged(inst, devices)

    def apply_expansion(self, inst: Instance,
                        old: tuple[dict[str, str], dict[str, dict[str, str]]],
                        config: dict[str, str], devices: dict[str, dict[str, str]]) -> None:
        """Apply a new expansion where it is live: the limits, disks (mounted
        and unmounted at once, as LXD) and published ports of a running
        instance (the rest waits for its next start). ``old`` is the expanded
        (config, devices) it runs with now.

        Raises:
            BadRequest, Conflict: a disk cannot be mounted or a proxy published
                (the disks are put back).
        """
        if inst.status is Status.STOPPED:
            return
        new_res = cfg.resources_from_config(config)
        if new_res != cfg.resources_from_config(old[0]):
            self._runtime.update(inst.name, unset_to_unlimited(new_res))
        self._limits.apply(self._paths.cgroups_path(inst.name), config, old[0])
        if cfg.environment_from_config(config) != cfg.environment_from_config(old[0]):
            self._refresh_exec_env(inst, config)
        if devices == old[1]:
            return
        pid = self._runs.pids.get(inst.name)
        rootfs = Path(f"/proc/{pid}/root")  # its rootfs is in its namespace only
        if pid:
            self._disks.apply_disks(pid, rootfs, old[1], devices, project=project_of(inst))
        try:
            self._net.apply_expanded(inst, devices)  # published ports change at once
        except BaseException:
            if pid:
                self._disks.apply_disks(pid, rootfs, devices, old[1],
                                        project=project_of(inst))
            raise

    def _refresh_exec_env(self, inst: Instance, config: dict[str, str]) -> None:
        """Give the next exec of the running ``inst`` the environment of
        ``config``, as LXD does: exec sessions start from the bundle's
        ``config.json`` (runc and cove-nsexec alike), so its process env is
        rewritten, atomically; a key removed from the config goes too. The
        running init keeps the environment it started with."""
        path = self._paths.instance_dir(inst.name) / "config.json"
        try:
            spec = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # not started by this cove (or gone): nothing to refresh
        env = self._images.run_config(inst.image)[1]
        env.update(cfg.environment_from_config(config))
        uid = int(config.get("cove.uid") or 0)  # the init's, as at start
        spec.setdefault("process", {})["env"] = process_env(env, uid)
        tmp = path.with_name("config.json.tmp")
        tmp.write_text(json.dumps(spec))
        os.replace(tmp, path)

    def rename(self, name: str, new_name: str, *, project: str = DEFAULT) -> Operation:
        """Rename a stopped instance, as an operation. Not idempotent.

        Raises:
            BadRequest: a bad new name, or the instance runs.
            NotFound: no such instance.  Conflict: busy, or the new name is taken.
        """
        validate_instance_name(new_name)
        name, new_name = self._key(name, project), instance_key(project, new_name)
        inst = self._store.get_instance(name)
        self._busy(name, 0)
        if inst.status is not Status.STOPPED:
            raise BadRequest("Renaming of running instance not allowed")
        self._store.check_free(new_name)

        def work(op: Operation) -> None:
            if self._store.get_instance(name).status is not Status.STOPPED:
                raise BadRequest("Renaming of running instance not allowed")
            overlay.umount(self._paths.instance_dir(name) / "rootfs")
            defer(self._store, name, "rename")  # templates at next start (a failed rename: harmless)
            # The row first, with the intent recorded in the same transaction:
            # a crash before the directory moves is completed at the next start
            # (complete_renames), never swept as an unknown directory.
            self._store.rename_instance(name, new_name)
            failpoint("rename.after-row")
            try:
                os.rename(self._paths.instance_dir(name), self._paths.instance_dir(new_name))
            except OSError:
                self._store.rename_instance(new_name, name)
                self._store.finish_rename(name)
                self._store.finish_rename(new_name)
                raise
            failpoint("rename.after-dir")
            self._store.finish_rename(new_name)
            self._lifecycle("instance-renamed", new_name, old_name=split_key(name)[1])

        # both names' locks: no create, copy or import takes the new one meanwhile
        return self._operations.run(
            work, description="Renaming instance", resources={"instances": [instance_url(name)]},
            lock=(f"instance:{name}", f"instance:{new_name}"), project=split_key(name)[0],
            check=lambda: self._store.check_free(new_name))

    def delete(self, name: str, *, project: str = DEFAULT, force: bool = False,
               wait_for_lock: float = 0) -> Operation:
        """Delete an instance (``force``: stopping it first), as an operation.
        Not idempotent (deleting what is gone is the client's success).

        Raises:
            BadRequest: it runs and ``force`` is not set.
            NotFound: no such instance.  Conflict: busy and the caller will not wait.
        """
        name = self._key(name, project)
        inst = self._store.get_instance(name)
        if not self._busy(name, wait_for_lock) and inst.status is not Status.STOPPED \
                and not force:
            raise BadRequest("Instance is running")
        self.hooks.before_delete(name, force)

        def work(op: Operation) -> None:
            current = self._store.get_instance(name)
            if current.status is not Status.STOPPED:
                if not force:
                    raise BadRequest("Instance is running")
                self._runs.restarting.add(name)  # keep an ephemeral one for us to delete
                try:
                    self.stop_now(name, 0, True)
                finally:
                    self._runs.restarting.discard(name)
            self.delete_now(name)

        return self._run(name, work, "Deleting instance", wait_for_lock)

    def delete_now(self, name: str) -> None:
        """Delete a stopped instance at once (caller holds its lock or owns
        the process, as the reconciler does). Raises: BadRequest (running)."""
        with self._runs.mutex(name):
            if name in self._runs.pids:
                raise BadRequest("Instance is running")
            self._runtime.delete(name, force=True)
            failpoint("delete.after-runtime")
            try:
                image = self._store.get_instance(name).image
            except NotFound:
                image = ""
            self._unmount(name)
            # The row before the files: a crash between leaves a directory no
            # row owns, which the next start sweeps; never a row without files.
            self._store.delete_instance(name)
            failpoint("delete.after-row")
            self.remove_dir(name)
            remove_empty(self._paths.cgroups_path(name))
            remove_empty(f"/{self._paths.cgroup_parent}")
        try:
            self._images.collect(image)  # the layers of a deleted image, once unused
        except Exception:
            log.exception("collecting the layers of image %s", image[:12])
        self._lifecycle("instance-deleted", name)

    def _check_limits(self, project: str, config: dict[str, str], *,
                      replacing: str | None = None) -> None:
        if self._projects is not None:
            self._projects.check_instance(project, config, replacing=replacing)

    def _limits_lock(self) -> contextlib.AbstractContextManager[Any]:
        """Held from a limit's check to the change it allowed."""
        return self._projects.lock if self._projects is not None else contextlib.nullcontext()

    def remove_dir(self, name: str) -> None:
        """Unmount and remove ``instances/NAME``. Idempotent.

        Raises:
            InternalError: the rootfs is still mounted.
        """
        self._unmount(name)
        d = self._paths.instance_dir(name)
        if d.exists():
            shutil.rmtree(d)

    def _unmount(self, name: str) -> None:
        target = self._paths.instance_dir(name) / "rootfs"
        overlay.umount(target)
        if overlay.is_mounted(target):
            raise InternalError(f"Cannot remove {name}: its rootfs is still mounted")

    def complete_renames(self) -> None:
        """Finish renames a crash interrupted (see ``rename``): the row has
        the new name, so the directory follows it. At startup, before the
        sweep. Idempotent."""
        for new, old in self._store.pending_renames().items():
            src, dst = self._paths.instance_dir(old), self._paths.instance_dir(new)
            if src.exists() and not dst.exists():
                log.info("completing the rename of %s to %s", old, new)
                os.rename(src, dst)
            self._store.finish_rename(new)
