"""``cove storage ...`` and ``cove config device ...`` against a real coved."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
from covetest import Api, Coved, mkroot, new_name
from test_cli import Cli


@pytest.fixture
def cove(coved: Coved, api: Api) -> Cli:
    return Cli(coved.cli_env(), api)


def test_cli_storage_and_devices(cove: Cli, coved: Coved, api: Api) -> None:
    rows = list(csv.reader(io.StringIO(cove("storage", "list", "-f", "csv").stdout.decode())))
    assert rows == [["default", "dir", str(coved.root), rows[0][3], rows[0][4], "CREATED"]]
    assert b"driver: dir" in cove("storage", "show", "default").stdout
    assert b"total space: " in cove("storage", "info", "default").stdout
    assert "not found" in cove.fails("storage", "show", "zfs")

    vol = new_name("clivol")
    src = mkroot("cli-src")
    try:
        (src / "hello").write_text("from the host\n")
        cove("storage", "volume", "create", "default", vol, "size=1GiB")
        try:
            out = cove("storage", "volume", "list", "default", "-f", "csv").stdout.decode()
            assert f"custom,{vol},,filesystem,0" in out, out
            assert b"size: 1GiB" in cove("storage", "volume", "show", "default", vol).stdout
            cove("storage", "volume", "set", "default", vol, "user.owner=me")
            assert api.sync("GET", f"/1.0/storage-pools/default/volumes/custom/{vol}")[
                "config"] == {"size": "1GiB", "user.owner": "me"}

            name = new_name("clivol")
            cove.launch(name, "cove.cmd=sleep 1000")
            cove("stop", "-f", name)
            cove("storage", "volume", "attach", "default", vol, name, "/mnt/v")
            cove("config", "device", "add", name, "host", "disk", f"source={src}",
                 "path=/mnt/h", "readonly=true")
            listed = cove("config", "device", "list", name).stdout.decode().split()
            assert listed == sorted(["host", vol])
            assert "already exists" in cove.fails("config", "device", "add", name, "host",
                                                  "disk", "source=/x", "path=/y")
            cove("start", name)
            assert cove("exec", name, "--", "cat", "/mnt/h/hello").stdout == b"from the host\n"
            cove("exec", name, "--", "sh", "-c", "echo v > /mnt/v/f")
            assert "still in use" in cove.fails("storage", "volume", "delete", "default", vol)
            cove("stop", "-f", name)
            cove("storage", "volume", "detach", "default", vol, name)
            cove("config", "device", "remove", name, "host")
            assert cove("config", "device", "list", name).stdout == b""
            assert "not found" in cove.fails("config", "device", "remove", name, "host")
            cove("storage", "volume", "rename", "default", vol, vol + "b")
            vol += "b"
            assert (coved.root / "storage" / "custom" / vol / "f").read_text() == "v\n"
        finally:
            for n in list(api.made):
                api.remove(n)
            cove("storage", "volume", "delete", "default", vol)
        assert not (coved.root / "storage" / "custom" / vol).exists()
    finally:
        shutil.rmtree(src, ignore_errors=True)
