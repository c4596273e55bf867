"""ImageStore: hostile image tarballs must not write or link anything outside
the image, and a failed import must leave nothing behind.

These tests need root (chown, device nodes in source trees) but no runtime.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import importlib.util
import io
import lzma
import os
import secrets
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from cove.model.errors import BadRequest, Conflict, NotFound
from cove.storage.images import ImageStore, host_architecture, normalize_architecture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPO = Path(__file__).resolve().parents[2]
MTIME = 1_600_000_000


def sentinel() -> str:
    return f"covetest-{secrets.token_hex(6)}"


# -- building tarballs ----------------------------------------------------------


@dataclass
class M:
    """One tar member to write."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    pax: dict[str, str] = field(default_factory=dict)


def reg(name: str, data: bytes = b"", **kw: object) -> M:
    return M(name, tarfile.REGTYPE, data, **kw)  # type: ignore[arg-type]


def d(name: str, **kw: object) -> M:
    return M(name, tarfile.DIRTYPE, mode=kw.pop("mode", 0o755), **kw)  # type: ignore[arg-type]


def sym(name: str, target: str) -> M:
    return M(name, tarfile.SYMTYPE, link=target, mode=0o777)


def hard(name: str, target: str) -> M:
    return M(name, tarfile.LNKTYPE, link=target)


def tar_bytes(members: list[M]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mode, info.uid, info.gid = m.type, m.mode, m.uid, m.gid
            info.mtime, info.linkname = m.mtime, m.link
            info.pax_headers = dict(m.pax)
            if m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(m.data) if m.type == tarfile.REGTYPE else None)
    return buf.getvalue()


COMPRESS = {
    "none": lambda b: b,
    "gz": lambda b: gzip.compress(b, mtime=0),
    "xz": lzma.compress,
    "bz2": bz2.compress,
}


def write_tar(path: Path, members: list[M], compression: str = "gz") -> Path:
    path.write_bytes(COMPRESS[compression](tar_bytes(members)))
    return path


METADATA = b"""\
architecture: amd64
creation_date: 1500000000
properties:
  os: covetest
  release: "1.0"
  nested: {a: b}
  flag: true
templates:
  /etc/hostname:
    when: [create]
    template: hostname.tpl
"""


def unified(*rootfs: M, metadata: bytes = METADATA) -> list[M]:
    return [reg("metadata.yaml", metadata), d("rootfs"), d("rootfs/etc"),
            *[_prefixed(m) for m in rootfs]]


def _prefixed(m: M) -> M:
    m.name = "rootfs/" + m.name.lstrip("/")
    if m.type == tarfile.LNKTYPE:
        m.link = "rootfs/" + m.link.lstrip("/")
    return m


# -- fixtures -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "covetest-store")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory next to the store that nothing may touch."""
    o = tmp_path / "covetest-outside"
    o.mkdir()
    (o / "victim").write_text("original")
    return o


def assert_empty(store: ImageStore) -> None:
    assert os.listdir(store.root) == []


def import_bytes(store: ImageStore, tmp_path: Path, members: list[M],
                 compression: str = "gz") -> str:
    path = write_tar(tmp_path / f"{sentinel()}.tar", members, compression)
    return store.import_file(path).fingerprint


