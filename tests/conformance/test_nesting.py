"""Nesting with a real nested host: cove running inside an LXD container.

The outer driver (REST, on the real LXD) makes a privileged
container with ``security.nesting`` whose /usr, /lib, /lib64, this Python and
this repository are the host's, read-only: that is enough for ``cove``,
``coved``, runc and conmon to run in it (the busybox image gives the rest).
Its cgroup hierarchies are mounted inside (LXD mounts none in a container of
this host's hybrid layout), and from then on everything goes through the
Driver/Transport API: ``CliDriver(outer.transport_for("nest"), cove)`` makes
and drives containers *inside* the nest (the ``cove`` command starts its
coved there), and the transports of those nest once more: a command in an
inner container runs through ``cove exec`` run through the outer transport.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import REPO, Host, make_driver

from cove.client import CliDriver, Driver
from cove.model.errors import NotFound

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _cgroup_script() -> str:
    """Mount, inside the nest, the cgroup hierarchies this host has."""
    lines = ["set -e", "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup"]
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            point, fstype = fields[4], rest[0]
            if not point.startswith("/sys/fs/cgroup/") or fstype not in ("cgroup", "cgroup2"):
                continue
            sub = point.removeprefix("/sys/fs/cgroup/")
            opts = ",".join(o for o in rest[2].split(",")
                            if o not in ("rw", "ro") and not o.startswith("seclabel"))
            lines.append(f"mkdir -p /sys/fs/cgroup/{sub}")
            if fstype == "cgroup2":
                lines.append(f"mount -t cgroup2 none /sys/fs/cgroup/{sub}")
            else:
                lines.append(f"mount -t cgroup -o {opts} cgroup /sys/fs/cgroup/{sub}")
    return "\n".join(lines) + "\n"


def _nest_devices() -> dict[str, dict[str, str]]:
    python_home = os.path.realpath(sys.base_prefix)
    devices = {
        "hostusr": {"type": "disk", "source": "/usr", "path": "/usr", "readonly": "true"},
        "hostlib": {"type": "disk", "source": "/usr/lib", "path": "/lib", "readonly": "true"},
        "hostlib64": {"type": "disk", "source": "/usr/lib64", "path": "/lib64",
                      "readonly": "true"},
        "repo": {"type": "disk", "source": str(REPO), "path": str(REPO), "readonly": "true"},
    }
    if not python_home.startswith("/usr/"):
        devices["python"] = {"type": "disk", "source": python_home, "path": python_home,
                             "readonly": "true"}
    return {k: v for k, v in devices.items() if os.path.isdir(v["source"])}


# The outer driver only makes the nest and hands over its transport; what is
# tested is cove inside it. Both LXD drivers' transports keep the Transport
# contract in test_drivers.py, so the nest is made once, over REST (through
# ``lxc`` too it cost another 7 s of LXD's).
@pytest.fixture(params=["rest-lxd"])
def outer(request: pytest.FixtureRequest) -> Host:
    lxd = request.getfixturevalue("lxd_host")
    if isinstance(lxd, str):
        pytest.skip(lxd)
    h = Host(request.param, make_driver(request.param, None, lxd))
    request.addfinalizer(lambda: [h.driver.delete_container(n) for n in h.made])
    return h


def test_cove_nested_in_an_lxd_container(outer: Host, tmp_path: Path) -> None:
    nest = outer.name("nest")
    outer.driver.create_container(
        nest, alias=outer.image, devices=_nest_devices(),
        config={"security.privileged": "true", "security.nesting": "true"})
    t = outer.driver.transport_for(nest)
    t.execute(_cgroup_script()).check()
    venv = Path(sys.executable).parent
    t.execute([str(venv / "python"), str(REPO / "scripts" / "mkbusybox.py"),
               "/tmp/busybox.tar.gz"], env={"PATH": PATH}).check()

    inner: Driver = CliDriver(t, [str(venv / "cove")], env={"PATH": PATH})
    # The Driver API has no image import (nor has lxd-common's): it is a
    # command of the host, run through the same transport.
    inner.run("image", "import", "/tmp/busybox.tar.gz", "--alias", "bb")  # type: ignore[attr-defined]
    name = "covetest-inner"
    inner.create_container(name, alias="bb")
    assert inner.container_status(name) == "running"
    it = inner.transport_for(name)
    # Three hops: this process -> LXD (REST or lxc) -> nest's cove -> runc container.
    assert it.execute("hostname").stdout == b"covetest-inner\n"
    assert b"init" in it.execute("ps -o args").stdout
    it.write_file("/tmp/deep", b"\x00\x01two levels down\n", mode=0o600)
    assert it.read_file("/tmp/deep") == b"\x00\x01two levels down\n"
    src = tmp_path / "payload"
    src.write_text("up and back\n")
    os.chmod(src, 0o640)
    it.upload_file(src, "/tmp/payload")
    assert it.execute("stat -c %a /tmp/payload; cat /tmp/payload").stdout == \
        b"640\nup and back\n"
    it.download_file("/tmp/payload", tmp_path / "back")
    assert (tmp_path / "back").read_text() == "up and back\n"
    assert (tmp_path / "back").stat().st_mode & 0o777 == 0o640
    assert it.user("app").execute("id -u").stdout == b"1000\n"
    # The inner container is the nest's, not this host's: the outer LXD does
    # not know it, and its processes live in the nest's process tree.
    with pytest.raises(NotFound):
        outer.driver.container(name)
    assert name in t.execute(["ls", "/var/lib/cove/instances"]).text.split()
    assert t.execute(["pgrep", "-f", "cove.server.main"]).exit_code == 0  # its own coved
    inner.stop_container(name, force=True)
    inner.delete_container(name)
    inner.delete_container(name)
