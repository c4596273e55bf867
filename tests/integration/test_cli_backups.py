"""``cove export``, ``cove import`` and ``cove backup`` against a real coved,
as a user runs them (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import tarfile

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