def mkbusybox() -> ModuleType:
    spec = importlib.util.spec_from_file_location("covetest_mkbusybox",
                                                  REPO / "scripts" / "mkbusybox.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- formats --------------------------------------------------------------------


@pytest.mark.parametrize("compression", list(COMPRESS))
def test_unified_image(store: ImageStore, tmp_path: Path, compression: str) -> None:
    members = unified(reg("etc/hostname", b"covetest\n"), d("bin"),
                      reg("bin/tool", b"#!", mode=0o4755, uid=1000, gid=1001),
                      sym("bin/sh", "/bin/tool"))
    members.append(d("templates"))
    members.append(reg("templates/hostname.tpl", b"{{ container.name }}"))
    path = write_tar(tmp_path / "covetest.tar", members, compression)
    seen: list[int] = []
    image = store.import_file(path, progress=seen.append)

    assert image.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert image.size == path.stat().st_size
    assert image.architecture == "x86_64"
    assert image.properties == {"os": "covetest", "release": "1.0", "flag": "true"}
    assert image.created_at == 1500000000
    assert (image.cmd, image.env) == ([], {})
    assert seen[-1] == 100 and seen == sorted(seen)

    rootfs = store.rootfs(image.fingerprint)
    assert rootfs == store.root / image.fingerprint / "rootfs"
    assert (rootfs / "etc" / "hostname").read_bytes() == b"covetest\n"
    s = os.stat(rootfs / "bin" / "tool")
    assert (stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid, s.st_mtime) == (0o4755, 1000, 1001,
                                                                         MTIME)
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/tool"
    assert os.lstat(rootfs / "bin").st_mtime == MTIME
    image_dir = store.path(image.fingerprint)
    assert (image_dir / "metadata.yaml").read_bytes() == METADATA
    assert (image_dir / "templates" / "hostname.tpl").exists()
    assert sorted(os.listdir(image_dir)) == ["metadata.yaml", "rootfs", "templates"]
    assert store.exists(image.fingerprint)
    assert store.fingerprints() == [image.fingerprint]
    assert [n for n in os.listdir(store.root) if n.startswith(".tmp")] == []


def test_plain_rootfs_tarball(store: ImageStore, tmp_path: Path) -> None:
    path = write_tar(tmp_path / "covetest.tar.gz",
                     [d("./"), d("./etc"), reg("./etc/hostname", b"plain"), d("./rootfs")])
    image = store.import_file(path, filename="covetest.tar.gz")
    rootfs = store.rootfs(image.fingerprint)
    assert (rootfs / "etc" / "hostname").read_bytes() == b"plain"
    assert (rootfs / "rootfs").is_dir()
    assert image.architecture == host_architecture()
    assert image.properties == {}
    assert sorted(os.listdir(store.path(image.fingerprint))) == ["rootfs"]


def test_split_image(store: ImageStore, tmp_path: Path) -> None:
    meta = write_tar(tmp_path / "meta.tar.xz",
                     [reg("metadata.yaml", METADATA), d("templates"),
                      reg("templates/hostname.tpl", b"x")], "xz")
    rootfs = write_tar(tmp_path / "rootfs.tar.gz", [d("etc"), reg("etc/hostname", b"split")])
    image = store.import_split(meta, rootfs)
    assert image.fingerprint == hashlib.sha256(meta.read_bytes() + rootfs.read_bytes()).hexdigest()
    assert image.properties["os"] == "covetest"
    assert (store.rootfs(image.fingerprint) / "etc" / "hostname").read_bytes() == b"split"
    assert sorted(os.listdir(store.path(image.fingerprint))) == [
        "metadata.yaml", "rootfs", "templates"]


def test_split_without_metadata_fails_cleanly(store: ImageStore, tmp_path: Path) -> None:
    meta = write_tar(tmp_path / "meta.tar", [reg("other", b"x")])
    rootfs = write_tar(tmp_path / "rootfs.tar", [d("etc")])
    with pytest.raises(BadRequest, match="metadata.yaml"):
        store.import_split(meta, rootfs)
    assert_empty(store)


def test_import_dir_is_deterministic_and_safe(tmp_path: Path) -> None:
    src = tmp_path / "covetest-src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("dir")
    os.link(src / "etc" / "hostname", src / "etc" / "hn-hard")
    os.symlink("/etc", src / "hostetc")
    os.mknod(src / "etc" / "covetest-null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(src / "fifo")
    os.chown(src / "etc" / "hostname", 1000, 1000)

    one = ImageStore(tmp_path / "covetest-store1").import_dir(src)
    os.utime(src / "etc" / "hostname", (1, 1))  # mtimes are not part of it
    store2 = ImageStore(tmp_path / "covetest-store2")
    two = store2.import_dir(src)
    assert one.fingerprint == two.fingerprint
    assert one.size == 3

    rootfs = store2.rootfs(two.fingerprint)
    assert os.readlink(rootfs / "hostetc") == "/etc"
    assert not (rootfs / "etc" / "covetest-null").exists()
    assert stat.S_ISFIFO(os.lstat(rootfs / "fifo").st_mode)
    a, b = os.stat(rootfs / "etc" / "hostname"), os.stat(rootfs / "etc" / "hn-hard")
    assert a.st_ino == b.st_ino and a.st_uid == 1000
    assert os.stat(rootfs / "etc" / "hostname").st_mtime == 1

    (src / "etc" / "hostname").write_text("changed")
    three = ImageStore(tmp_path / "covetest-store3").import_dir(src)
    assert three.fingerprint != one.fingerprint


def test_import_dir_with_metadata(store: ImageStore, tmp_path: Path) -> None:
    src = tmp_path / "covetest-unified"
    (src / "rootfs" / "etc").mkdir(parents=True)
    (src / "metadata.yaml").write_bytes(METADATA)
    image = store.import_dir(src)
    assert image.properties["os"] == "covetest"
    assert (store.path(image.fingerprint) / "metadata.yaml").read_bytes() == METADATA
    assert (store.rootfs(image.fingerprint) / "etc").is_dir()
    plain = ImageStore(tmp_path / "covetest-other").import_dir(src / "rootfs")
    assert plain.fingerprint != image.fingerprint


def test_busybox_image(store: ImageStore, tmp_path: Path) -> None:
    mod = mkbusybox()
    out = mod.build_busybox_image(tmp_path / "covetest-busybox.tar.gz")
    again = mod.build_busybox_image(tmp_path / "covetest-busybox2.tar.gz")
    assert out.read_bytes() == again.read_bytes()  # deterministic
    image = store.import_file(out)
    assert image.properties["os"] == "busybox"
    assert image.properties["release"]
    assert image.architecture == host_architecture()
    rootfs = store.rootfs(image.fingerprint)
    assert os.access(rootfs / "bin" / "busybox", os.X_OK)
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"
    assert os.readlink(rootfs / "usr" / "bin" / "env") == "/bin/busybox"
    assert stat.S_IMODE(os.stat(rootfs / "tmp").st_mode) == 0o1777
    assert "app:x:1000:1000:app:/home/app:/bin/sh" in (rootfs / "etc" / "passwd").read_text()
    assert "nogroup:x:65534:" in (rootfs / "etc" / "group").read_text()
    assert os.stat(rootfs / "home" / "app").st_uid == 1000
    for name in ("dev", "proc", "sys", "root", "run", "var", "etc/hostname", "etc/hosts"):
        assert (rootfs / name).exists(), name

    plain = mod.build_busybox_image(tmp_path / "covetest-plain.tar.gz", plain=True)
    p = store.import_file(plain)
    assert (store.rootfs(p.fingerprint) / "bin" / "busybox").exists()


# -- hostile tarballs -------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../{s}", "./../{s}", "etc/../../{s}",
                                  "rootfs/../../{s}", "/../{s}"])
