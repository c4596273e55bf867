"""Instance snapshots: take, list, change, rename, delete, restore.

Design notes:

* What a snapshot holds. An instance's root filesystem is its image's
  read-only layers under its own ``upper/`` (``_rootfs``); the image layers
  are shared and never change, so a snapshot is a copy of ``upper/`` only,
  plus the instance's config, devices and profiles at that time (the row in
  ``store._snapshots``). It lives in ``instances/KEY/snapshots/ID/upper``,
  so renaming or deleting the instance carries its snapshots along. Beside
  ``upper`` are the instance's own metadata.yaml and templates/ at that
  time, or a mark that it had none (``_inst_metadata.snapshot_own``; in
  LXD they are in the snapshotted volume), which a restore puts back.
* How it is copied. ``cp -a --reflink=auto``: on a filesystem that can
  (btrfs, XFS with reflink, bcachefs) each file is cloned (FICLONE), O(1)
  in data; elsewhere (ext4, as on the machines cove is tested on) it is a
  full copy of the upper layer, which is all that is copied, never the
  image. ``cp -a`` keeps what overlayfs stores in an upper layer: whiteouts
  (0/0 character devices), ``trusted.overlay.*`` xattrs on opaque
  directories, owners, modes, times, hard links. A hard-link tree is not a
  safe alternative: a container writing a file in place (a database, a
  log) would change the snapshot's copy too, as both names are one inode.
* Consistency. The copy of a running instance is taken with its cgroup
  frozen (``runc pause``), so no process writes during the copy; it is
  thawed right after, also on failure. A frozen instance stays frozen.
* Crash safety. The copy is made in ``snapshots/.tmp-ID`` and renamed into
  place, and only then is the row added; a delete removes the row first. At
  startup (``sweep``) every entry of ``snapshots/`` no row names is removed,
  so a killed coved leaves a whole snapshot or none. A restore copies the
  snapshot into ``.restore-new``, moves ``upper`` to ``.restore-old`` and
  the new one to ``upper``; ``sweep`` finishes or undoes a half-done swap.
  Files and config are one change: an intent file (``.restore-intent``,
  the snapshot's name, then ``swapped`` once the files are in place) is
  written before the copy and removed after the config; ``sweep`` finds it
  and either discards the unswapped copy (old files, old config) or
  finishes the swap and writes the snapshot's config (new files, new
  config).
* Restore of a running instance kills it (LXD's ``Stop``, not ``Shutdown``),
  restores, and starts it again,
  as LXD does. The instance's ``volatile.*`` keys are kept (its MAC and
  addresses are its own, not the snapshot's).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from cove.engine._failpoints import failpoint
from cove.engine._inst_metadata import replace_own, snapshot_own
from cove.engine._runs import Paths, RunTable
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.host import proc
from cove.model.config import parse_expiry
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.names import validate_snapshot_name
from cove.model.projects import instance_url, split_key
from cove.model.records import Instance, Snapshot
from cove.model.states import Status
from cove.storage import overlay
from cove.store import Store

__all__ = ["Freezer", "SnapshotTarget", "Snapshots", "copy_progress", "copy_tree", "swap_upper",
           "tree_size"]

log = logging.getLogger("cove.engine")

_TMP = ".tmp-"
_NEW, _OLD, _INTENT = ".restore-new", ".restore-old", ".restore-intent"
class SnapshotTarget(Protocol):
    """What snapshots need of the instances service."""

    def get(self, name: str, *, project: str = "default") -> Instance:
        """The instance (its ``name`` is its key). Raises NotFound."""
        ...

    def stop_now(self, name: str, timeout: float, force: bool) -> None:
        """Stop the running instance keyed ``name`` (caller holds its lock)."""
        ...

    def start_now(self, name: str) -> None:
        """Start the stopped instance keyed ``name`` (caller holds its lock)."""
        ...


class Freezer(Protocol):
    def pause(self, cid: str) -> None: ...
    def resume(self, cid: str) -> None: ...


def _snapshot_url(key: str, snapshot: str) -> str:
    return instance_url(key, f"/snapshots/{quote(snapshot, safe='')}")


def tree_size(root: Path) -> int:
    """Bytes the tree uses on disk (each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirs, files in os.walk(root):
        for n in (*dirs, *files):
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


@contextmanager
def copy_progress(op: Operation, dst: Path, total: int, every: float = 1.0) -> Iterator[None]:
    """Report how much of ``total`` bytes is in ``dst`` every ``every``
    seconds while the body runs (LXD's ``metadata.progress``)."""
    done = threading.Event()

    def report() -> None:
        while not done.wait(every):
            try:
                n = tree_size(dst)
            except OSError:
                continue
            pct = min(99, n * 100 // total) if total else 0
            op.progress("Copying the upper layer", pct, f"{n} of {total} bytes")

    thread = threading.Thread(target=report, name="cove-snapshot-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _write_intent(path: Path, snapshot: str, phase: str) -> None:
    """Write the restore intent whole (a temp file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{snapshot}\n{phase}")
    os.rename(tmp, path)


def swap_upper(paths: Paths, runs: RunTable, key: str, new: Path, point: str) -> None:
    """Put the whole directory ``new`` (``instances/KEY/.restore-new``) in
    place of the instance's upper layer: unmount the rootfs, move ``upper``
    to ``.restore-old``, ``new`` to ``upper``, renew overlayfs' work dir,
    remove the old. A kill between the two renames is finished by the
    startup sweep (``Snapshots.sweep``). Caller holds the instance's lock.

    Raises: Conflict (the rootfs is mounted for someone: ``new`` removed).
    """
    d = paths.instance_dir(key)
    old = d / _OLD
    with runs.mutex(key):
        if runs.mount_refs.get(key, 0):
            shutil.rmtree(new, ignore_errors=True)
            raise Conflict("The instance's files are in use; try again")
        overlay.umount(d / "rootfs")
        os.rename(d / "upper", old)
        failpoint(point)
        os.rename(new, d / "upper")
        # overlayfs' work dir belongs to the upper it was used with
        shutil.rmtree(d / "work", ignore_errors=True)
        (d / "work").mkdir(mode=0o700)
    shutil.rmtree(old, ignore_errors=True)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy an overlay upper layer (see module note). ``dst`` must not exist.

    Raises: InternalError (``proc.CommandFailed``) when ``cp`` fails.
    """
    proc.run(["cp", "-a", "--reflink=auto", "--no-target-directory", "--", str(src),
              str(dst)])


class Snapshots:
    """The snapshots of one root's instances. Thread-safe: every change runs
    as an operation holding the instance's lock (``instance:KEY``), so it
    never overlaps a start, stop, rename or delete of that instance."""

    def __init__(self, *, store: Store, paths: Paths, runs: RunTable, runtime: Freezer,
                 instances: SnapshotTarget, operations: Operations, events: EventBus,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._paths = paths
        self._runs = runs
        self._runtime = runtime
        self._instances = instances
        self._operations = operations
        self._events = events
        self._now = clock

    # -- reads ----------------------------------------------------------------
    def all(self, name: str, *, project: str = "default") -> list[Snapshot]:
        """The instance's snapshots, oldest first. Raises: NotFound."""
        key = self._instances.get(name, project=project).name
        return self._store.snapshots.all(key)

    def by_instance(self, keys: list[str]) -> dict[str, list[Snapshot]]:
        """The snapshots of the instances keyed ``keys`` (oldest first), in one
        store read: what a listing with state shows. Unknown keys: empty."""
        out: dict[str, list[Snapshot]] = {k: [] for k in keys}
        for s in self._store.snapshots.all():
            if s.instance in out:
                out[s.instance].append(s)
        return out

    def get(self, name: str, snapshot: str, *, project: str = "default") -> Snapshot:
        """Raises: NotFound (the instance or the snapshot)."""
        key = self._instances.get(name, project=project).name
        return self._store.snapshots.get(key, snapshot)

    def _dir(self, key: str) -> Path:
        return self._paths.instance_dir(key) / "snapshots"

    def _run(self, key: str, work: Callable[[Operation], Any], description: str,
             snapshot: str | None = None) -> Operation:
        resources = {"instances": [instance_url(key)]}
        if snapshot is not None:
            resources["instances_snapshots"] = [_snapshot_url(key, snapshot)]
        return self._operations.run(work, description=description, resources=resources,
                                    lock=f"instance:{key}", project=split_key(key)[0])

    def _lifecycle(self, action: str, key: str, snapshot: str, **context: Any) -> None:
        self._events.lifecycle(action, _snapshot_url(key, snapshot),
                               project=split_key(key)[0], **context)

    # -- create ---------------------------------------------------------------
    def create(self, name: str, snapshot: str | None = None, *, project: str = "default",
               stateful: bool = False, expires_at: float | None = None,
               description: str = "") -> Operation:
        """Take a snapshot, as an operation. Not idempotent. ``snapshot``
        None: the next free name of ``snapshots.pattern`` (``snap%d``).

        Raises:
            BadRequest: a bad name; ``stateful`` (cove keeps no process state).
            NotFound: no such instance.  Conflict: the name is taken, or busy.
        """
        if stateful:
            raise BadRequest("Field 'stateful': stateful snapshots are not supported")
        inst = self._instances.get(name, project=project)
        key = inst.name
        if snapshot is None:
            snapshot = self._next_name(inst)
        validate_snapshot_name(snapshot)
        self._check_free(key, snapshot)
        if expires_at is None:
            expiry = (inst.expanded_config or inst.config).get("snapshots.expiry", "")
            expires_at = parse_expiry(expiry, self._now())
        final_name, final_expiry = snapshot, expires_at

        def work(op: Operation) -> Snapshot:
            self._check_free(key, final_name)
            current = self._store.get_instance(key)
            return self._take(op, current, final_name, final_expiry, description)

        return self._run(key, work, "Snapshotting instance", snapshot)

    def _check_free(self, key: str, snapshot: str) -> None:
        if any(s.name == snapshot for s in self._store.snapshots.all(key)):
            raise Conflict(f"Snapshot {snapshot!r} already exists")

    def _next_name(self, inst: Instance) -> str:
        """LXD's ``snapshots.pattern`` with ``%d``: the lowest number not used."""
        pattern = (inst.expanded_config or inst.config).get("snapshots.pattern") or "snap%d"
        if "%d" not in pattern:
            return pattern
        taken = {s.name for s in self._store.snapshots.all(inst.name)}
        i = 0
        while pattern.replace("%d", str(i)) in taken:
            i += 1
        return pattern.replace("%d", str(i))

    def _take(self, op: Operation, inst: Instance, snapshot: str, expires_at: float,
              description: str) -> Snapshot:
        key = inst.name
        sdir = self._dir(key)
        sdir.mkdir(mode=0o700, exist_ok=True)
        sid = uuid.uuid4().hex
        tmp = sdir / f"{_TMP}{sid}"
        tmp.mkdir(mode=0o700)
        upper = self._paths.instance_dir(key) / "upper"
        total = tree_size(upper)  # before the freeze: only for the progress
        op.progress("Copying the upper layer", 0)
        try:
            freeze = inst.status is Status.RUNNING and self._runs.pid(key) > 0
            if freeze:
                self._runtime.pause(key)
            try:
                with copy_progress(op, tmp / "upper", total):
                    failpoint("snapshot.copy")
                    copy_tree(upper, tmp / "upper")
            finally:
                if freeze:
                    self._runtime.resume(key)
            failpoint("snapshot.after-copy")
            snapshot_own(self._paths.instance_dir(key), tmp)
            size = tree_size(tmp / "upper")
            os.rename(tmp, sdir / sid)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        failpoint("snapshot.after-rename")  # a directory no row names: the sweep's
        snap = Snapshot(instance=key, name=snapshot, dir=sid, created_at=self._now(),
                        expires_at=expires_at, description=description,
                        config=dict(inst.config), devices=dict(inst.devices),
                        profiles=list(inst.profiles), ephemeral=inst.ephemeral,
                        architecture=inst.architecture, image=inst.image, size=size)
        try:
            self._store.snapshots.add(snap)
        except BaseException:
            shutil.rmtree(sdir / sid, ignore_errors=True)
            raise
        op.progress("Copying the upper layer", 100)
        self._lifecycle("instance-snapshot-created", key, snapshot)
        return snap

    # -- change, rename, delete -------------------------------------------------
    def update(self, name: str, snapshot: str, *, project: str = "default",
               description: str | None = None, expires_at: float | None = None) -> Snapshot:
        """Set the writable fields (None: unchanged). Idempotent.

        Raises: NotFound.
        """
        snap = self.get(name, snapshot, project=project)
        if description is not None:
            snap.description = description
        if expires_at is not None:
            snap.expires_at = expires_at
        self._store.snapshots.update(snap)
        self._lifecycle("instance-snapshot-updated", snap.instance, snapshot)
        return snap

    def rename(self, name: str, snapshot: str, new_name: str, *,
               project: str = "default") -> Operation:
        """Rename, as an operation (one row update: the files are named by id).

        Raises: BadRequest (a bad name), NotFound, Conflict (taken, or busy).
        """
        validate_snapshot_name(new_name)
        key = self.get(name, snapshot, project=project).instance
        self._check_free(key, new_name)

        def work(op: Operation) -> None:
            self._store.snapshots.rename(key, snapshot, new_name)
            self._lifecycle("instance-snapshot-renamed", key, new_name, old_name=snapshot)

        return self._run(key, work, "Renaming snapshot", snapshot)

    def delete(self, name: str, snapshot: str, *, project: str = "default") -> Operation:
        """Delete, as an operation. Not idempotent (NotFound when gone).

        Raises: NotFound, Conflict (busy).
        """
        key = self.get(name, snapshot, project=project).instance

        def work(op: Operation) -> None:
            snap = self._store.snapshots.get(key, snapshot)
            self.delete_now(snap)

        return self._run(key, work, "Deleting snapshot", snapshot)

    def delete_now(self, snap: Snapshot) -> None:
        """The row, then the files (a crash between leaves files the sweep
        removes). Caller holds the instance's lock. Idempotent."""
        self._store.snapshots.delete(snap.instance, snap.name)
        failpoint("snapshot-delete.after-row")
        shutil.rmtree(self._dir(snap.instance) / snap.dir, ignore_errors=True)
        self._lifecycle("instance-snapshot-deleted", snap.instance, snap.name)

    # -- restore --------------------------------------------------------------
    def restore(self, name: str, snapshot: str, *, project: str = "default",
                stateful: bool = False) -> Operation:
        """Replace the instance's upper layer, config, devices and profiles
        with the snapshot's, as an operation; a running instance is stopped
        first and started again after. Not idempotent in time (what the
        instance wrote since is lost).

        Raises: BadRequest (``stateful``), NotFound, Conflict (busy).
        """
        if stateful:
            raise BadRequest("Field 'stateful': stateful snapshots are not supported")
        if "/" in snapshot:  # LXD takes "INSTANCE/SNAP" too (``lxc restore`` sends it)
            owner, snapshot = snapshot.split("/", 1)
            if owner != name:
                raise NotFound(f"Snapshot not found: {owner}/{snapshot}")
        key = self.get(name, snapshot, project=project).instance

        def work(op: Operation) -> None:
            snap = self._store.snapshots.get(key, snapshot)
            inst = self._store.get_instance(key)
            was_running = inst.status is not Status.STOPPED
            # an ephemeral instance is kept across this stop, as by a restart
            # (LXD clears its ephemeral flag for the restore)
            self._runs.restarting.add(key)
            try:
                if was_running:
                    op.progress("Stopping instance")
                    self._instances.stop_now(key, 0, True)  # LXD: Stop, not Shutdown
                op.progress("Restoring the upper layer")
                intent = self._paths.instance_dir(key) / _INTENT
                _write_intent(intent, snap.name, "copying")
                self._swap_upper(key, snap, intent)
                _write_intent(intent, snap.name, "swapped")
                failpoint("restore.after-swap")
                self._apply_config(key, snap)
                intent.unlink()
                self._lifecycle("instance-restored", key, snapshot)
                if was_running:
                    op.progress("Starting instance")
                    self._instances.start_now(key)
            finally:
                self._runs.restarting.discard(key)

        return self._run(key, work, "Restoring snapshot", snapshot)

    def _apply_config(self, key: str, snap: Snapshot) -> None:
        """The snapshot's metadata and templates, config, devices and
        profiles onto the instance (its own ``volatile.*`` kept). Idempotent."""
        d = self._paths.instance_dir(key)
        replace_own(self._dir(key) / snap.dir, d)
        inst = self._store.get_instance(key)
        volatile = {k: v for k, v in inst.config.items() if k.startswith("volatile.")}
        inst.config = {**{k: v for k, v in snap.config.items()
                          if not k.startswith("volatile.")}, **volatile}
        inst.devices = dict(snap.devices)
        inst.profiles = list(snap.profiles)
        self._store.update_instance(inst)
        if snap.image != inst.image:  # taken before a rebuild: its files need it
            self._store.set_instance_image(key, snap.image)

    def _swap_upper(self, key: str, snap: Snapshot, intent: Path) -> None:
        d = self._paths.instance_dir(key)
        new, old = d / _NEW, d / _OLD
        for leftover in (new, old):
            shutil.rmtree(leftover, ignore_errors=True)
        copy_tree(self._dir(key) / snap.dir / "upper", new)
        _write_intent(intent, snap.name, "swapping")  # the copy is whole from here
        swap_upper(self._paths, self._runs, key, new, "restore.after-old")

    # -- startup --------------------------------------------------------------
    def sweep(self) -> None:
        """Remove what a killed coved left (see module note): snapshot
        directories no row names, and finish or undo a half-done restore.
        At startup, before anything starts. Idempotent."""
        for inst in self._store.list_instances():
            d = self._paths.instance_dir(inst.name)
            if not d.is_dir():
                continue
            self._sweep_intent(inst.name, d)
            sdir = d / "snapshots"
            if not sdir.is_dir():
                continue
            owned = {s.dir for s in self._store.snapshots.all(inst.name)}
            for entry in sdir.iterdir():
                if entry.name not in owned:
                    log.info("removing leftover snapshot files %s", entry)
                    shutil.rmtree(entry, ignore_errors=True)

    def _sweep_intent(self, key: str, d: Path) -> None:
        """Finish or undo a restore a killed coved left (module note)."""
        intent = d / _INTENT
        try:
            snapshot, _, phase = intent.read_text().partition("\n")
        except FileNotFoundError:
            snapshot, phase = "", ""
        if phase == "copying":  # the copy may be part made; upper was not moved
            shutil.rmtree(d / _NEW, ignore_errors=True)
        swapped = self._sweep_restore(d)
        if snapshot and (phase == "swapped" or phase == "swapping" and swapped):
            try:
                snap = self._store.snapshots.get(key, snapshot)
            except NotFound:
                log.warning("restore of %s from the deleted snapshot %s left as it was",
                            key, snapshot)
            else:
                log.info("finishing the interrupted restore of %s from %s", key, snapshot)
                self._apply_config(key, snap)
        intent.unlink(missing_ok=True)
        intent.with_name(_INTENT + ".tmp").unlink(missing_ok=True)

    @staticmethod
    def _sweep_restore(d: Path) -> bool:
        """Finish a half-done swap of ``upper``, remove the rest; True when
        the snapshot's copy is in place (the swap was done or finished
        here), False when it was never moved in."""
        upper, new, old = d / "upper", d / _NEW, d / _OLD
        if not upper.exists():
            # killed between the two renames: the new copy is whole (it was
            # moved aside only after the copy ended), so finish
            src = new if new.exists() else old
            if src.exists():
                log.info("finishing an interrupted restore in %s", d)
                os.rename(src, upper)
                shutil.rmtree(d / "work", ignore_errors=True)
                (d / "work").mkdir(mode=0o700)
        done = not new.exists()
        for leftover in (new, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
        return done
