"""``cove export``, ``cove import`` and ``cove backup`` against a real coved,
as a user runs them (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from covetest import Api, Coved, mkroot, new_name


def _cove(coved: Coved, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=coved.cli_env(),
                       capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, f"cove {' '.join(args)}: {p.stderr.decode(errors='replace')}"
    return p


def test_cli_export_import_backup(api: Api, coved: Coved) -> None:
    name, copy = new_name("clibk"), new_name("clibk")
    api.create(name)
    api.made.append(copy)
    api.file_put(name, "/root/covetest-f", b"from the cli\n")
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"})
    work = mkroot("clibk")
    try:
        out = work / "c.tar.xz"
        p = _cove(coved, "export", name, str(out), "--compression", "xz")
        assert b"Backup exported to" in p.stdout
        assert not (work / "c.tar.xz.part").exists()
        with tarfile.open(out) as tar:
            names = tar.getnames()
        assert names[0] == "backup/index.yaml" and "backup/snapshots/s1" in names
        assert api.sync("GET", f"/1.0/instances/{name}/backups") == []  # deleted after
        _cove(coved, "import", str(out), copy)
        assert api.file_get(copy, "/root/covetest-f").body == b"from the cli\n"
        assert api.sync("GET", f"/1.0/instances/{copy}/snapshots") == [
            f"/1.0/instances/{copy}/snapshots/s1"]

        p = _cove(coved, "import", str(out), copy, check=False)  # taken: one clean error
        err = p.stderr.decode()
        assert p.returncode == 1 and "already exists" in err and "Traceback" not in err, err
        bad = work / "not-a-backup.tar.gz"
        bad.write_bytes(b"\x1f\x8b garbage")
        p = _cove(coved, "import", str(bad), new_name("clibk"), check=False)
        assert p.returncode == 1 and "Traceback" not in p.stderr.decode(), p.stderr
        p = _cove(coved, "export", "covetest-nosuch", str(work / "x.tar.gz"), check=False)
        assert p.returncode == 1 and "not found" in p.stderr.decode().lower(), p.stderr
        assert not (work / "x.tar.gz").exists() and not (work / "x.tar.gz.part").exists()

        api.run("POST", f"/1.0/instances/{name}/backups", {"name": "kept"})
        assert b"kept" in _cove(coved, "backup", "list", name).stdout
        _cove(coved, "backup", "rename", name, "kept", "kept2")
        assert b"kept2" in _cove(coved, "backup", "list", name, "--format", "csv").stdout
        _cove(coved, "backup", "delete", name, "kept2")
        assert api.sync("GET", f"/1.0/instances/{name}/backups") == []
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)




def _names(path: Path, prefix: str = "backup/container/rootfs/") -> set[str]:
    with tarfile.open(path) as tar:
        return {n[len(prefix):] for n in tar.getnames() if n.startswith(prefix)}


def test_incremental_chain(api: Api, coved: Coved) -> None:
    import yaml

    name, copy = new_name("incr"), new_name("incr")
    api.create(name)
    api.made.append(copy)
    api.file_put(name, "/root/a", b"a1\n")
    api.file_put(name, "/root/b", b"b\n")
    api.request("POST", f"/1.0/instances/{name}/files?path=/root/d",
                headers={"X-LXD-type": "directory"})
    api.file_put(name, "/root/d/f", b"in a dir\n")
    work = mkroot("incr")
    try:
        _cove(coved, "export", name, str(work / "base.tar.gz"), "--keep", "b0")
        assert api.sync("GET", f"/1.0/instances/{name}/backups") == [
            f"/1.0/instances/{name}/backups/b0"]
        api.file_put(name, "/root/a", b"a2, changed\n")
        api.file_put(name, "/root/new", b"new\n")
        assert api.request("DELETE", f"/1.0/instances/{name}/files?path=/root/b").status == 200
        assert api.request("DELETE",
                           f"/1.0/instances/{name}/files?path=/etc/inittab").status == 200
        assert api.request("DELETE", f"/1.0/instances/{name}/files?path=/root/d/f").status \
            == 200
        assert api.request("DELETE", f"/1.0/instances/{name}/files?path=/root/d").status == 200
        api.file_put(name, "/root/d", b"now a file\n")  # a directory that became a file
        _cove(coved, "export", name, str(work / "i1.tar.gz"), "--since", "b0", "--keep", "b1")
        got = _names(work / "i1.tar.gz")
        assert {"root/a", "root/new"} <= got and "bin/busybox" not in got, got
        with tarfile.open(work / "i1.tar.gz") as tar:
            f = tar.extractfile("backup/index.yaml")
            assert f is not None
            index = yaml.safe_load(f.read())
        assert set(index["cove_deleted"]) == {"root/b", "etc/inittab", "root/d/f"}
        assert index["cove_since"] and index["cove_backup_id"] != index["cove_since"]
        assert (work / "i1.tar.gz").stat().st_size * 10 < (work / "base.tar.gz").stat().st_size
        assert api.request("DELETE", f"/1.0/instances/{name}/files?path=/root/new").status == 200
        _cove(coved, "export", name, str(work / "i2.tar.gz"), "--since", "b1")

        _cove(coved, "import", str(work / "base.tar.gz"), copy)
        p = _cove(coved, "import", str(work / "i2.tar.gz"), copy, check=False)  # out of order
        assert p.returncode == 1 and "in order" in p.stderr.decode(), p.stderr
        _cove(coved, "import", str(work / "i1.tar.gz"), copy)
        assert api.file_get(copy, "/root/a").body == b"a2, changed\n"
        assert api.file_get(copy, "/root/new").body == b"new\n"
        assert api.file_get(copy, "/root/b").status == 404
        assert api.file_get(copy, "/root/d").body == b"now a file\n"
        _cove(coved, "import", str(work / "i2.tar.gz"), copy)
        assert api.file_get(copy, "/root/new").status == 404
        # the whole trees agree: a full export of each
        _cove(coved, "export", name, str(work / "full-src.tar.gz"))
        _cove(coved, "export", copy, str(work / "full-copy.tar.gz"))
        assert _names(work / "full-src.tar.gz") == _names(work / "full-copy.tar.gz")
        assert "etc/inittab" not in _names(work / "full-copy.tar.gz")
        api.action(copy, "start")
        assert api.exec(copy, ["cat", "/root/a"])[1] == b"a2, changed\n"
        api.action(copy, "stop", force=True)
        # a running target, and an instance not imported, are refused
        p = _cove(coved, "import", str(work / "i1.tar.gz"), name, check=False)
        assert p.returncode == 1 and "not imported from a backup" in p.stderr.decode()
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