def test_member_escaping_with_dotdot_is_rejected(
        store: ImageStore, tmp_path: Path, name: str) -> None:
    s = sentinel()
    member = name.format(s=s)
    with pytest.raises(BadRequest, match="outside the image") as err:
        import_bytes(store, tmp_path, unified(reg("etc/ok", b"x")) + [reg(member, b"evil")])
    assert member in str(err.value)
    assert_empty(store)
    for base in (store.root, store.root.parent, tmp_path.parent):
        assert not (base / s).exists()


def test_absolute_member_stays_inside(store: ImageStore, tmp_path: Path) -> None:
    s = sentinel()
    fp = import_bytes(store, tmp_path, [d("/etc"), reg(f"/etc/{s}", b"inside")])
    assert (store.rootfs(fp) / "etc" / s).read_bytes() == b"inside"
    assert not Path("/etc", s).exists()


def test_symlink_etc_to_host_etc(store: ImageStore, tmp_path: Path) -> None:
    # Inside the image, "etc -> /etc" points at itself: writing through it
    # is a symlink loop, and above all never reaches the host's /etc.
    s = sentinel()
    hostile = [
        [reg("metadata.yaml", METADATA), d("rootfs"), sym("rootfs/etc", "/etc"),
         reg(f"rootfs/etc/{s}", b"evil")],
        [sym("etc", "/etc"), reg(f"etc/{s}", b"evil")],
        [sym("./etc", "/etc"), reg(f"/etc/{s}", b"evil")],
        [sym("etc", "../../../../../../../etc"), reg(f"etc/{s}", b"evil")],
    ]
    for members in hostile:
        with pytest.raises(BadRequest, match="symbolic links") as err:
            import_bytes(store, tmp_path, members)
        assert s in str(err.value)
        assert not Path("/etc", s).exists()
        assert_empty(store)


def test_symlink_to_host_dir_lands_in_image(store: ImageStore, tmp_path: Path) -> None:
    s = sentinel()
    fp = import_bytes(store, tmp_path, unified(sym("hostetc", "/etc"),
                                               reg(f"hostetc/{s}", b"inside")))
    assert (store.rootfs(fp) / "etc" / s).read_bytes() == b"inside"
    assert os.readlink(store.rootfs(fp) / "hostetc") == "/etc"
    assert not Path("/etc", s).exists()


