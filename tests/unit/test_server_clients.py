"""coved against the real clients it must satisfy unchanged: pylxd (in
process) and ``lxc`` (Debian lxd-client 5.0), over a real unix socket, with
the fake engine behind it."""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pylxd
import pytest
from test_server_fakes import FakeEngine, FakeFile, serve_unix, short_socket_path

from cove.model.states import Status

FP = "ab" * 32


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add("c1")
    f.add("c2", Status.STOPPED)
    f.add_image(FP, "busybox")
    f.access.files[("c1", "/etc")] = FakeFile("directory", mode=0o755)
    f.access.files[("c1", "/etc/hostname")] = FakeFile("file", b"c1\n", mode=0o644)
    return f


@pytest.fixture
def socket_path(fake: FakeEngine, tmp_path: Path) -> Iterator[Path]:
    with serve_unix(fake, short_socket_path(tmp_path)) as path:
        yield path


@pytest.fixture
def client(socket_path: Path) -> pylxd.Client:
    return pylxd.Client(endpoint=str(socket_path))


# -- pylxd ---------------------------------------------------------------------------

def test_pylxd_connects_and_lists(client: pylxd.Client) -> None:
    assert client.trusted and not client.server_clustered
    assert client.has_api_extension("file_delete")
    names = sorted(i.name for i in client.instances.all())
    assert names == ["c1", "c2"]
    c1 = client.instances.get("c1")
    assert c1.status == "Running" and c1.type == "container"
    assert c1.state().status == "Running"
    assert client.containers.get("c2").status == "Stopped"
    assert client.instances.exists("c1") and not client.instances.exists("ghost")
    assert [p.name for p in client.profiles.all()] == ["default"]


def test_pylxd_execute(client: pylxd.Client, fake: FakeEngine) -> None:
    c1 = client.instances.get("c1")
    res = c1.execute(["echo", "hello", "world"])
    assert (res.exit_code, res.stdout, res.stderr) == (0, "hello world\n", "")
    res = c1.execute(["fail"])
    assert (res.exit_code, res.stdout, res.stderr) == (3, "some out\n", "boom\n")
    res = c1.execute(["cat"], stdin_payload="from stdin\n")
    assert (res.exit_code, res.stdout) == (0, "from stdin\n")
    res = c1.execute(["big", str(1 << 20)])
    assert res.exit_code == 0 and len(res.stdout) == 1 << 20
    res = c1.execute(["env"], environment={"A": "b"}, user=1000, cwd="/srv")
    assert '"user": 1000' in res.stdout and '"cwd": "/srv"' in res.stdout
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="not running"):
        client.instances.get("c2").execute(["echo"])


def test_pylxd_lifecycle(client: pylxd.Client, fake: FakeEngine) -> None:
    inst = client.instances.create(
        {"name": "web", "source": {"type": "image", "alias": "busybox"},
         "config": {"limits.cpu": "1"}}, wait=True)
    assert inst.status == "Stopped"
    inst.start(wait=True)
    assert inst.status == "Running"
    inst.config["limits.memory"] = "64MB"
    inst.save(wait=True)
    assert fake.instances.by_name["web"].config == {"limits.cpu": "1", "limits.memory": "64MB"}
    inst.stop(wait=True)
    inst.rename("web2", wait=True)
    assert "web2" in fake.instances.by_name
    client.instances.get("web2").delete(wait=True)
    assert "web2" not in fake.instances.by_name


def test_pylxd_files(client: pylxd.Client, fake: FakeEngine, tmp_path: Path) -> None:
    c1 = client.instances.get("c1")
    assert c1.files.get("/etc/hostname") == b"c1\n"
    c1.files.put("/root/x", b"data", mode=0o600, uid=5, gid=6)
    f = fake.access.files[("c1", "/root/x")]
    assert (f.data, f.mode, f.uid, f.gid) == (b"data", 0o600, 5, 6)
    c1.files.mk_dir("/srv/d", mode=0o750)
    assert fake.access.files[("c1", "/srv/d")].type == "directory"
    c1.files.delete("/root/x")
    assert ("c1", "/root/x") not in fake.access.files
    c1.files.recursive_get("/etc", str(tmp_path / "etc"))
    assert (tmp_path / "etc" / "hostname").read_bytes() == b"c1\n"
    assert oct((tmp_path / "etc" / "hostname").stat().st_mode & 0o777) == oct(0o644)


