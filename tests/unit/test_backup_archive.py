"""The backup tarball reader (``engine._backup_archive``) on hostile input,
and the backup wire classes, without a daemon."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml

from cove import api
from cove.engine._backup_archive import BackupExtractor, compression_of, read_index
from cove.model.errors import BadRequest
from cove.storage._extract import Budget, HashingReader

R = "backup/container/rootfs"


class _Sink:
    def update(self, data: bytes) -> None:
        pass


def _tar(path: Path, members: list[tuple[str, bytes | str | None, bytes]]) -> Path:
    """members: (name, data or link target or None for a dir, tar type)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            if kind == tarfile.REGTYPE:
                assert isinstance(data, bytes)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                if isinstance(data, str):
                    ti.linkname = data
                ti.mode = 0o755
                tar.addfile(ti)
    return path


def _index(**kw: object) -> bytes:
    return yaml.safe_dump({"name": "c1", "type": "container", **kw}).encode()


def _unpack(tmp: Path, tarball: Path, snapshots: tuple[str, ...] = (),
            limit: int | None = None) -> BackupExtractor:
    stage = tmp / "stage"
    stage.mkdir()

    def check(s: str) -> None:
        if s not in snapshots:
            raise BadRequest(f"snapshot {s!r} is not listed")

    ex = BackupExtractor(stage, Budget(limit), check)
    try:
        with open(tarball, "rb") as f:
            head = f.read(8)
            f.seek(0)
            ex.run(HashingReader(f, _Sink(), None), head, "backup")
    finally:
        ex.close()
    return ex


def test_a_good_backup_unpacks_into_its_trees(tmp_path: Path) -> None:
    t = _tar(tmp_path / "b.tar.gz", [
        ("backup/index.yaml", _index(snapshots=["s1"]), tarfile.REGTYPE),
        ("backup/snapshots/s1/rootfs/etc/x", b"snap", tarfile.REGTYPE),
        (f"{R}/etc/x", b"now", tarfile.REGTYPE),
        (f"{R}/etc/link", "/etc/x", tarfile.SYMTYPE),
        (f"{R}/etc/hard", f"{R}/etc/x", tarfile.LNKTYPE),
        ("backup/container/backup.yaml", b"container: {}\n", tarfile.REGTYPE),
        ("backup/snapshots/s1/templates", None, tarfile.DIRTYPE),
        ("backup/snapshots/s1/templates/hostname.tpl", b"snap tpl", tarfile.REGTYPE),
    ])
    assert read_index(t)["snapshots"] == ["s1"]
    ex = _unpack(tmp_path, t, ("s1",))
    stage = tmp_path / "stage"
    assert (stage / "upper/etc/x").read_bytes() == b"now"
    assert (stage / "upper/etc/hard").stat().st_ino == (stage / "upper/etc/x").stat().st_ino
    assert (stage / "snapshots/s1/etc/x").read_bytes() == b"snap"
    assert ex.snapshots == ["s1"]
    assert ex.read_meta("container", "backup.yaml") == {"container": {}}
    # a snapshot's templates/ (LXD's volume has them) beside its YAML
    assert (stage / "meta/backup/snapshots/s1/templates/hostname.tpl").read_bytes() \
        == b"snap tpl"


@pytest.mark.parametrize(("members", "needle"), [
    ([(f"{R}/../../../x", b"x", tarfile.REGTYPE)], "'..'"),
    ([(f"{R}/h", f"{R}/../../../../etc/passwd", tarfile.LNKTYPE)], "'..'"),
    ([(f"{R}/h", "/etc/passwd", tarfile.LNKTYPE)], "etc/passwd"),
    ([("backup/snapshots/s1/rootfs/x", b"x", tarfile.REGTYPE),
      (f"{R}/h", "backup/snapshots/s1/rootfs/x", tarfile.LNKTYPE)], "another tree"),
    ([("backup/other/x", b"x", tarfile.REGTYPE)], "backup/other/x"),
    ([("backup/snapshots/zz/rootfs/x", b"x", tarfile.REGTYPE)], "zz"),
    ([("backup/index.yaml", "/etc/passwd", tarfile.SYMTYPE)], "file or directory"),
    # templates of the container and of a snapshot: no way out, no links, listed snapshots
    ([("backup/container/templates/../../../x.tpl", b"x", tarfile.REGTYPE)], "'..'"),
    ([("backup/snapshots/s1/templates/../../../../x", b"x", tarfile.REGTYPE)], "'..'"),
    ([("backup/snapshots/s1/templates/t.tpl", "/etc/shadow", tarfile.SYMTYPE)],
     "backup/snapshots/s1/templates/t.tpl"),
    ([("backup/snapshots/zz/templates/t.tpl", b"x", tarfile.REGTYPE)], "zz"),
    ([(f"{R}/evil", "/", tarfile.SYMTYPE), (f"{R}/evil/backup/index.yaml", b"x",
                                            tarfile.REGTYPE)], None),
])
def test_hostile_members_are_refused_by_name(tmp_path: Path, members: list[tuple[str, bytes | str | None, bytes]],
                                             needle: str | None) -> None:
    t = _tar(tmp_path / "b.tar.gz", [("backup/index.yaml", _index(), tarfile.REGTYPE),
                                     *members])
    if needle is None:  # a symlink to / resolves in the new rootfs: nothing else is touched
        _unpack(tmp_path, t)
        stage = tmp_path / "stage"
        assert (stage / "upper/backup/index.yaml").read_bytes() == b"x"
        assert (stage / "meta/backup/index.yaml").read_bytes() == _index()
        return
    with pytest.raises(BadRequest) as e:
        read_index(t)
        _unpack(tmp_path, t, ("s1",))
    assert needle in e.value.message