def test_symlink_up_then_write_through(store: ImageStore, tmp_path: Path,
                                       outside: Path) -> None:
    s = sentinel()
    fp = import_bytes(store, tmp_path, unified(
        sym("up", "../../.."), reg(f"up/{s}", b"a"),
        sym("etc/up", "../../../../../.."), reg(f"etc/up/covetest-outside/{s}", b"b"),
        d(f"etc/up/{s}-dir"), d("etc/up/covetest-outside")))
    rootfs = store.rootfs(fp)
    assert (rootfs / s).read_bytes() == b"a"
    assert (rootfs / "covetest-outside" / s).read_bytes() == b"b"
    assert (rootfs / f"{s}-dir").is_dir()
    assert os.listdir(outside) == ["victim"]
    for base in (store.root, store.root.parent, tmp_path.parent, Path("/")):
        assert not (base / s).exists()


def test_parent_symlink_to_outside_dir(store: ImageStore, tmp_path: Path,
                                       outside: Path) -> None:
    # "sub" points at a real host directory; inside the image that path does
    # not exist, so the member cannot be created anywhere: the import fails.
    s = sentinel()
    with pytest.raises(BadRequest, match="sub/"):
        import_bytes(store, tmp_path, unified(sym("sub", str(outside)),
                                              reg(f"sub/{s}", b"evil")))
    assert os.listdir(outside) == ["victim"]
    assert_empty(store)


def test_hardlink_to_host_file_is_impossible(store: ImageStore, tmp_path: Path) -> None:
    before = os.stat("/etc/passwd").st_nlink
    with pytest.raises(BadRequest, match="evil"):
        import_bytes(store, tmp_path, unified(hard("evil", "/etc/passwd")))
    assert_empty(store)
    # With an etc/passwd of its own, the link can only be to the image's file.
    fp = import_bytes(store, tmp_path, unified(reg("etc/passwd", b"covetest-inside"),
                                               hard("evil", "/etc/passwd"),
                                               sym("hostetc", "/etc"),
                                               hard("evil2", "hostetc/passwd")))
    rootfs = store.rootfs(fp)
    assert (rootfs / "evil").read_bytes() == b"covetest-inside"
    assert os.stat(rootfs / "evil").st_ino == os.stat(rootfs / "etc" / "passwd").st_ino
    assert os.stat(rootfs / "evil2").st_ino == os.stat(rootfs / "etc" / "passwd").st_ino
    assert os.stat("/etc/passwd").st_nlink == before


def test_hardlink_outside_is_rejected(store: ImageStore, tmp_path: Path,
                                      outside: Path) -> None:
    for link in ("../../covetest-outside/victim", "rootfs/../../covetest-outside/victim"):
        with pytest.raises(BadRequest, match="outside the image"):
            import_bytes(store, tmp_path, unified(reg("etc/x")) + [hard("rootfs/evil", link)])
        assert_empty(store)
    with pytest.raises(BadRequest):
        import_bytes(store, tmp_path, unified(sym("o", str(outside)), hard("evil", "o/victim")))
    assert_empty(store)
    assert os.stat(outside / "victim").st_nlink == 1
    assert (outside / "victim").read_text() == "original"


def test_device_nodes_are_skipped_fifos_kept(store: ImageStore, tmp_path: Path) -> None:
    fp = import_bytes(store, tmp_path, unified(
        d("dev"), M("dev/sda", tarfile.BLKTYPE), M("dev/mem", tarfile.CHRTYPE),
        M("fifo", tarfile.FIFOTYPE, mode=0o600)))
    rootfs = store.rootfs(fp)
    assert os.listdir(rootfs / "dev") == []
    assert stat.S_ISFIFO(os.lstat(rootfs / "fifo").st_mode)


def test_later_member_replaces_instead_of_writing_through(
        store: ImageStore, tmp_path: Path) -> None:
    fp = import_bytes(store, tmp_path, unified(
        sym("pw", "/etc/passwd"), reg("pw", b"replaced"),
        reg("etc/shadow", b"secret"), hard("x", "etc/shadow"), reg("x", b"new"),
        reg("etc/file"), d("etc/file"), reg("etc/file/inner")))
    rootfs = store.rootfs(fp)
    assert not os.path.islink(rootfs / "pw")
    assert (rootfs / "pw").read_bytes() == b"replaced"
    assert (rootfs / "etc" / "shadow").read_bytes() == b"secret"
    assert (rootfs / "x").read_bytes() == b"new"
    assert (rootfs / "etc" / "file" / "inner").exists()
    assert Path("/etc/passwd").read_bytes() != b"replaced"


