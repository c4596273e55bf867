"""Startup reconciliation: make the host match the database, remove leaks.

Run once when coved starts. The runtime is the truth about what runs; the
database is the truth about what should exist. In order:

1. runc containers no row owns (a launch killed half-way) are force-deleted;
2. each instance recorded as running is checked: still running → watched
   again; gone → recorded as stopped with the exit code conmon left (and
   deleted if ephemeral); created-but-never-started → torn down; exec
   sessions the previous coved left in it are killed (their clients went
   with that coved);
3. overlay mounts and instance directories nothing owns are removed, and
   so are upload temp files, stopped execs' bundles and empty cgroups (the
   leases such an exec held go in the networks' sweep);
4. if the host lost the containers (a reboot: new boot id, or runtime state
   gone), instances with ``boot.autostart`` are started again; and an
   instance that was running and is found ended (lost, or its init exited
   while no coved watched) is started again as its restart policy says,
   as dockerd does at its start: ``unless-stopped``, and ``on-failure``
   unless it exited 0 (``always`` is the apps service's, ``_deps.resume``).
"""

from __future__ import annotations

import logging
import shutil
import threading

from cove.engine._exec_stopped import BUNDLE as EXEC_BUNDLE
from cove.engine._exec_stopped import release_hook
from cove.engine._images import Images
from cove.engine._instances import Instances
from cove.engine._networks import Networks
from cove.engine._runs import Paths, RunTable
from cove.host.proc import start_time
from cove.model.config import truthy
from cove.model.projects import split_key
from cove.model.records import Instance
from cove.model.states import Status
from cove.runtime.cgroups import list_children, remove_empty
from cove.runtime.runc import Runc
from cove.storage import overlay
from cove.store import Store

__all__ = ["Reconciler"]

log = logging.getLogger("cove.engine")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


class Reconciler:
    """Runs the startup reconciliation of one root (see module note)."""

    def __init__(self, *, store: Store, runtime: Runc, paths: Paths, runs: RunTable,
                 instances: Instances, images: Images, networks: Networks) -> None:
        self._store = store
        self._runtime = runtime
        self._paths = paths
        self._runs = runs
        self._instances = instances
        self._images = images
        self._networks = networks

    def run(self) -> None:
        """Reconcile and autostart. Call once, before serving; idempotent
        (a second run finds nothing to do)."""
        boot = _boot_id()
        rebooted = self._store.get_meta("boot_id") not in (None, boot)
        self._store.set_meta("boot_id", boot)
        self._instances.complete_renames()  # before the sweep sees their directories
        known = {i.name: i for i in self._store.list_instances()}
        for cid in self._runtime.list_ids():
            if cid not in known:
                if cid.endswith(".exec"):  # a stopped exec: its hook may still wait
                    release_hook(self._paths.instance_dir(cid[:-5]) / EXEC_BUNDLE)
                log.info("removing runtime state of unknown container %s", cid)
                self._runtime.delete(cid, force=True)
        lost, ended = self._adopt(known, rebooted)
        self._sweep(set(known))
        self._networks.startup()  # networks up, leaked NICs/leases/rules gone, before autostart
        for name in [*lost, *ended]:
            was = known.get(name)
            if was is None:  # an ephemeral one, deleted as it ended
                continue
            conf = self._instances.expanded_config(was)
            now = self._store.get_instance(name)
            # running when the host lost it: boot.autostart; lost or ended
            # unseen: Docker's unless-stopped and on-failure (no client
            # stopped it); ``always`` is the apps'
            policy = (conf.get("cove.restart") or "").partition(":")[0]
            if ((name in lost and truthy(conf.get("boot.autostart")))
                    or policy == "unless-stopped"
                    or (policy == "on-failure" and now.last_exit_code != 0)) \
                    and now.status is Status.STOPPED:
                # (not when an autostarted dependent started it first: cove.depends)
                log.info("autostarting %s", name)
                try:
                    project, plain = split_key(name)  # ``name`` is the instance's key
                    self._instances.change_state(plain, "start", project=project).wait()
                except Exception:
                    log.exception("autostart of %s failed", name)

    def _adopt(self, known: dict[str, Instance],
               rebooted: bool) -> tuple[list[str], list[str]]:
        """Watch again what still runs, record what ended (dropping ended
        ephemeral ones from ``known``); return the instances the host lost
        and those whose init ended while no coved watched."""
        lost: list[str] = []
        ended: list[str] = []
        for name, inst in list(known.items()):
            state = self._runtime.state(name)
            if state is not None and state.status in ("running", "paused"):
                with self._runs.mutex(name):
                    self._runs.pids[name] = state.pid
                    self._runs.stopped[name] = threading.Event()
                    self._runs.root_pids[name] = (state.pid, start_time(state.pid))
                want = Status.FROZEN if state.status == "paused" else Status.RUNNING
                if inst.status is not want:
                    self._instances.set_status(name, want)
                self._instances.watch(name, state.pid)
                ended = self._runtime.end_sessions(name)
                if ended:
                    log.info("%s: ended %d exec session(s) left by the previous coved",
                             name, len(ended))
                continue
            if inst.status is not Status.STOPPED and (state is None or rebooted):
                lost.append(name)
            elif inst.status is not Status.STOPPED:
                ended.append(name)
            if state is not None or inst.status is not Status.STOPPED:
                log.info("instance %s is no longer running; recording it", name)
                self._instances.finalize(name, None)
                if inst.ephemeral:
                    self._instances.delete_now(name)
                    known.pop(name, None)
        return lost, ended

    def _sweep(self, known: set[str]) -> None:
        """Mounts, directories, uploads, layers and cgroups nothing owns."""
        inst_root = self._paths.root / "instances"
        for mnt in overlay.mounts_under(str(inst_root)):
            name = mnt[len(str(inst_root)) + 1:].split("/", 1)[0]
            if name not in self._runs.pids:
                overlay.umount(mnt)
        for d in inst_root.iterdir():
            if d.name not in known and d.is_dir():
                log.info("removing directory of unknown instance %s", d.name)
                self._instances.remove_dir(d.name)
            elif (d / EXEC_BUNDLE).is_dir():  # a stopped exec the previous coved left
                shutil.rmtree(d / EXEC_BUNDLE, ignore_errors=True)
        for f in (self._paths.root / "tmp").iterdir():
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        self._images.sweep()
        for child in list_children(self._paths.cgroup_parent):
            if child not in self._runs.pids:
                remove_empty(f"/{self._paths.cgroup_parent}/{child}")
        if not self._runs.pids:
            remove_empty(f"/{self._paths.cgroup_parent}")
