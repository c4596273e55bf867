"""Backups through pylxd's raw API (pylxd 2.4 has no backup model): make,
list, download and import, as a pylxd user would."""

from __future__ import annotations

import io
import tarfile
import urllib.parse
from pathlib import Path

import pytest
from covetest import new_name

pylxd = pytest.importorskip("pylxd")


def test_pylxd_backup_round_trip(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("pylxdbk")
    d.api.import_image(busybox_tar, "busybox")
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(d.socket), safe=""))
    assert "container_backup" in client.host_info["api_extensions"]
    name, copy = new_name("pbk"), new_name("pbk")
    inst = client.instances.create({"name": name, "source": {"type": "image",
                                                             "alias": "busybox"}}, wait=True)
    inst.files.put("/root/covetest-f", b"from pylxd\n")
    backups = client.api.instances[name].backups
    resp = backups.post(json={"name": "b0", "compression_algorithm": "gzip"})
    client.operations.wait_for_operation(resp.json()["operation"])
    assert [b["name"] for b in backups.get(params={"recursion": 1}).json()["metadata"]] == ["b0"]
    data = backups["b0"].export.get().content
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames()[0] == "backup/index.yaml"
    resp = client.api.instances.post(data=data, headers={
        "Content-Type": "application/octet-stream", "X-LXD-name": copy})
    client.operations.wait_for_operation(resp.json()["operation"])
    imported = client.instances.get(copy)
    assert imported.status == "Stopped"
    assert imported.files.get("/root/covetest-f") == b"from pylxd\n"
    client.operations.wait_for_operation(backups["b0"].delete().json()["operation"])
    assert backups.get().json()["metadata"] == []
    imported.delete(wait=True)
    inst.delete(wait=True)
