"""The snapshots service on a real store and real directories, with the
instances service and the runtime faked (no containers): what is copied
(overlay whiteouts and opaque-directory xattrs too), the freeze around the
copy of a running instance, the crash sweep and the restore swap."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cove.engine._runs import Paths, RunTable
from cove.engine._snapshots import Snapshots
from cove.engine.events import EventBus
from cove.engine.operations import Operations
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.projects import instance_key
from cove.model.records import Instance
from cove.model.states import Status
from cove.store import Store


class FakeFreezer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self, cid: str) -> None:
        self.calls.append(f"pause {cid}")

    def resume(self, cid: str) -> None:
        self.calls.append(f"resume {cid}")


class FakeTarget:
    """``SnapshotTarget`` over the store; start and stop only record."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[str] = []

    def get(self, name: str, *, project: str = "default") -> Instance:
        return self.store.get_instance(instance_key(project, name))

    def stop_now(self, name: str, timeout: float, force: bool) -> None:
        self.calls.append(f"stop {name} force={force}")

    def start_now(self, name: str) -> None:
        self.calls.append(f"start {name}")


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "cove.db")
    paths = Paths(tmp_path)
    freezer, target = FakeFreezer(), FakeTarget(store)
    runs = RunTable()
    svc = Snapshots(store=store, paths=paths, runs=runs, runtime=freezer, instances=target,
                    operations=Operations(), events=EventBus(), clock=lambda: 1000.0)
    d = paths.instance_dir("c1")
    for sub in ("upper", "work", "rootfs"):
        (d / sub).mkdir(parents=True)
    store.add_instance(Instance(name="c1", image="f", config={"user.a": "1",
                                                             "volatile.eth0.hwaddr": "m1"}))
    yield svc, store, d, freezer, target, runs
    store.close()


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def test_copy_keeps_overlay_metadata(env) -> None:  # type: ignore[no-untyped-def]
    svc, _store, d, freezer, _, _ = env
    (d / "upper" / "file").write_bytes(b"v1")
    _whiteout(d / "upper" / "deleted")
    (d / "upper" / "opaque").mkdir()
    os.setxattr(d / "upper" / "opaque", "trusted.overlay.opaque", b"y")
    os.link(d / "upper" / "file", d / "upper" / "hardlink")
    op = svc.create("c1", "s0")
    op.wait()
    op.raise_for_error()
    snap = op.result
    assert freezer.calls == []  # stopped: nothing to freeze
    copy = d / "snapshots" / snap.dir / "upper"
    assert (copy / "file").read_bytes() == b"v1"
    st = os.lstat(copy / "deleted")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(copy / "opaque", "trusted.overlay.opaque") == b"y"
    assert os.stat(copy / "file").st_ino == os.stat(copy / "hardlink").st_ino
    assert os.stat(copy / "file").st_ino != os.stat(d / "upper" / "file").st_ino
    assert snap.config["user.a"] == "1" and snap.size > 0


def test_running_instance_frozen_for_the_copy(env) -> None:  # type: ignore[no-untyped-def]
    svc, store, _d, freezer, _, runs = env
    inst = store.get_instance("c1")
    inst.status = Status.RUNNING
    store.update_instance(inst)
    runs.pids["c1"] = 4242
    svc.create("c1", "s0").wait()
    assert freezer.calls == ["pause c1", "resume c1"]


def test_names_and_conflicts(env) -> None:  # type: ignore[no-untyped-def]
    svc, _store, _d, *_ = env
    with pytest.raises(BadRequest):
        svc.create("c1", "a/b")
    with pytest.raises(BadRequest, match="stateful"):
        svc.create("c1", "x", stateful=True)
    with pytest.raises(NotFound):
        svc.create("nope", "x")
    svc.create("c1", None).wait()
    svc.create("c1", None).wait()
    assert [s.name for s in svc.all("c1")] == ["snap0", "snap1"]
    with pytest.raises(Conflict):
        svc.create("c1", "snap0")
    with pytest.raises(Conflict):
        svc.rename("c1", "snap0", "snap1")


