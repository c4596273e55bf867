"""Instance lifecycle: create, start, stop, restart, freeze, rename, update, delete.

Every multi-step action registers an undo for each step it has done and
drops them only once it succeeded (``ExitStack``), so a failure half-way
leaves nothing behind: no mount, no runc state, no row, no directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cove.api import InstancesPost
from cove.engine._core import EngineCore
from cove.engine.operations import Operation
from cove.model import config as cfg
from cove.model.errors import BadRequest, Conflict, CoveError, InternalError, NotFound, Timeout
from cove.model.names import validate_instance_name
from cove.model.records import Instance
from cove.model.states import Status
from cove.network.model import nic_from_device, proxy_from_device
from cove.runtime.cgroups import read_stats, remove_empty
from cove.runtime.spec import SpecInput, build_spec
from cove.storage import overlay

__all__ = ["DEFAULT_STOP_TIMEOUT", "InstancesMixin"]

DEFAULT_STOP_TIMEOUT = 10.0
_ACTIONS = ("start", "stop", "restart", "freeze", "unfreeze")
_KNOWN_DEVICE_TYPES = {"none", "disk", "nic", "proxy"}


def _validate_devices(devices: Any) -> dict[str, dict[str, str]]:
    if devices is None:
        return {}
    if not isinstance(devices, dict):
        raise BadRequest("devices must be an object of device name to device config")
    out: dict[str, dict[str, str]] = {}
    for name, dev in devices.items():
        if not isinstance(dev, dict) or not isinstance(dev.get("type"), str):
            raise BadRequest(f"Device {name!r} needs a 'type'")
        if dev["type"] not in _KNOWN_DEVICE_TYPES:
            raise BadRequest(f"Device {name!r}: type {dev['type']!r} is not supported")
        if dev["type"] == "disk" and dev.get("path") != "/":
            raise BadRequest(f"Device {name!r}: only the root disk (path=/) is supported")
        out[str(name)] = {str(k): str(v) for k, v in dev.items()}
        if dev["type"] == "nic":
            nic_from_device(str(name), out[str(name)])
        elif dev["type"] == "proxy":
            proxy_from_device(str(name), out[str(name)])
    return out


class InstancesMixin(EngineCore):
    # -- reads --------------------------------------------------------------
    def list_instances(self) -> list[Instance]:
        out = self.store.list_instances()
        for inst in out:
            inst.expanded_devices = self.expanded_devices(inst)
        return out

    def get_instance(self, name: str) -> Instance:
        inst = self.store.get_instance(name)
        inst.expanded_devices = self.expanded_devices(inst)
        return inst

    def instance_dir(self, name: str) -> Path:
        return self.root / "instances" / name

    def cgroups_path(self, name: str) -> str:
        return f"/{self.cgroup_parent}/{name}"

    def instance_state(self, name: str) -> dict[str, Any]:
        inst = self.store.get_instance(name)
        pid = self._running.get(name, 0) if inst.status is not Status.STOPPED else 0
        stats = read_stats(self.cgroups_path(name)) if pid else None
        return {
            "status": inst.status.value,
            "status_code": inst.status.code,
            "pid": pid,
            "processes": stats.pids if stats else 0,
            "cpu": {"usage": stats.cpu_ns if stats else 0},
            "memory": {
                "usage": stats.memory if stats else 0,
                "usage_peak": stats.memory_peak if stats else 0,
                "swap_usage": 0,
                "swap_usage_peak": 0,
            },
            "disk": {},
            "network": self._net_state(inst) if pid else None,
        }

    # -- create ---------------------------------------------------------------
    def create_instance(self, req: InstancesPost, *,
                        wait_for_lock: float = 0) -> Operation:
        name = validate_instance_name(req.name)
        config = cfg.validate_config(req.config or {})
        devices = _validate_devices(req.devices)
        image = self.resolve_image(req.source.image_ref())
        if self.store.has_instance(name):
            raise Conflict(f"Instance {name!r} already exists")
        profiles = list(req.profiles or ["default"])
        for p in profiles:
            if p != "default":
                raise NotFound(f"Profile not found: {p}")
        self._net_check_devices(name, devices, profiles)

        def work(op: Operation) -> Instance:
            if self.store.has_instance(name):
                raise Conflict(f"Instance {name!r} already exists")
            now = self._now()
            full = {f"image.{k}": v for k, v in image.properties.items()}
            full.update(config)
            full["volatile.base_image"] = image.fingerprint
            inst = Instance(name=name, image=image.fingerprint, config=full, devices=devices,
                            profiles=profiles, description=req.description or "",
                            ephemeral=bool(req.ephemeral), status=Status.STOPPED,
                            architecture=image.architecture, created_at=now)
            d = self.instance_dir(name)
            with ExitStack() as undo:
                if d.exists():  # left by a crash; no row owns it
                    self._remove_instance_dir(name)
                d.mkdir(mode=0o700)
                undo.callback(self._remove_instance_dir, name)
                for sub in ("upper", "work", "rootfs"):
                    (d / sub).mkdir(mode=0o755 if sub != "work" else 0o700)
                self.store.add_instance(inst)
                undo.callback(self.store.delete_instance, name)
                self.events.lifecycle("instance-created", f"/1.0/instances/{name}")
                if req.start:
                    op.progress("Starting instance")
                    self._start(name)
                undo.pop_all()
            return inst

        return self.operations.run(
            work, description="Creating instance",
            resources={"instances": [f"/1.0/instances/{name}"]},
            lock=f"instance:{name}", wait_for_lock=wait_for_lock)

    # -- state changes --------------------------------------------------------
    def change_state(self, name: str, action: str, *, timeout: float = -1,
                     force: bool = False, wait_for_lock: float = 0) -> Operation:
        if action not in _ACTIONS:
            raise BadRequest(f"Unknown action {action!r}: use one of {', '.join(_ACTIONS)}")
        inst = self.store.get_instance(name)
        if not self._busy(name, wait_for_lock):
            self._check_transition(inst, action)  # else work() checks, once it holds the lock
        desc = {"start": "Starting instance", "stop": "Stopping instance",
                "restart": "Restarting instance", "freeze": "Freezing instance",
                "unfreeze": "Unfreezing instance"}[action]

        def work(op: Operation) -> None:
            current = self.store.get_instance(name)
            self._check_transition(current, action)
            if action == "start":
                self._start(name)
            elif action == "stop":
                self._stop(name, timeout, force)
            elif action == "restart":
                self._restarting.add(name)
                try:
                    if current.status is not Status.STOPPED:
                        self._stop(name, timeout, force)
                    self._start(name)
                finally:
                    self._restarting.discard(name)
                self.events.lifecycle("instance-restarted", f"/1.0/instances/{name}")
            elif action == "freeze":
                self.runtime.pause(name)
                self._set_status(name, Status.FROZEN)
                self.events.lifecycle("instance-paused", f"/1.0/instances/{name}")
            else:
                self.runtime.resume(name)
                self._set_status(name, Status.RUNNING)
                self.events.lifecycle("instance-resumed", f"/1.0/instances/{name}")

        return self.operations.run(
            work, description=desc, resources={"instances": [f"/1.0/instances/{name}"]},
            lock=f"instance:{name}", wait_for_lock=wait_for_lock)

    def _busy(self, name: str, wait_for_lock: float) -> bool:
        """True if an operation holds ``name`` and the caller will wait for it.

        The lock is checked before the instance's state: while a stop is in
        flight the instance still reads as running, and a second action must
        hear about the operation (a conflict that names it), not about a
        state that is about to change.

        Raises:
            Conflict: an operation holds ``name`` and the caller will not wait.
        """
        holder = self.operations.holder(f"instance:{name}")
        if holder is None:
            return False
        if wait_for_lock <= 0:
            raise Conflict(f"{name} is busy: operation {holder.id} ({holder.description}) "
                           "is in flight")
        return True

    @staticmethod
    def _check_transition(inst: Instance, action: str) -> None:
        s = inst.status
        if action == "start" and s is not Status.STOPPED:
            raise BadRequest("The instance is already running")
        if action in ("stop",) and s is Status.STOPPED:
            raise BadRequest("The instance is already stopped")
        if action == "freeze" and s is not Status.RUNNING:
            raise BadRequest("The instance is not running" if s is Status.STOPPED
                             else "The instance is already frozen")
        if action == "unfreeze" and s is not Status.FROZEN:
            raise BadRequest("The instance is not frozen")

    def _set_status(self, name: str, status: Status, **fields: Any) -> Instance:
        inst = self.store.get_instance(name)
        inst.status = status
        for k, v in fields.items():
            setattr(inst, k, v)
        self.store.update_instance(inst)
        return inst

    def _mount_rootfs(self, name: str) -> Path:
        """Mount the instance's overlay (refcounted; first user mounts)."""
        with self._mutex(name):
            d = self.instance_dir(name)
            target = d / "rootfs"
            refs = self._mount_refs.get(name, 0)
            if refs == 0 and not overlay.is_mounted(target):
                inst = self.store.get_instance(name)
                lower = self.images.rootfs(inst.image)
                if not lower.is_dir():
                    raise InternalError(f"Image {inst.image[:12]} of {name} is missing")
                overlay.mount_overlay([lower], d / "upper", d / "work", target)
            self._mount_refs[name] = refs + 1
            return target

    def _unmount_rootfs(self, name: str) -> None:
        with self._mutex(name):
            refs = self._mount_refs.get(name, 0) - 1
            if refs > 0:
                self._mount_refs[name] = refs
                return
            self._mount_refs.pop(name, None)
            overlay.umount(self.instance_dir(name) / "rootfs")

    @contextlib.contextmanager
    def rootfs(self, name: str) -> Any:
        """The instance's root filesystem, mounted for the duration."""
        path = self._mount_rootfs(name)
        try:
            yield path
        finally:
            self._unmount_rootfs(name)

    def _spec_for(self, inst: Instance, rootfs: Path,
                  mounts: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        image = self.store.find_images(inst.image)
        image_cmd = image[0].cmd if image else []
        image_env = image[0].env if image else {}
        args = cfg.command_from_config(inst.config, image_cmd or ["/sbin/init"])
        env = dict(image_env)
        env.update(cfg.environment_from_config(inst.config))
        return build_spec(SpecInput(
            hostname=inst.name, args=args, rootfs=str(rootfs),
            cgroups_path=self.cgroups_path(inst.name), env=env,
            cwd=inst.config.get("cove.cwd") or "/",
            uid=int(inst.config.get("cove.uid") or 0),
            gid=int(inst.config.get("cove.gid") or inst.config.get("cove.uid") or 0),
            resources=cfg.resources_from_config(inst.config),
            nofile=(self.nofile, self.nofile),
            mounts=mounts,
        ))

    def _start(self, name: str) -> None:
        inst = self.store.get_instance(name)
        d = self.instance_dir(name)
        with ExitStack() as undo:
            rootfs = self._mount_rootfs(name)
            undo.callback(self._unmount_rootfs, name)
            net = self._net_prepare(inst, undo)  # leases, /etc/hosts, resolv.conf
            spec = self._spec_for(inst, rootfs, net.mounts)
            tmp = d / "config.json.tmp"
            tmp.write_text(json.dumps(spec))
            os.replace(tmp, d / "config.json")
            log = d / "console.log"
            with contextlib.suppress(FileNotFoundError):
                log.unlink()
            pid = self.runtime.create(name, d, log)
            undo.callback(self.runtime.delete, name, True)
            self._net_attach(name, pid, net, undo)  # veths, names, published ports
            stopped = threading.Event()
            with self._mutex(name):
                self._stopped_events[name] = stopped
                self._running[name] = pid
            undo.callback(self._forget_running, name)
            self.runtime.start(name)
            self.runtime.mark_started(name)
            self._set_status(name, Status.RUNNING, last_used_at=self._now(),
                             last_exit_code=None)
            self._watcher.add(name, pid)
            undo.pop_all()
        self.events.lifecycle("instance-started", f"/1.0/instances/{name}")

    def _forget_running(self, name: str) -> None:
        with self._mutex(name):
            self._running.pop(name, None)

    def _stop(self, name: str, timeout: float, force: bool) -> None:
        inst = self.store.get_instance(name)
        with self._mutex(name):
            stopped = self._stopped_events.get(name)
            running = name in self._running
        if not running or stopped is None:
            self._finalize(name, None)
            return
        if inst.status is Status.FROZEN and not force:
            self.runtime.resume(name)
        if not force:
            halt = cfg.parse_signal(inst.config["cove.halt"]) if inst.config.get("cove.halt") \
                else 15
            self.runtime.kill(name, halt)
            wait = DEFAULT_STOP_TIMEOUT if timeout is None or timeout < 0 else float(timeout)
            if stopped.wait(wait):
                return
        self.runtime.kill(name, 9, all_processes=True)
        if not stopped.wait(30):
            raise Timeout(f"Instance {name} did not stop after SIGKILL")

    def _on_exit(self, name: str, pid: int) -> None:
        """The exit watcher saw the init of ``name`` end."""
        try:
            self._finalize(name, pid)
        except Exception:
            import logging
            logging.getLogger("cove.engine").exception("finalizing %s failed", name)

    def _finalize(self, name: str, pid: int | None) -> None:
        """Record that ``name`` stopped and release what its run held (idempotent)."""
        with self._mutex(name):
            if pid is not None and self._running.get(name) != pid:
                return
            had = self._running.pop(name, None) is not None
            stopped = self._stopped_events.pop(name, None)
            code = self.runtime.wait_exit_code(name, timeout=1.0 if had else 0)
            self.runtime.delete(name, force=True)
            try:
                self._net_release(name)  # ports, names, leases (the veths went with the netns)
            except Exception:
                import logging
                logging.getLogger("cove.engine").exception("releasing the network of %s", name)
            if had:
                self._mount_refs[name] = max(1, self._mount_refs.get(name, 1))
                self._unmount_rootfs(name)
            else:
                overlay.umount(self.instance_dir(name) / "rootfs")
            remove_empty(self.cgroups_path(name))
            try:
                inst = self.store.get_instance(name)
            except NotFound:
                inst = None
            if inst is not None and (inst.status is not Status.STOPPED or code is not None):
                inst.status = Status.STOPPED
                if code is not None:
                    inst.last_exit_code = code
                    inst.config["volatile.last_state.exit_code"] = str(code)
                self.store.update_instance(inst)
        if stopped is not None:
            stopped.set()
        if inst is not None and had:
            self.events.lifecycle("instance-stopped", f"/1.0/instances/{name}",
                                  exit_code=code)
            if inst.ephemeral and name not in self._restarting:
                self._delete_now(name)

    # -- update / rename / delete --------------------------------------------
    def update_instance(self, name: str, *, config: dict[str, Any] | None = None,
                        devices: dict[str, dict[str, str]] | None = None,
                        profiles: list[str] | None = None, description: str | None = None,
                        ephemeral: bool | None = None, patch: bool = False) -> None:
        """Replace (PUT) or merge (PATCH) the given fields; limits apply live.

        Raises:
            BadRequest: a key or value is invalid (nothing is changed).
            Conflict: another operation holds the instance.
        """
        holder = self.operations.holder(f"instance:{name}")
        if holder is not None:
            raise Conflict(f"{name} is busy: operation {holder.id} ({holder.description}) "
                            "is in flight")
        inst = self.store.get_instance(name)
        if config is not None:
            if not isinstance(config, dict):
                raise BadRequest("config must be an object")
            new = dict(inst.config) if patch else {
                k: v for k, v in inst.config.items() if k.startswith(("volatile.", "image."))}
            new.update(config)
            new = {k: v for k, v in cfg.validate_config(new).items()
                   if not (patch and v == "" and k in config)}
            old_res = cfg.resources_from_config(inst.config)
            new_res = cfg.resources_from_config(new)
            if inst.status is not Status.STOPPED and new_res != old_res:
                self.runtime.update(name, _unset_to_unlimited(new_res))
            inst.config = new
        if devices is not None:
            devs = _validate_devices(devices)
            new_devs = {**inst.devices, **devs} if patch else devs
            self._net_check_devices(name, new_devs, inst.profiles)
            if inst.status is not Status.STOPPED:
                self._net_apply_devices(inst, new_devs)  # published ports change at once
            inst.devices = new_devs
        if profiles is not None:
            for p in profiles:
                if p != "default":
                    raise NotFound(f"Profile not found: {p}")
            inst.profiles = list(profiles)
        if description is not None:
            inst.description = str(description)
        if ephemeral is not None:
            inst.ephemeral = bool(ephemeral)
        self.store.update_instance(inst)
        self.events.lifecycle("instance-updated", f"/1.0/instances/{name}")

    def rename_instance(self, name: str, new_name: str) -> Operation:
        validate_instance_name(new_name)
        inst = self.store.get_instance(name)
        self._busy(name, 0)
        if inst.status is not Status.STOPPED:
            raise BadRequest("Renaming of running instance not allowed")
        if self.store.has_instance(new_name):
            raise Conflict(f"Instance {new_name!r} already exists")

        def work(op: Operation) -> None:
            if self.store.get_instance(name).status is not Status.STOPPED:
                raise BadRequest("Renaming of running instance not allowed")
            overlay.umount(self.instance_dir(name) / "rootfs")
            os.rename(self.instance_dir(name), self.instance_dir(new_name))
            try:
                self.store.rename_instance(name, new_name)
            except CoveError:
                os.rename(self.instance_dir(new_name), self.instance_dir(name))
                raise
            self.events.lifecycle("instance-renamed", f"/1.0/instances/{new_name}",
                                  old_name=name)

        return self.operations.run(
            work, description="Renaming instance",
            resources={"instances": [f"/1.0/instances/{name}"]}, lock=f"instance:{name}")

    def delete_instance(self, name: str, *, force: bool = False,
                        wait_for_lock: float = 0) -> Operation:
        inst = self.store.get_instance(name)
        if not self._busy(name, wait_for_lock) and inst.status is not Status.STOPPED \
                and not force:
            raise BadRequest("Instance is running")

        def work(op: Operation) -> None:
            current = self.store.get_instance(name)
            if current.status is not Status.STOPPED:
                if not force:
                    raise BadRequest("Instance is running")
                self._restarting.add(name)  # keep an ephemeral one for us to delete
                try:
                    self._stop(name, 0, True)
                finally:
                    self._restarting.discard(name)
            self._delete_now(name)

        return self.operations.run(
            work, description="Deleting instance",
            resources={"instances": [f"/1.0/instances/{name}"]},
            lock=f"instance:{name}", wait_for_lock=wait_for_lock)

    def _delete_now(self, name: str) -> None:
        with self._mutex(name):
            if name in self._running:
                raise BadRequest("Instance is running")
            self.runtime.delete(name, force=True)
            self._remove_instance_dir(name)
            self.store.delete_instance(name)
            remove_empty(self.cgroups_path(name))
            remove_empty(f"/{self.cgroup_parent}")
        self.events.lifecycle("instance-deleted", f"/1.0/instances/{name}")

    def _remove_instance_dir(self, name: str) -> None:
        d = self.instance_dir(name)
        target = d / "rootfs"
        overlay.umount(target)
        if overlay.is_mounted(target):
            raise InternalError(f"Cannot remove {name}: its rootfs is still mounted")
        if d.exists():
            shutil.rmtree(d)


def _unset_to_unlimited(r: cfg.Resources) -> cfg.Resources:
    """For ``runc update``: a removed limit must be lifted, not left as is."""
    return cfg.Resources(
        memory=r.memory if r.memory is not None else -1,
        cpu_quota=r.cpu_quota if r.cpu_quota is not None else -1,
        cpu_period=r.cpu_period or 100_000,
        cpus=r.cpus,
        pids=r.pids if r.pids is not None else -1,
    )
