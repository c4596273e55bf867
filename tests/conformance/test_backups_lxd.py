"""Backups across cove and a real LXD: a backup made by cove imports into
LXD (``lxc import``), and one made by LXD (``lxc export``) imports into
cove, files and snapshots included. Names in LXD are ``covetest*``."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from covetest import Api
from lxdhost import IMAGE, POOL, LxdHost


def _lxc(lxd: LxdHost, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LXD_CONF": str(lxd.lxd_conf),
           "HOME": str(lxd.workdir), "LANG": "C.UTF-8"}
    p = subprocess.run(["lxc", *args], env=env, capture_output=True, timeout=180,
                       stdin=subprocess.DEVNULL, check=False)
    if check:
        assert p.returncode == 0, f"lxc {' '.join(args)}: {p.stderr.decode(errors='replace')}"
    return p


@pytest.fixture
def both(cove_host: Any, lxd_host: LxdHost | str, workdir: Path) -> Any:
    if isinstance(lxd_host, str):
        pytest.skip(lxd_host)
    api = Api(str(cove_host.coved.socket))
    made: list[str] = []
    yield api, lxd_host, made
    for name in made:
        api.remove(name)
        _lxc(lxd_host, "delete", "--force", name, check=False)


def test_cove_backup_imports_into_lxd(both: Any, workdir: Path) -> None:
    api, lxd, made = both
    name = f"covetest-bkc-{secrets.token_hex(3)}"
    made.append(name)
    api.create(name, image=IMAGE)
    api.file_put(name, "/root/covetest-f", b"made by cove\n")
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s1"})
    api.file_put(name, "/root/covetest-f", b"made by cove, later\n")
    api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b"})
    r = api.request("GET", f"/1.0/instances/{name}/backups/b/export")
    assert r.status == 200
    tarball = workdir / f"{name}.tar.gz"
    tarball.write_bytes(r.body)
    try:
        _lxc(lxd, "import", str(tarball), "--storage", POOL)
    finally:
        tarball.unlink()
    out = _lxc(lxd, "file", "pull", f"{name}/root/covetest-f", "-").stdout
    assert out == b"made by cove, later\n"
    info = _lxc(lxd, "query", f"/1.0/instances/{name}/snapshots").stdout
    assert f"/1.0/instances/{name}/snapshots/s1".encode() in info
    _lxc(lxd, "restore", name, "s1")
    assert _lxc(lxd, "file", "pull", f"{name}/root/covetest-f", "-").stdout == \
        b"made by cove\n"


def test_lxd_backup_imports_into_cove(both: Any, workdir: Path) -> None:
    api, lxd, made = both
    name = f"covetest-bkl-{secrets.token_hex(3)}"
    made.append(name)
    _lxc(lxd, "init", IMAGE, name, "-s", POOL)
    src = workdir / f"{name}.txt"
    src.write_bytes(b"made by lxd\n")
    _lxc(lxd, "file", "push", str(src), f"{name}/root/covetest-f")
    _lxc(lxd, "snapshot", name, "s1")
    _lxc(lxd, "file", "delete", f"{name}/root/covetest-f")
    tarball = workdir / f"{name}.tar.gz"
    _lxc(lxd, "export", name, str(tarball))
    try:
        r = api.request("POST", "/1.0/instances", tarball.read_bytes(),
                        headers={"Content-Type": "application/octet-stream"})
    finally:
        tarball.unlink()
        src.unlink()
    op = api.wait(r)
    assert op["status"] == "Success", op
    inst = api.instance(name)
    assert inst["devices"]["root"]["pool"] == "default"  # moved to cove's pool, as LXD does
    assert api.file_get(name, "/root/covetest-f").status == 404
    assert api.sync("GET", f"/1.0/instances/{name}/snapshots") == [
        f"/1.0/instances/{name}/snapshots/s1"]
    api.run("PUT", f"/1.0/instances/{name}", {"restore": "s1"})
    assert api.file_get(name, "/root/covetest-f").body == b"made by lxd\n"
    api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    assert api.exec(name, ["cat", "/root/covetest-f"])[1] == b"made by lxd\n"