def test_the_budget_stops_a_bomb_naming_the_member(tmp_path: Path) -> None:
    t = _tar(tmp_path / "b.tar.gz", [("backup/index.yaml", _index(), tarfile.REGTYPE),
                                     (f"{R}/zeros", bytes(4 << 20), tarfile.REGTYPE)])
    with pytest.raises(BadRequest) as e:
        _unpack(tmp_path, t, limit=1 << 20)
    assert "zeros" in e.value.message and "1048576" in e.value.message
    assert not (tmp_path / "stage/upper/zeros").exists() or \
        (tmp_path / "stage/upper/zeros").stat().st_size <= 1 << 20


def test_read_index_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    t = _tar(tmp_path / "b.tar.gz", [(f"{R}/x", b"x", tarfile.REGTYPE)])
    with pytest.raises(BadRequest, match="no backup/index.yaml"):
        read_index(t)
    (tmp_path / "junk").write_bytes(b"\x1f\x8bjunk")
    with pytest.raises(BadRequest, match="not a valid backup archive"):
        read_index(tmp_path / "junk")
    t = _tar(tmp_path / "c.tar.gz", [("backup/index.yaml", b"- a list", tarfile.REGTYPE)])
    with pytest.raises(BadRequest, match="not a YAML mapping"):
        read_index(t)


def test_compression_and_wire_classes() -> None:
    assert compression_of("") == "gzip" and compression_of("xz") == "xz"
    with pytest.raises(BadRequest, match="compression_algorithm"):
        compression_of("zstd-ultra")
    req = api.InstanceBackupsPost.parse({"name": "b", "container_only": True,
                                         "expires_at": "2030-01-01T00:00:00Z"})
    assert req.instance_only and req.expires_at == 1893456000.0
    assert api.InstanceBackupsPost.parse(req.to_wire()) == req
    with pytest.raises(BadRequest, match="expires_at"):
        api.InstanceBackupsPost.parse({"expires_at": "soon"})
    with pytest.raises(BadRequest, match="name"):
        api.InstanceBackupPost.parse({})
    obj = api.InstanceBackup(name="b", created_at=1700000000.0, instance_only=True)
    assert api.InstanceBackup.from_wire(obj.to_wire()) == obj
    assert obj.to_wire()["expires_at"] == "0001-01-01T00:00:00Z"


def test_increment_changes_and_deleted_paths(tmp_path: Path) -> None:
    from cove.engine._backup_incremental import changes, check_deleted, manifest_of

    root = tmp_path / "r"
    (root / "d/sub").mkdir(parents=True)
    (root / "d/sub/f").write_text("x")
    (root / "keep").write_text("k")
    (root / "edit").write_text("1")
    (root / "link").symlink_to("keep")
    before = manifest_of(root)
    (root / "edit").write_text("22")
    (root / "d/sub/f").unlink()
    (root / "d/sub").rmdir()
    (root / "link").unlink()
    (root / "link").symlink_to("edit")
    (root / "new").write_text("n")
    changed, gone = changes(before, manifest_of(root))
    assert changed == ["edit", "link", "new"]
    assert gone == ["d/sub"]  # the topmost only
    assert check_deleted(["a/b", "c"]) == ["a/b", "c"]
    for bad in (["../x"], ["/etc"], ["a//b"], [""], "a", [1]):
        with pytest.raises(BadRequest):
            check_deleted(bad)


def test_an_optimized_backup_is_refused_before_anything(tmp_path: Path) -> None:
    from cove.engine._backup_import import BackupImports

    index = yaml.safe_load(_index(optimized=True, backend="zfs"))
    with pytest.raises(BadRequest, match="optimized"):
        BackupImports._import_key(object.__new__(BackupImports), index, "", "default")
