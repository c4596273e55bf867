"""RootFS: every path is hostile and must stay inside the root.

These tests need root (mknod, chown, mounts) but no container runtime.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cove.host.syscalls import MNT_DETACH, mount, umount2
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.storage.safefs import FileStat, RootFS, split_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def sentinel() -> str:
    return f"covetest-{secrets.token_hex(6)}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "covetest-root"
    (r / "etc").mkdir(parents=True)
    (r / "tmp").mkdir()
    (r / "etc" / "hostname").write_text("covetest-inside\n")
    (r / "etc" / "passwd").write_text("covetest-passwd\n")
    return r


@pytest.fixture
def fs(root: Path) -> Iterator[RootFS]:
    with RootFS(root) as f:
        yield f


def read(fs: RootFS, path: str) -> bytes:
    fd = fs.open_read(path)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# -- paths ------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda fs: fs.stat("etc/passwd"),
    lambda fs: fs.open_read("etc/passwd"),
    lambda fs: fs.listdir("etc"),
    lambda fs: fs.readlink("x"),
    lambda fs: fs.write_file("x", b""),
    lambda fs: fs.mkdir("x"),
    lambda fs: fs.symlink("x", "/y"),
    lambda fs: fs.remove("x"),
    lambda fs: list(fs.walk("etc")),
    lambda fs: fs.stat(""),
])
def test_relative_paths_are_refused(fs: RootFS, call: object) -> None:
    with pytest.raises(BadRequest, match="path must be absolute"):
        call(fs)  # type: ignore[operator]


def test_split_path_never_climbs_above_root() -> None:
    assert split_path("/") == []
    assert split_path("/../../etc/./passwd") == ["etc", "passwd"]
    assert split_path("//a//b/../c/") == ["a", "c"]
    with pytest.raises(BadRequest):
        split_path("/a\0b")


def test_dotdot_stays_inside(fs: RootFS) -> None:
    assert read(fs, "/../../../etc/passwd") == b"covetest-passwd\n"
    assert read(fs, "/etc/../../etc/hostname") == b"covetest-inside\n"


# -- symlinks ---------------------------------------------------------------


def test_absolute_symlink_resolves_inside_root(fs: RootFS, root: Path) -> None:
    os.symlink("/etc", root / "hostetc")
    assert read(fs, "/hostetc/passwd") == b"covetest-passwd\n"
    os.symlink("/etc/passwd", root / "pw")
    assert read(fs, "/pw") == b"covetest-passwd\n"


def test_symlink_to_missing_host_file_is_not_found(fs: RootFS, root: Path) -> None:
    # /etc/os-release exists on the host but not in the root.
    assert Path("/etc/os-release").exists()
    os.symlink("/etc/os-release", root / "osr")
    with pytest.raises(NotFound):
        fs.open_read("/osr")
    with pytest.raises(NotFound):
        fs.stat("/osr")
    assert fs.stat("/osr", follow=False).type == "symlink"


def test_relative_symlink_cannot_climb_out(fs: RootFS, root: Path) -> None:
    os.symlink("../../../../../../../..", root / "up")
    assert read(fs, "/up/etc/hostname") == b"covetest-inside\n"
    os.symlink("../../../../../../etc/passwd", root / "etc" / "rel")
    assert read(fs, "/etc/rel") == b"covetest-passwd\n"


def test_self_referencing_symlink_is_a_loop(fs: RootFS, root: Path) -> None:
    # Inside a root "etc -> /etc" points at itself; it must never reach the host.
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "hostname").unlink()
    (root / "etc").rmdir()
    os.symlink("/etc", root / "etc")
    with pytest.raises(BadRequest, match="symbolic links"):
        fs.open_read("/etc/passwd")
    with pytest.raises(BadRequest):
        fs.write_file("/etc/" + sentinel(), b"x")


def test_magic_links_are_refused(fs: RootFS, root: Path) -> None:
    # With a real procfs inside the root, /proc/self/root would jump to the
    # host's / (it is a magic link): RESOLVE_NO_MAGICLINKS must refuse it.
    (root / "proc").mkdir()
    mount("proc", root / "proc", "proc", 0, None)
    try:
        os.symlink("/proc/self/root/etc/os-release", root / "escape")
        with pytest.raises(BadRequest):
            fs.open_read("/escape")
        with pytest.raises(BadRequest):
            fs.open_read("/proc/self/root/etc/os-release")
        with pytest.raises(BadRequest):
            fs.write_file("/proc/self/cwd/" + sentinel(), b"x")
    finally:
        umount2(str(root / "proc"), MNT_DETACH)


def test_write_through_parent_symlink_to_slash_stays_inside(fs: RootFS, root: Path) -> None:
    name = sentinel()
    os.symlink("/", root / "slash")
    fs.write_file(f"/slash/{name}", b"data")
    assert (root / name).read_bytes() == b"data"
    assert not Path("/", name).exists()


def test_write_through_dangling_symlinks_creates_inside(fs: RootFS, root: Path) -> None:
    a, b = sentinel(), sentinel()
    os.symlink(f"/tmp/{a}", root / "abs")
    os.symlink(f"../../../../../../tmp/{b}", root / "etc" / "rel")
    fs.write_file("/abs", b"A")
    fs.write_file("/etc/rel", b"B")
    assert (root / "tmp" / a).read_bytes() == b"A"
    assert (root / "tmp" / b).read_bytes() == b"B"
    assert not Path("/tmp", a).exists() and not Path("/tmp", b).exists()
    assert os.path.islink(root / "abs")


def test_write_through_parent_symlink_to_host_dir(fs: RootFS, root: Path) -> None:
    name = sentinel()
    (root / "tmp").rmdir()
    os.symlink("/tmp", root / "hosttmp")
    with pytest.raises(NotFound):
        fs.write_file(f"/hosttmp/{name}", b"x")
    with pytest.raises((BadRequest, Conflict)):
        fs.write_file(f"/hosttmp/{name}", b"x", make_parents=True)
    assert not Path("/tmp", name).exists()


def test_write_to_existing_symlink_follows_it_inside(fs: RootFS, root: Path) -> None:
    os.symlink("/etc/passwd", root / "pw")
    fs.write_file("/pw", b"new\n")
    assert (root / "etc" / "passwd").read_bytes() == b"new\n"
    assert os.path.islink(root / "pw")


def test_symlink_loop_on_write(fs: RootFS, root: Path) -> None:
    os.symlink("/b", root / "a")
    os.symlink("/a", root / "b")
    with pytest.raises(BadRequest, match="symbolic links"):
        fs.write_file("/a", b"x")


# -- special files ------------------------------------------------------------


def test_device_nodes_are_never_opened(fs: RootFS, root: Path) -> None:
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "covetest-null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.symlink("/dev/covetest-null", root / "devlink")
    for path in ("/dev/covetest-null", "/devlink"):
        with pytest.raises(BadRequest, match="not a regular file"):
            fs.open_read(path)
        with pytest.raises(BadRequest, match="not a regular file"):
            fs.write_file(path, b"x")
    assert fs.stat("/dev/covetest-null").type == "other"


def test_fifo_is_refused_without_blocking(fs: RootFS, root: Path) -> None:
    os.mkfifo(root / "covetest-fifo")
    with pytest.raises(BadRequest, match="not a regular file"):
        fs.open_read("/covetest-fifo")
    with pytest.raises(BadRequest, match="not a regular file"):
        fs.write_file("/covetest-fifo", b"x")


def test_directories_are_not_files(fs: RootFS) -> None:
    with pytest.raises(BadRequest, match="not a regular file"):
        fs.open_read("/etc")
    with pytest.raises(BadRequest, match="is a directory"):
        fs.write_file("/etc", b"x")
    with pytest.raises(BadRequest, match="not a directory"):
        fs.listdir("/etc/passwd")


# -- writing --------------------------------------------------------------------


def test_new_file_defaults(fs: RootFS, root: Path) -> None:
    old = os.umask(0o077)
    try:
        fs.write_file("/etc/new", b"x")
    finally:
        os.umask(old)
    s = fs.stat("/etc/new")
    assert s == FileStat("file", 0, 0, 0o644, 1, s.mtime)


def test_owner_and_mode_applied(fs: RootFS, root: Path) -> None:
    fs.write_file("/tmp/suid", b"x", uid=1000, gid=1001, mode=0o4755)
    s = os.stat(root / "tmp" / "suid")
    assert (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)) == (1000, 1001, 0o4755)
    # Rewriting keeps owner and mode unless given.
    fs.write_file("/tmp/suid", b"yy")
    s2 = fs.stat("/tmp/suid")
    assert (s2.uid, s2.gid, s2.mode, s2.size) == (1000, 1001, 0o4755, 2)
    fs.write_file("/tmp/suid", b"z", gid=5, mode=0o600)
    s3 = fs.stat("/tmp/suid")
    assert (s3.uid, s3.gid, s3.mode) == (1000, 5, 0o600)

    fs.mkdir("/tmp/d", uid=7, gid=8, mode=0o1750)
    d = fs.stat("/tmp/d")
    assert (d.type, d.uid, d.gid, d.mode) == ("directory", 7, 8, 0o1750)
    fs.symlink("/tmp/l", "/nowhere", uid=9, gid=10)
    ls = os.lstat(root / "tmp" / "l")
    assert (ls.st_uid, ls.st_gid) == (9, 10)
    assert fs.readlink("/tmp/l") == "/nowhere"


def test_append_stream_and_hardlinks(fs: RootFS, root: Path) -> None:
    fs.write_file("/tmp/f", b"a")
    fs.write_file("/tmp/f", b"b", append=True)
    assert (root / "tmp" / "f").read_bytes() == b"ab"
    os.link(root / "tmp" / "f", root / "tmp" / "g")
    big = os.urandom((5 << 20) // 2)
    fs.write_file("/tmp/f", io.BytesIO(big))
    assert (root / "tmp" / "g").read_bytes() == big  # written in place


def test_failed_write_leaves_no_half_file(fs: RootFS, root: Path) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("source broke")
            return b"x" * 100

    with pytest.raises(RuntimeError):
        fs.write_file("/tmp/half", Broken())  # type: ignore[arg-type]
    assert not (root / "tmp" / "half").exists()


def test_make_parents(fs: RootFS, root: Path) -> None:
    with pytest.raises(NotFound):
        fs.write_file("/a/b/c", b"x")
    fs.write_file("/a/b/c", b"x", make_parents=True, uid=1000, gid=1000)
    assert (root / "a" / "b" / "c").read_bytes() == b"x"
    assert os.stat(root / "a" / "b").st_uid == 1000


def test_mkdir_rules(fs: RootFS, root: Path) -> None:
    fs.mkdir("/x")
    with pytest.raises(Conflict):
        fs.mkdir("/x")
    fs.mkdir("/x", exist_ok=True)
    with pytest.raises(NotFound):
        fs.mkdir("/p/q")
    fs.mkdir("/p/q", parents=True)
    assert (root / "p" / "q").is_dir()
    os.symlink("/etc", root / "e")
    fs.mkdir("/e/sub", parents=True)  # through a symlink, inside
    assert (root / "etc" / "sub").is_dir()
    with pytest.raises(Conflict):
        fs.mkdir("/etc/passwd", exist_ok=True)
    with pytest.raises(Conflict):
        fs.symlink("/x", "/y")


# -- reading ------------------------------------------------------------------


def test_stat_listdir_readlink(fs: RootFS, root: Path) -> None:
    os.symlink("hostname", root / "etc" / "hn")
    assert fs.listdir("/etc") == ["hn", "hostname", "passwd"]
    assert fs.readlink("/etc/hn") == "hostname"
    assert fs.stat("/etc/hn").type == "file"
    assert fs.stat("/etc/hn", follow=False).type == "symlink"
    assert fs.stat("/").type == "directory"
    with pytest.raises(BadRequest, match="not a symlink"):
        fs.readlink("/etc/passwd")
    with pytest.raises(NotFound):
        fs.stat("/nope")
    assert fs.exists("/etc") and not fs.exists("/nope")


def test_walk_does_not_follow_symlinks(fs: RootFS, root: Path) -> None:
    (root / "etc" / "d").mkdir()
    (root / "etc" / "d" / "f").write_text("x")
    os.symlink("/", root / "etc" / "d" / "loop")
    os.symlink(str(Path("/").resolve()), root / "etc" / "abs")
    entries = dict(fs.walk("/etc"))
    assert list(entries) == ["abs", "d", "d/f", "d/loop", "hostname", "passwd"]
    assert entries["d/loop"].type == "symlink"
    assert entries["d"].type == "directory"


# -- removing -----------------------------------------------------------------


def test_remove_rules(fs: RootFS, root: Path) -> None:
    with pytest.raises(BadRequest, match="root"):
        fs.remove("/")
    with pytest.raises(BadRequest, match="root"):
        fs.remove("/..")
    with pytest.raises(BadRequest, match="not empty"):
        fs.remove("/etc")
    os.symlink("/etc", root / "l")
    fs.remove("/l")  # the link, not the directory
    assert (root / "etc" / "passwd").exists()
    fs.remove("/etc/passwd")
    assert not (root / "etc" / "passwd").exists()
    with pytest.raises(NotFound):
        fs.remove("/etc/passwd")


def test_recursive_remove_does_not_follow_symlinks_out(
        fs: RootFS, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "covetest-outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("keep")
    d = root / "victim" / "deep"
    d.mkdir(parents=True)
    (d / "f").write_text("x")
    os.symlink(str(outside), d / "abs")
    os.symlink("../../../../covetest-outside", d / "rel")
    os.symlink(str(outside / "keep" / "file"), d / "filelink")
    fs.remove("/victim", recursive=True)
    assert not (root / "victim").exists()
    assert (outside / "keep" / "file").read_text() == "keep"


def test_recursive_remove_stops_at_mount_point(fs: RootFS, root: Path) -> None:
    mnt = root / "victim" / "mnt"
    mnt.mkdir(parents=True)
    mount("tmpfs", mnt, "tmpfs", 0, "size=1m")
    try:
        (mnt / "precious").write_text("x")
        with pytest.raises(BadRequest, match="mount point"):
            fs.remove("/victim", recursive=True)
        assert (mnt / "precious").exists()
    finally:
        umount2(str(mnt), MNT_DETACH)


def test_deep_trees_do_not_hit_recursion_limit(fs: RootFS, root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):  # deeper than Python's default recursion limit
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
    finally:
        os.close(fd)
    assert sum(1 for _ in fs.walk("/d")) == 1199
    fs.remove("/d", recursive=True)
    assert not (root / "d").exists()


# -- resources ------------------------------------------------------------------


def test_no_fd_leaks(root: Path) -> None:
    before = open_fds()
    with RootFS(root) as fs:
        os.mknod(root / "covetest-dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.symlink("/a", root / "b")
        os.symlink("/b", root / "a")
        calls = [
            lambda: fs.stat("/etc/passwd"), lambda: fs.stat("/nope"),
            lambda: os.close(fs.open_read("/etc/passwd")), lambda: fs.open_read("/covetest-dev"),
            lambda: fs.listdir("/etc"), lambda: fs.listdir("/nope"),
            lambda: fs.readlink("/b"), lambda: fs.readlink("/etc"),
            lambda: fs.write_file("/etc/x", b"x"), lambda: fs.write_file("/a", b"x"),
            lambda: fs.write_file("/nope/x", b"x"), lambda: fs.mkdir("/m", parents=True),
            lambda: fs.mkdir("/m"), lambda: fs.symlink("/s", "t"), lambda: fs.symlink("/s", "t"),
            lambda: fs.link("/h", "/etc/x"), lambda: fs.link("/h2", "/nope"),
            lambda: fs.set_attrs("/etc/x", uid=1, mode=0o600, mtime=1.0),
            lambda: fs.remove("/m"), lambda: fs.remove("/etc"),
            lambda: list(fs.walk("/")), lambda: next(iter(fs.walk("/"))),
            lambda: fs.subdir("/etc").close(), lambda: fs.mkfifo("/fifo"),
        ]
        for call in calls:
            try:
                call()
            except (BadRequest, NotFound, Conflict):
                pass
    assert open_fds() == before
