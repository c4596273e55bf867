"""pylxd (from PyPI), unchanged, drives coved over its unix socket."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pylxd
import pytest
from covetest import assert_no_leaks, new_name


@pytest.fixture
def lxd(make_coved):  # type: ignore[no-untyped-def]
    d = make_coved("pylxd")
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(d.socket), safe=""))
    return d, client


def test_pylxd_lifecycle(lxd, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    d, client = lxd
    assert client.host_info["api_status"] == "stable"

    image = client.images.create(busybox_tar.read_bytes(), wait=True)
    image.add_alias("covetest-bb", "busybox for the pylxd test")
    assert client.images.get_by_alias("covetest-bb").fingerprint == image.fingerprint

    name = new_name("pylxd")
    inst = client.instances.create({
        "name": name,
        "source": {"type": "image", "alias": "covetest-bb"},
        "config": {"cove.cmd": "sleep 1000"},
    }, wait=True)
    assert inst.status == "Stopped"
    assert name in [i.name for i in client.instances.all()]

    inst.start(wait=True)
    inst.sync()
    assert inst.status == "Running"
    assert inst.state().pid > 0

    res = inst.execute(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert res.exit_code == 3
    assert res.stdout == "out\n"
    assert res.stderr == "err\n"

    res = inst.execute(["cat"], stdin_payload="fed through stdin\n")
    assert (res.exit_code, res.stdout) == (0, "fed through stdin\n")

    res = inst.execute(["pwd"], cwd="/tmp", environment={"COVETEST": "x"})
    assert (res.exit_code, res.stdout) == (0, "/tmp\n")
    res = inst.execute(["sh", "-c", "echo $COVETEST"], environment={"COVETEST": "val"})
    assert res.stdout == "val\n"

    payload = bytes(range(256)) * 40 + b"\nend"
    inst.files.put("/tmp/covetest-blob", payload, mode="0640", uid=1000, gid=1000)
    assert inst.files.get("/tmp/covetest-blob") == payload
    res = inst.execute(["stat", "-c", "%a %u %g %s", "/tmp/covetest-blob"])
    assert res.stdout == f"640 1000 1000 {len(payload)}\n"
    # the file is really in the container, not only in what coved remembers
    res = inst.execute(["md5sum", "/tmp/covetest-blob"])
    import hashlib
    assert res.stdout.split()[0] == hashlib.md5(payload).hexdigest()

    inst.stop(wait=True)
    inst.sync()
    assert inst.status == "Stopped"
    # files work on a stopped instance too
    assert inst.files.get("/tmp/covetest-blob") == payload

    inst.delete(wait=True)
    assert name not in [i.name for i in client.instances.all()]
    assert not client.instances.exists(name)
    assert_no_leaks(d.root)
