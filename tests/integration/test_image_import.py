"""Images through the real coved: plain rootfs tarballs, deleting one in use,
and hostile tarballs that must not write or link outside the image."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from covetest import Api, Coved, new_name, rand


def test_plain_rootfs_image_via_cli(coved: Coved, api: Api, busybox_plain_tar: Path) -> None:
    env = coved.cli_env()

    def cove(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=env,
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                           check=False)
        assert not check or p.returncode == 0, p.stderr
        return p

    alias = f"covetest-plain-{rand()}"
    cove("image", "import", str(busybox_plain_tar), "--alias", alias)
    fp = api.sync("GET", f"/1.0/images/aliases/{alias}")["target"]
    try:
        name = new_name("plain")
        api.launch(name, image=alias)
        assert api.sh(name, "cat /etc/hostname; id -un") == b"busybox\nroot\n"
        # LXD allows deleting an image in use (issue 9): the instance keeps its layers
        cove("image", "delete", alias)
        assert api.request("GET", f"/1.0/images/{fp}").status == 404
        assert (coved.root / "images" / fp / "rootfs").is_dir()
        assert api.sh(name, "cat /etc/hostname") == b"busybox\n"
        api.remove(name)
    finally:
        cove("image", "delete", alias, check=False)
    assert api.request("GET", f"/1.0/images/{fp}").status == 404
    assert not (coved.root / "images" / fp).exists()


# -- hostile tarballs -------------------------------------------------------------------

Member = Callable[[tarfile.TarFile, str], None]


def _meta(tar: tarfile.TarFile) -> None:
    data = b"architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: covetest\n"
    info = tarfile.TarInfo("metadata.yaml")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    d = tarfile.TarInfo("rootfs")
    d.type = tarfile.DIRTYPE
    d.mode = 0o755
    tar.addfile(d)
    for sub in ("rootfs/bin", "rootfs/dev", "rootfs/etc"):
        d = tarfile.TarInfo(sub)
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tar.addfile(d)


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"covetest\n") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def _hostile(victim: Path, tag: str) -> dict[str, Callable[[tarfile.TarFile], None]]:
    def dev(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("rootfs/dev/covetest-mem")
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 1
        tar.addfile(info)

    return {
        "dotdot": lambda t: _file(t, f"rootfs/../../../covetest-escape-{tag}"),
        "absolute": lambda t: _file(t, f"{victim}/covetest-abs-{tag}"),
        "symlink-then-write": lambda t: (_link(t, "rootfs/evil", str(victim)),
                                         _file(t, f"rootfs/evil/covetest-through-{tag}")),
        "relative-symlink-up": lambda t: (_link(t, "rootfs/up", "../../../../../../.."),
                                          _file(t, f"rootfs/up{victim}/covetest-up-{tag}")),
        "hardlink-outside": lambda t: _link(t, "rootfs/etc/hl", str(victim / "secret"),
                                            tarfile.LNKTYPE),
        "hardlink-dotdot": lambda t: _link(t, "rootfs/etc/hl2", "../../../../secret",
                                           tarfile.LNKTYPE),
        "device-node": dev,
        "file-over-symlinked-dir": lambda t: (_link(t, "rootfs/etc", str(victim)),
                                              _file(t, "rootfs/etc/secret", b"clobbered\n")),
    }


CASES = ["dotdot", "absolute", "symlink-then-write", "relative-symlink-up", "hardlink-outside",
         "hardlink-dotdot", "device-node", "file-over-symlinked-dir"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_image_tarball(coved: Coved, api: Api, tmp_path: Path, case: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_bytes(b"host secret\n")
    secret_ino = (victim / "secret").stat().st_ino
    tag = rand()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _meta(tar)
        _hostile(victim, tag)[case](tar)
        _file(tar, "rootfs/bin/covetest-marker", tag.encode())
    images_before = sorted(os.listdir(coved.root / "images"))
    tmp_before = sorted(os.listdir(coved.root / "tmp"))

    r = api.request("POST", "/1.0/images", buf.getvalue(),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status in (202, 400), r.body
    fp = None
    if r.status == 202:
        op = api.wait(r)
        if op["status"] == "Success":
            fp = op["metadata"]["fingerprint"]
        else:
            assert op["status"] == "Failure" and op["err"], op

    try:
        # the host is untouched
        assert sorted(os.listdir(victim)) == ["secret"]
        assert (victim / "secret").read_bytes() == b"host secret\n"
        assert (victim / "secret").stat().st_nlink == 1
        for where in (coved.root, coved.root.parent, Path("/")):
            assert not (where / f"covetest-escape-{tag}").exists()
        found = subprocess.run(["find", str(coved.root), "-xdev"], capture_output=True,
                               text=True, check=True).stdout.split("\n")
        image_dir = str(coved.root / "images" / fp) + "/" if fp else None
        for path in filter(None, found):
            if tag in os.path.basename(path):
                assert image_dir and path.startswith(image_dir), f"{path} outside the image"
            st = os.lstat(path)
            assert not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)), path
            assert st.st_ino != secret_ino or st.st_dev != (victim / "secret").stat().st_dev
        if fp is None:  # refused: nothing half-made stays
            assert sorted(os.listdir(coved.root / "images")) == images_before
        assert sorted(os.listdir(coved.root / "tmp")) == tmp_before
    finally:
        if fp:
            api.run("DELETE", f"/1.0/images/{fp}")
    assert sorted(os.listdir(coved.root / "images")) == images_before