def test_pylxd_images(client: pylxd.Client, fake: FakeEngine) -> None:
    img = client.images.create(b"an image tarball", public=True, wait=True)
    assert img.fingerprint in fake.images.by_fingerprint
    img.sync()
    assert img.public is True and img.type == "container"
    img.add_alias("mine", "my alias")
    assert client.images.get_by_alias("mine").fingerprint == img.fingerprint
    img.delete_alias("mine")
    img = client.images.create(b"rootfs tar", metadata=b"meta tar", wait=True)
    assert fake.images.imported[-1]["meta"] == b"meta tar"
    img.delete(wait=True)
    assert img.fingerprint not in fake.images.by_fingerprint


# -- lxc (the Go client) ----------------------------------------------------------

def lxc(socket_path: Path, home: Path, *args: str, stdin: bytes = b""
        ) -> subprocess.CompletedProcess[bytes]:
    lxd_dir = socket_path.parent / "lxd"
    lxd_dir.mkdir(exist_ok=True)
    link = lxd_dir / "unix.socket"
    if not link.exists():
        link.symlink_to(socket_path)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LXD_DIR": str(lxd_dir)}
    return subprocess.run(["lxc", *args], input=stdin, capture_output=True, env=env,
                          timeout=30, check=False)


needs_lxc = pytest.mark.skipif(not Path("/usr/bin/lxc").exists(), reason="lxd-client missing")


@needs_lxc
def test_lxc_list_info_exec(socket_path: Path, tmp_path: Path) -> None:
    r = lxc(socket_path, tmp_path, "list", "--format", "csv", "-c", "ns")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["c1,RUNNING", "c2,STOPPED"]
    r = lxc(socket_path, tmp_path, "list", "status=stopped", "--format", "csv", "-c", "n")
    assert r.stdout.decode().split() == ["c2"]
    r = lxc(socket_path, tmp_path, "info", "c1")
    assert r.returncode == 0 and b"Status: RUNNING" in r.stdout
    r = lxc(socket_path, tmp_path, "exec", "c1", "--", "echo", "hi", "there")
    assert (r.returncode, r.stdout) == (0, b"hi there\n")
    r = lxc(socket_path, tmp_path, "exec", "c1", "--", "fail")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"some out\n", b"boom\n")
    r = lxc(socket_path, tmp_path, "exec", "c1", "--", "cat", stdin=b"piped\n")
    assert (r.returncode, r.stdout) == (0, b"piped\n")
    r = lxc(socket_path, tmp_path, "exec", "c2", "--", "echo")
    assert r.returncode == 1 and b"Instance is not running" in r.stderr


@needs_lxc
def test_lxc_launch_config_delete(socket_path: Path, tmp_path: Path,
                                  fake: FakeEngine) -> None:
    r = lxc(socket_path, tmp_path, "launch", "busybox", "web")
    assert r.returncode == 0, r.stderr
    assert fake.instances.by_name["web"].status is Status.RUNNING
    r = lxc(socket_path, tmp_path, "config", "set", "web", "limits.memory", "64MB")
    assert r.returncode == 0, r.stderr
    assert fake.instances.by_name["web"].config == {"limits.memory": "64MB"}
    r = lxc(socket_path, tmp_path, "delete", "-f", "web")
    assert r.returncode == 0, r.stderr
    assert "web" not in fake.instances.by_name


@needs_lxc
def test_lxc_files_and_images(socket_path: Path, tmp_path: Path, fake: FakeEngine) -> None:
    r = lxc(socket_path, tmp_path, "file", "pull", "c1/etc/hostname", "-")
    assert (r.returncode, r.stdout) == (0, b"c1\n"), r.stderr
    src = tmp_path / "src.txt"
    src.write_bytes(b"pushed\n")
    r = lxc(socket_path, tmp_path, "file", "push", str(src), "c1/root/dst")
    assert r.returncode == 0, r.stderr
    assert fake.access.files[("c1", "/root/dst")].data == b"pushed\n"
    meta, rootfs = tmp_path / "meta.tar", tmp_path / "rootfs.tar"
    for path in (meta, rootfs):
        with tarfile.open(path, "w") as tar:
            tar.add(src, arcname="f")
    r = lxc(socket_path, tmp_path, "image", "import", str(meta), str(rootfs),
            "--alias", "split")
    assert r.returncode == 0, r.stderr
    assert fake.images.imported[-1]["meta"] == meta.read_bytes()
    r = lxc(socket_path, tmp_path, "image", "list", "--format", "csv", "-c", "l")
    assert sorted(r.stdout.decode().split()) == ["busybox", "split"]
