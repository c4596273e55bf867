"""Instance backups against a real coved: the REST endpoints, ``lxc
export``/``lxc import`` unchanged, hostile tarballs and coved killed half-way."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from covetest import Api, assert_no_leaks, mkroot, mounts_under, new_name

LXC = shutil.which("lxc")


def _tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return tar.getnames()


def _member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def _export(api: Api, name: str, backup: str) -> bytes:
    r = api.request("GET", f"/1.0/instances/{name}/backups/{backup}/export")
    assert r.status == 200, r.body[:300]
    assert r.headers["content-type"] == "application/octet-stream"
    assert int(r.headers["content-length"]) == len(r.body)
    return r.body


def _import(api: Api, data: bytes, name: str = "", **headers: str) -> Any:
    hdrs = {"Content-Type": "application/octet-stream", **headers}
    if name:
        hdrs["X-LXD-name"] = name
    return api.request("POST", "/1.0/instances", data, headers=hdrs)


def _files_under(root: Path, sub: str) -> list[str]:
    d = root / sub
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_backup_rest_lifecycle_and_import(api: Api, coved) -> None:  # type: ignore[no-untyped-def]
    name, copy = new_name("bk"), new_name("bkc")
    api.create(name)
    api.made.append(copy)
    api.file_put(name, "/root/covetest-file", b"before the snapshot\n")
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"})
    api.file_put(name, "/root/covetest-file", b"after the snapshot\n")

    # bad input: 400 naming the problem, nothing made
    r = api.request("POST", f"/1.0/instances/{name}/backups", {"name": "a/b"})
    assert r.status == 400 and "slashes" in r.error, r.body
    r = api.request("POST", f"/1.0/instances/{name}/backups",
                    {"compression_algorithm": "zzz"})
    assert r.status == 400 and "compression_algorithm" in r.error, r.body
    r = api.request("POST", f"/1.0/instances/{name}/backups", {"expires_at": "tomorrow"})
    assert r.status == 400 and "expires_at" in r.error, r.body
    assert api.sync("GET", f"/1.0/instances/{name}/backups") == []

    op = api.run("POST", f"/1.0/instances/{name}/backups",
                 {"expires_at": "2099-01-01T00:00:00Z"})
    assert op["resources"]["backups"] == ["/1.0/backups/backup0"]  # as LXD 5.0 names it
    assert api.sync("GET", f"/1.0/instances/{name}/backups") == [
        f"/1.0/instances/{name}/backups/backup0"]
    [obj] = api.sync("GET", f"/1.0/instances/{name}/backups?recursion=1")
    assert obj["name"] == "backup0" and obj["expires_at"] == "2099-01-01T00:00:00Z"
    assert set(obj) == {"name", "created_at", "expires_at", "instance_only", "container_only",
                        "optimized_storage"}
    assert api.sync("GET", f"/1.0/instances/{name}/backups/backup0") == obj

    data = _export(api, name, "backup0")
    names = _tar_names(data)
    assert names[0] == "backup/index.yaml"
    assert names.index("backup/snapshots/s1") < names.index("backup/container")
    # flattened: the image's files and the upper layer's, in both trees
    for tree in ("backup/container/rootfs", "backup/snapshots/s1/rootfs"):
        assert f"{tree}/bin/busybox" in names and f"{tree}/root/covetest-file" in names
    assert _member(data, "backup/container/rootfs/root/covetest-file") == b"after the snapshot\n"
    assert _member(data, "backup/snapshots/s1/rootfs/root/covetest-file") == \
        b"before the snapshot\n"
    index = yaml.safe_load(_member(data, "backup/index.yaml"))
    assert index["name"] == name and index["snapshots"] == ["s1"]
    assert index["backend"] == "dir" and index["type"] == "container"
    assert index["config"]["container"]["name"] == name
    conf = yaml.safe_load(_member(data, "backup/container/backup.yaml"))
    assert [s["name"] for s in conf["snapshots"]] == ["s1"]

    api.run("POST", f"/1.0/instances/{name}/backups/backup0", {"name": "renamed"})
    assert api.sync("GET", f"/1.0/instances/{name}/backups") == [
        f"/1.0/instances/{name}/backups/renamed"]
    api.run("POST", f"/1.0/instances/{name}/backups",
            {"name": "only", "instance_only": True, "compression_algorithm": "xz"})
    only = _export(api, name, "only")
    assert only.startswith(b"\xfd7zXZ\x00")
    assert not any(n.startswith("backup/snapshots") for n in _tar_names(only))

    # the import: a new instance, its files and snapshot, stopped, no image
    op = api.wait(_import(api, data, copy))
    assert op["status"] == "Success", op
    inst = api.instance(copy)
    assert inst["status"] == "Stopped"
    assert api.file_get(copy, "/root/covetest-file").body == b"after the snapshot\n"
    snaps = api.sync("GET", f"/1.0/instances/{copy}/snapshots")
    assert snaps == [f"/1.0/instances/{copy}/snapshots/s1"]
    api.run("PUT", f"/1.0/instances/{copy}", {"restore": "s1"})
    assert api.file_get(copy, "/root/covetest-file").body == b"before the snapshot\n"
    api.action(copy, "start")
    assert api.exec(copy, ["cat", "/root/covetest-file"])[1] == b"before the snapshot\n"
    api.action(copy, "stop", force=True)

    # the same name again: 409 before anything is read further
    r = _import(api, data, copy)
    assert r.status == 409, r.body
    r = _import(api, data, new_name("bkp"), **{"X-LXD-pool": "nosuchpool"})
    assert r.status == 404 and "nosuchpool" in r.error, r.body

    api.run("DELETE", f"/1.0/instances/{name}/backups/renamed")
    api.run("DELETE", f"/1.0/instances/{name}/backups/only")
    assert api.sync("GET", f"/1.0/instances/{name}/backups") == []
    assert _files_under(coved.root / "instances" / name, "backups") == []
    assert not list((coved.root / "tmp").iterdir())


def test_backup_follows_instance_rename_and_delete(api: Api, coved) -> None:  # type: ignore[no-untyped-def]
    name, new = new_name("bkr"), new_name("bkr")
    api.create(name)
    api.made.append(new)
    api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b"})
    api.run("POST", f"/1.0/instances/{name}", {"name": new})
    assert api.sync("GET", f"/1.0/instances/{new}/backups") == [
        f"/1.0/instances/{new}/backups/b"]
    assert _export(api, new, "b").startswith(b"\x1f\x8b")
    api.remove(new)
    api.create(new)  # the name again: no backups inherited
    assert api.sync("GET", f"/1.0/instances/{new}/backups") == []


def test_backup_of_running_instance(api: Api) -> None:
    name = new_name("bkrun")
    api.launch(name)
    api.exec(name, ["sh", "-c", "echo live > /root/covetest-live"])
    api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b"})
    assert api.status(name) == "Running"  # thawed after the copy
    data = _export(api, name, "b")
    assert _member(data, "backup/container/rootfs/root/covetest-live") == b"live\n"


def test_backup_expiry_removed_by_coved(api: Api, coved) -> None:  # type: ignore[no-untyped-def]
    name = new_name("bkx")
    api.create(name)
    api.run("POST", f"/1.0/instances/{name}/backups",
            {"name": "old", "expires_at": "2001-01-01T00:00:00Z"})
    api.run("POST", f"/1.0/instances/{name}/backups", {"name": "kept"})
    coved.restart()  # the expiry task runs at start, then every minute
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = api.sync("GET", f"/1.0/instances/{name}/backups")
        if left == [f"/1.0/instances/{name}/backups/kept"]:
            break
        time.sleep(0.1)
    assert left == [f"/1.0/instances/{name}/backups/kept"]


# -- hostile tarballs ---------------------------------------------------------------------------

def _index(name: str = "covetest-evil", snapshots: list[str] | None = None) -> bytes:
    doc: dict[str, Any] = {"name": name, "backend": "dir", "pool": "default",
                           "optimized": False, "optimized_header": False, "type": "container",
                           "config": {"container": {"name": name, "config": {}, "devices": {},
                                                    "profiles": ["default"],
                                                    "architecture": "x86_64"}}}
    if snapshots:
        doc["snapshots"] = snapshots
    return yaml.safe_dump(doc).encode()


def _tarball(members: list[tuple[tarfile.TarInfo, bytes | None]], *,
             index: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ti = tarfile.TarInfo("backup/index.yaml")
        idx = _index() if index is None else index
        ti.size = len(idx)
        tar.addfile(ti, io.BytesIO(idx))
        for d in ("backup", "backup/container", "backup/container/rootfs"):
            dti = tarfile.TarInfo(d)
            dti.type, dti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(dti)
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti, None


R = "backup/container/rootfs"


def _hostile_cases(outside: Path) -> dict[str, tuple[bytes, str | None]]:
    dev = tarfile.TarInfo(f"{R}/dev/covetest-sda")
    dev.type, dev.devmajor, dev.devminor = tarfile.BLKTYPE, 8, 0
    lying = bytearray(_tarball([_file(f"{R}/big", b"y" * 100_000)]))
    raw = gzip.decompress(bytes(lying))
    return {
        "dotdot": (_tarball([_file(f"{R}/../../../{outside.name}")]), ".."),
        "absolute-dotdot": (_tarball([_file(f"/{R}/../../x")]), ".."),
        # refused: a write through a symlink is never followed out of the rootfs
        "symlink-then-write": (_tarball([
            _link(f"{R}/evil", str(outside.parent), tarfile.SYMTYPE),
            _file(f"{R}/evil/{outside.name}")]), "evil/covetest-outside"),
        "hardlink-outside": (_tarball([_link(f"{R}/h", str(outside), tarfile.LNKTYPE)]), "h"),
        "hardlink-dotdot": (_tarball([_link(f"{R}/h", f"{R}/../../../etc/passwd",
                                            tarfile.LNKTYPE)]), ".."),
        "stray-member": (_tarball([_file("backup/elsewhere/x")]), "backup/elsewhere/x"),
        "index-name": (_tarball([], index=_index("../../x")), "name"),
        "snapshot-slash": (_tarball([], index=_index(snapshots=["a/b"])), "a/b"),
        "unlisted-snapshot": (_tarball([_file("backup/snapshots/zz/rootfs/x")]), "zz"),
        "truncated": (_tarball([_file(f"{R}/big", os.urandom(200_000))])[:-5000], ""),
        "lying-size": (gzip.compress(raw[: len(raw) // 2]), ""),
        "device-skipped": (_tarball([(dev, None)]), None),
    }


def test_import_hostile_tarballs(api: Api, coved) -> None:  # type: ignore[no-untyped-def]
    outside = mkroot("bkout") / "covetest-outside"
    outside.write_bytes(b"host file\n")
    try:
        for case, (data, needle) in _hostile_cases(outside).items():
            name = new_name("bkh")
            api.made.append(name)
            r = _import(api, data, "" if case == "index-name" else name)
            if needle is None:  # accepted, harmlessly
                op = api.wait(r)
                assert op["status"] == "Success", (case, op.get("err"))
                assert api.file_get(name, "/dev/covetest-sda").status == 404, case
                api.remove(name)
                assert outside.read_bytes() == b"host file\n", case
                assert sorted(os.listdir(outside.parent)) == ["covetest-outside"], case
                continue
            if r.status == 202:
                op = api.wait(r)
                assert op["status"] == "Failure", (case, op)
                err = op["err"]
            else:
                assert r.status == 400, (case, r.status, r.body[:300])
                err = r.error
            assert needle in err, (case, err)
            assert api.request("GET", f"/1.0/instances/{name}").status == 404, case
            assert outside.read_bytes() == b"host file\n", case
            assert sorted(os.listdir(outside.parent)) == ["covetest-outside"], case
            assert not list((coved.root / "tmp").iterdir()), case
        assert not mounts_under(coved.root / "tmp")
    finally:
        shutil.rmtree(outside.parent, ignore_errors=True)


def test_import_bomb_refused_by_cap(api: Api, coved) -> None:  # type: ignore[no-untyped-def]
    api.sync("PATCH", "/1.0", {"config": {"cove.images.max_size": "1MiB"}})
    try:
        name = new_name("bkb")
        api.made.append(name)
        ti, data = _file(f"{R}/zeros", bytes(20 << 20))  # 20 MiB of zeros, ~20 KiB packed
        op = api.wait(_import(api, _tarball([(ti, data)]), name))
        assert op["status"] == "Failure" and "zeros" in op["err"] and "1048576" in op["err"], op
        assert api.request("GET", f"/1.0/instances/{name}").status == 404
        assert not list((coved.root / "tmp").iterdir())
    finally:
        api.sync("PATCH", "/1.0", {"config": {"cove.images.max_size": ""}})


# -- coved killed half-way ---------------------------------------------------------------------

@pytest.mark.parametrize("point", ["backup.after-copy", "backup.after-tar",
                                   "backup.after-rename"])
def test_backup_create_killed(make_coved, busybox_tar: Path, point: str) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("bkkill", failpoints=point)  # armed: arm() needs no restart
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("bkk")
    d.api.create(name)
    d.api.file_put(name, "/root/covetest-f", b"source\n")
    upper = d.root / "instances" / name / "upper"
    before = sorted(str(p.relative_to(upper)) for p in upper.rglob("*"))
    d.arm(point)
    d.api.request("POST", f"/1.0/instances/{name}/backups", {"name": "b"})
    d.revive()
    assert d.api.sync("GET", f"/1.0/instances/{name}/backups") == []
    idir = d.root / "instances" / name
    assert _files_under(idir, "backups") == []
    assert not [p for p in idir.iterdir() if p.name.startswith(".backup-")]
    assert not mounts_under(idir)
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == before
    assert d.api.file_get(name, "/root/covetest-f").body == b"source\n"
    d.api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b"})  # works after
    d.api.remove(name)
    assert_no_leaks(d.root, [name])


@pytest.mark.parametrize("point", ["backup-import.after-unpack", "backup-import.after-begin",
                                   "backup-import.after-rows"])
def test_backup_import_killed(make_coved, busybox_tar: Path, point: str) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("bkikill", failpoints=point)  # armed: arm() needs no restart
    d.api.import_image(busybox_tar, "busybox")
    name, copy = new_name("bki"), new_name("bki")
    d.api.create(name)
    d.api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"})
    d.api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b"})
    data = _export(d.api, name, "b")
    d.arm(point)
    _import(d.api, data, copy)
    d.revive()
    assert d.api.request("GET", f"/1.0/instances/{copy}").status == 404
    assert not (d.root / "instances" / copy).exists()
    assert not list((d.root / "tmp").iterdir())
    op = d.api.wait(_import(d.api, data, copy))  # and it works after
    assert op["status"] == "Success", op
    assert d.api.sync("GET", f"/1.0/instances/{copy}/snapshots") == [
        f"/1.0/instances/{copy}/snapshots/s1"]
    d.api.remove(copy)
    d.api.remove(name)
    assert_no_leaks(d.root, [name, copy])


# -- lxc, unchanged -----------------------------------------------------------------------------

@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_export_import(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("bklxc")
    d.api.import_image(busybox_tar, "busybox")
    home = mkroot("bklxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}

    def lxc(*args: str) -> bytes:
        p = subprocess.run([LXC, *args], env=env, capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, check=False)
        assert p.returncode == 0, f"lxc {' '.join(args)}: {p.stderr.decode(errors='replace')}"
        return p.stdout

    try:
        lxc("remote", "add", "covetest-r", f"unix://{d.socket}")
        name, copy = new_name("bkl"), new_name("bkl")
        d.api.create(name)
        d.api.file_put(name, "/root/covetest-f", b"via lxc\n")
        lxc("snapshot", f"covetest-r:{name}", "s1")
        out = home / "covetest-export.tar.gz"
        lxc("export", f"covetest-r:{name}", str(out))
        assert _tar_names(out.read_bytes())[0] == "backup/index.yaml"
        assert d.api.sync("GET", f"/1.0/instances/{name}/backups") == []  # lxc deleted it
        lxc("export", f"covetest-r:{name}", str(home / "covetest-only.tar"),
            "--instance-only", "--compression", "none")
        assert not any(n.startswith("backup/snapshots")
                       for n in _tar_names((home / "covetest-only.tar").read_bytes()))
        lxc("import", "covetest-r:", str(out), copy, "--storage", "default")
        assert d.api.file_get(copy, "/root/covetest-f").body == b"via lxc\n"
        assert d.api.sync("GET", f"/1.0/instances/{copy}/snapshots") == [
            f"/1.0/instances/{copy}/snapshots/s1"]
        d.api.remove(copy)
        p = subprocess.run([LXC, "import", "covetest-r:", str(out)], env=env,  # type: ignore[list-item]
                           capture_output=True, timeout=120, check=False)
        assert p.returncode != 0 and b"already exists" in p.stderr, p.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
    d.api.remove(name)


@pytest.mark.parametrize("point", ["backup-apply.after-old"])
def test_increment_apply_killed(make_coved, busybox_tar: Path, point: str) -> None:  # type: ignore[no-untyped-def]
    """Killed between the swap's renames: the next coved finishes the swap
    (the snapshot sweep), and applying the same increment again completes
    the chain (its id), changing no file."""
    d = make_coved("bkapply", failpoints=point)  # armed: arm() needs no restart
    d.api.import_image(busybox_tar, "busybox")
    name, copy = new_name("bka"), new_name("bka")
    d.api.create(name)
    d.api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b0"})
    base = _export(d.api, name, "b0")
    d.api.file_put(name, "/root/covetest-new", b"increment\n")
    d.api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b1", "cove_since": "b0"})
    incr = _export(d.api, name, "b1")
    assert d.api.wait(_import(d.api, base, copy))["status"] == "Success"
    d.arm(point)
    _import(d.api, incr, copy)
    d.revive()
    idir = d.root / "instances" / copy
    assert (idir / "upper").is_dir()
    assert not (idir / ".restore-new").exists() and not (idir / ".restore-old").exists()
    assert d.api.file_get(copy, "/root/covetest-new").body == b"increment\n"
    op = d.api.wait(_import(d.api, incr, copy))
    assert op["status"] == "Success", op
    assert d.api.file_get(copy, "/root/covetest-new").body == b"increment\n"
    assert not list((d.root / "tmp").iterdir())
    d.api.remove(copy)
    d.api.remove(name)
    assert_no_leaks(d.root, [name, copy])


def test_backup_in_a_project_and_its_limits(api: Api, coved) -> None:  # type: ignore[no-untyped-def]
    project = "covetest-bkp" + new_name()[-6:]
    api.sync("POST", "/1.0/projects", {"name": project, "config": {
        "limits.instances": "1", "features.images": "false", "features.profiles": "false"}})
    name, other = new_name("bkp"), new_name("bkp")
    q = f"?project={project}"
    try:
        api.run("POST", f"/1.0/instances{q}", {"name": name,
                                               "source": {"type": "image", "alias": "busybox"}})
        api.run("POST", f"/1.0/instances/{name}/backups{q}", {"name": "b"})
        r = api.request("GET", f"/1.0/instances/{name}/backups/b/export{q}")
        assert r.status == 200
        assert api.request("GET", f"/1.0/instances/{name}/backups/b").status == 404
        # the project holds one instance already: the import is refused, nothing left
        op = api.wait(api.request("POST", f"/1.0/instances{q}", r.body, headers={
            "Content-Type": "application/octet-stream", "X-LXD-name": other}))
        assert op["status"] == "Failure" and "maximum number of instances" in op["err"], op
        assert api.request("GET", f"/1.0/instances/{other}{q}").status == 404
        assert not (coved.root / "instances" / f"{project}_{other}").exists()
        api.sync("PATCH", f"/1.0/projects/{project}", {"config": {"limits.instances": "2"}})
        op = api.wait(api.request("POST", f"/1.0/instances{q}", r.body, headers={
            "Content-Type": "application/octet-stream", "X-LXD-name": other}))
        assert op["status"] == "Success", op
        assert api.sync("GET", f"/1.0/instances/{other}{q}")["project"] == project
        assert (coved.root / "instances" / f"{project}_{other}" / "upper" / "bin").is_dir()
    finally:
        for n in (name, other):
            r = api.request("DELETE", f"/1.0/instances/{n}{q}")
            if r.status == 202:
                api.wait(r)
        api.request("DELETE", f"/1.0/projects/{project}")