def test_restore_swaps_upper_and_keeps_volatile(env) -> None:  # type: ignore[no-untyped-def]
    svc, store, d, _, target, _ = env
    (d / "upper" / "f").write_bytes(b"old")
    svc.create("c1", "s0").wait()
    (d / "upper" / "f").write_bytes(b"new")
    (d / "upper" / "extra").write_bytes(b"x")
    inst = store.get_instance("c1")
    inst.config = {"user.a": "2", "volatile.eth0.hwaddr": "m2"}
    inst.status = Status.RUNNING
    store.update_instance(inst)
    op = svc.restore("c1", "c1/s0")
    op.wait()
    op.raise_for_error()
    assert (d / "upper" / "f").read_bytes() == b"old" and not (d / "upper" / "extra").exists()
    assert store.get_instance("c1").config == {"user.a": "1", "volatile.eth0.hwaddr": "m2"}
    assert target.calls == ["stop c1 force=True", "start c1"]
    assert sorted(os.listdir(d)) == ["rootfs", "snapshots", "upper", "work"]
    with pytest.raises(NotFound):
        svc.restore("c1", "other/s0")


def test_sweep_after_crashes(env) -> None:  # type: ignore[no-untyped-def]
    svc, _store, d, *_ = env
    svc.create("c1", "s0").wait()
    kept = os.listdir(d / "snapshots")
    (d / "snapshots" / ".tmp-dead").mkdir()  # killed during a copy
    (d / "snapshots" / "deadbeef").mkdir()  # killed after the rename, before the row
    # killed between the two renames of a restore: upper is gone, the new one is whole
    (d / "upper").rename(d / ".restore-old")
    (d / ".restore-new").mkdir()
    (d / ".restore-new" / "restored").write_bytes(b"r")
    svc.sweep()
    assert os.listdir(d / "snapshots") == kept
    assert (d / "upper" / "restored").read_bytes() == b"r"
    assert sorted(os.listdir(d)) == ["rootfs", "snapshots", "upper", "work"]
    svc.sweep()  # idempotent
    assert os.listdir(d / "snapshots") == kept


def test_instance_delete_and_rename_carry_rows(env) -> None:  # type: ignore[no-untyped-def]
    svc, store, *_ = env
    svc.create("c1", "s0").wait()
    store.rename_instance("c1", "c2")
    assert [s.name for s in store.snapshots.all("c2")] == ["s0"]
    assert store.snapshots.all("c1") == []
    store.delete_instance("c2")
    assert store.snapshots.all() == []


def test_copy_progress_reported(tmp_path: Path) -> None:
    import time

    from cove.engine._snapshots import copy_progress
    from cove.engine.operations import Operation

    op = Operation("task", "Snapshotting instance", {}, False)
    dst = tmp_path / "dst"
    dst.mkdir()
    seen: list[str] = []
    op.add_listener(lambda o: seen.append(str(o.metadata.get("progress", {}).get("percent"))))
    with copy_progress(op, dst, 8192, every=0.02):
        (dst / "half").write_bytes(b"x" * 4096)
        fd = os.open(dst / "half", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        time.sleep(0.2)
    assert "50" in seen, seen


def test_snapshot_keeps_metadata_and_templates(env) -> None:  # type: ignore[no-untyped-def]
    # LXD's snapshot holds the volume's metadata.yaml and templates/: a restore
    # brings back the instance's own, or (taken without any) its image's
    svc, store, d, *_ = env
    svc.create("c1", "plain").wait()  # no own files: the image's apply
    (d / "templates").mkdir()
    (d / "templates" / "a.tpl").write_bytes(b"v1")
    (d / "metadata.yaml").write_bytes(b"templates: {}\n")
    svc.create("c1", "own").wait()
    sdir = d / "snapshots" / store.snapshots.get("c1", "own").dir
    assert (sdir / "templates" / "a.tpl").read_bytes() == b"v1"
    (d / "templates" / "a.tpl").write_bytes(b"v2")
    (d / "templates" / "b.tpl").write_bytes(b"new")

    svc.restore("c1", "own").wait()
    assert sorted(os.listdir(d / "templates")) == ["a.tpl"]
    assert (d / "templates" / "a.tpl").read_bytes() == b"v1"
    svc.restore("c1", "plain").wait()
    assert not (d / "metadata.yaml").exists() and not (d / "templates").exists()

    # killed after the swap: the sweep finishes the files with the config
    svc.restore("c1", "own").wait()
    (d / "templates" / "a.tpl").write_bytes(b"half")
    (d / ".restore-intent").write_text("own\nswapped")
    svc.sweep()
    assert (d / "templates" / "a.tpl").read_bytes() == b"v1"
    assert not (d / ".restore-intent").exists()

    # a snapshot taken before snapshots kept them leaves the instance's own
    for n in ("metadata.yaml", "metadata.image"):
        (sdir / n).unlink(missing_ok=True)
    (d / "templates" / "a.tpl").write_bytes(b"mine")
    svc.restore("c1", "own").wait()
    assert (d / "templates" / "a.tpl").read_bytes() == b"mine"