def test_rootfs_must_be_a_real_directory(store: ImageStore, tmp_path: Path) -> None:
    s = sentinel()
    with pytest.raises(BadRequest, match="rootfs"):
        import_bytes(store, tmp_path, [reg("metadata.yaml", METADATA), sym("rootfs", "/"),
                                       reg(f"rootfs/{s}", b"x")])
    assert_empty(store)
    assert not Path("/", s).exists()
    with pytest.raises(BadRequest, match="rootfs"):
        import_bytes(store, tmp_path, [reg("metadata.yaml", METADATA)])
    assert_empty(store)


def test_xattrs_filtered(store: ImageStore, tmp_path: Path) -> None:
    pax = {"SCHILY.xattr.user.covetest": "kept",
           "SCHILY.xattr.trusted.overlay.opaque": "y"}
    fp = import_bytes(store, tmp_path, unified(reg("f", b"x", pax=pax)))
    path = store.rootfs(fp) / "f"
    assert os.getxattr(path, "user.covetest") == b"kept"
    assert "trusted.overlay.opaque" not in os.listxattr(path)


@pytest.mark.parametrize("data", [
    b"",
    b"not a tarball at all" * 100,
    gzip.compress(b"garbage" * 100),
    b"hsqs" + b"\0" * 100,
    b"\x28\xb5\x2f\xfd" + b"\0" * 100,
])
def test_garbage_is_bad_request(store: ImageStore, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "covetest-garbage"
    path.write_bytes(data)
    with pytest.raises(BadRequest):
        store.import_file(path)
    assert_empty(store)


def test_truncated_archive_leaves_nothing(store: ImageStore, tmp_path: Path) -> None:
    data = gzip.compress(tar_bytes(unified(reg("etc/big", os.urandom(1 << 20)))), mtime=0)
    path = tmp_path / "covetest-trunc.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadRequest):
        store.import_file(path)
    assert_empty(store)


@pytest.mark.parametrize("meta", [b"- a list\n", b"{unclosed: [\n", b"key: \xc3\x28\n"])
def test_bad_metadata(store: ImageStore, tmp_path: Path, meta: bytes) -> None:
    with pytest.raises(BadRequest, match="metadata.yaml"):
        import_bytes(store, tmp_path, unified(metadata=meta))
    assert_empty(store)


# -- store management -------------------------------------------------------------


def test_conflict_delete_and_fingerprint_validation(store: ImageStore, tmp_path: Path) -> None:
    path = write_tar(tmp_path / "covetest.tar", unified(reg("etc/x")))
    image = store.import_file(path)
    with pytest.raises(Conflict):
        store.import_file(path)
    assert os.listdir(store.root) == [image.fingerprint]
    store.delete(image.fingerprint)
    assert os.listdir(store.root) == []
    assert not store.exists(image.fingerprint)
    with pytest.raises(NotFound):
        store.delete(image.fingerprint)
    with pytest.raises(NotFound):
        store.rootfs(image.fingerprint)
    for bad in ("../etc", "", image.fingerprint.upper(), image.fingerprint[:12]):
        with pytest.raises(BadRequest):
            store.rootfs(bad)


def test_delete_does_not_follow_symlinks(store: ImageStore, tmp_path: Path,
                                         outside: Path) -> None:
    fp = import_bytes(store, tmp_path, unified(sym("o", str(outside)), sym("up", "../../..")))
    store.delete(fp)
    assert (outside / "victim").read_text() == "original"
    assert os.listdir(store.root) == []


def test_cleanup_temp(store: ImageStore, tmp_path: Path, outside: Path) -> None:
    fp = import_bytes(store, tmp_path, unified(reg("etc/x")))
    crashed = store.root / ".tmp-covetest"
    (crashed / "raw" / "deep").mkdir(parents=True)
    os.symlink(str(outside), crashed / "raw" / "deep" / "out")
    (store.root / ".tmp-del-covetest").mkdir()
    assert store.cleanup_temp() == 2
    assert os.listdir(store.root) == [fp]
    assert (outside / "victim").exists()


def test_architecture_names() -> None:
    assert normalize_architecture("amd64") == "x86_64"
    assert normalize_architecture("arm64") == "aarch64"
    assert normalize_architecture("riscv64") == "riscv64"
    assert host_architecture() == normalize_architecture(os.uname().machine)
