"""Startup reconciliation: make the host match the database, remove leaks.

Run once when coved starts. The runtime is the truth about what runs; the
database is the truth about what should exist. In order:

1. runc containers no row owns (a launch killed half-way) are force-deleted;
2. each instance recorded as running is checked: still running → watched
   again; gone → recorded as stopped with the exit code conmon left (and
   deleted if ephemeral); created-but-never-started → torn down;
3. overlay mounts and instance directories nothing owns are removed, and
   so are upload temp files and empty cgroups;
4. if the host lost the containers (a reboot: new boot id, or runtime state
   gone), instances with ``boot.autostart`` are started again.
"""

from __future__ import annotations

import logging
import shutil
import threading

from cove.engine._core import EngineCore
from cove.model.config import truthy
from cove.model.states import Status
from cove.runtime.cgroups import list_children, remove_empty
from cove.storage import overlay

__all__ = ["ReconcileMixin"]

log = logging.getLogger("cove.engine")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


class ReconcileMixin(EngineCore):
    def startup(self) -> None:
        """Reconcile and autostart. Call once, before serving."""
        boot = _boot_id()
        rebooted = self.store.get_meta("boot_id") not in (None, boot)
        self.store.set_meta("boot_id", boot)
        known = {i.name: i for i in self.store.list_instances()}
        lost: list[str] = []

        for cid in self.runtime.list_ids():
            if cid not in known:
                log.info("removing runtime state of unknown container %s", cid)
                self.runtime.delete(cid, force=True)

        for name, inst in list(known.items()):  # ephemeral ones are dropped on the way
            state = self.runtime.state(name)
            if state is not None and state.status in ("running", "paused"):
                with self._mutex(name):
                    self._running[name] = state.pid
                    self._stopped_events[name] = threading.Event()
                    self._mount_refs[name] = 1
                want = Status.FROZEN if state.status == "paused" else Status.RUNNING
                if inst.status is not want:
                    self._set_status(name, want)
                self._watcher.add(name, state.pid)
                continue
            if inst.status is not Status.STOPPED and (state is None or rebooted):
                lost.append(name)
            if state is not None or inst.status is not Status.STOPPED:
                log.info("instance %s is no longer running; recording it", name)
                self._finalize(name, None)
                if inst.ephemeral:
                    self._delete_now(name)
                    known.pop(name, None)

        inst_root = self.root / "instances"
        for mnt in overlay.mounts_under(str(inst_root)):
            name = mnt[len(str(inst_root)) + 1:].split("/", 1)[0]
            if name not in self._running:
                overlay.umount(mnt)
        for d in inst_root.iterdir():
            if d.name not in known and d.is_dir():
                log.info("removing directory of unknown instance %s", d.name)
                self._remove_instance_dir(d.name)
        for f in (self.root / "tmp").iterdir():
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        self.images.cleanup_temp()
        recorded = {img.fingerprint for img in self.store.list_images()}
        for fp in self.images.fingerprints():
            if fp not in recorded:  # unpacked, but coved died before recording it
                log.info("removing unrecorded image %s", fp[:12])
                self.images.delete(fp)
        for child in list_children(self.cgroup_parent):
            if child not in self._running:
                remove_empty(f"/{self.cgroup_parent}/{child}")
        if not self._running:
            remove_empty(f"/{self.cgroup_parent}")

        self._net_startup()  # networks up, leaked NICs/leases/rules gone, before autostart
        for name in lost:
            was = known.get(name)
            if was is not None and truthy(was.config.get("boot.autostart")):
                log.info("autostarting %s", name)
                try:
                    self.change_state(name, "start").wait()
                except Exception:
                    log.exception("autostart of %s failed", name)
