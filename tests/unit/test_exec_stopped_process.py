"""The process of a stopped instance's exec (``_exec_stopped._set_process``):
the request over the start's process, users and groups by name from the
instance's own files (a symlink out of its root is read inside it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cove.api import InstanceExecPost
from cove.engine._exec_stopped import _set_process
from cove.model.errors import BadRequest


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "app:x:1234:2345::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nweb:x:3456:\n")
    return root


def _process() -> dict[str, Any]:
    return {"args": ["/sbin/init"], "env": ["PATH=/bin", "GREETING=hi"], "cwd": "/",
            "user": {"uid": 7, "gid": 7}, "terminal": True}


def test_the_request_over_what_a_start_runs(tmp_path: Path) -> None:
    p = _process()
    _set_process(p, InstanceExecPost(command=["id"], environment={"X": "1"}), _root(tmp_path))
    assert p["args"] == ["id"] and p["terminal"] is False
    assert p["env"] == ["PATH=/bin", "GREETING=hi", "X=1"]
    assert p["user"] == {"uid": 7, "gid": 7} and p["cwd"] == "/"  # cove.uid's, as a start


def test_users_and_groups_by_name_from_its_own_files(tmp_path: Path) -> None:
    root = _root(tmp_path)
    p = _process()
    _set_process(p, InstanceExecPost(command=["id"], user="app"), root)
    assert p["user"] == {"uid": 1234, "gid": 2345} and p["cwd"] == "/home/app"
    assert "HOME=/home/app" in p["env"] and "USER=app" in p["env"]
    p = _process()
    _set_process(p, InstanceExecPost(command=["id"], user="app", group="web", cwd="/tmp"), root)
    assert p["user"] == {"uid": 1234, "gid": 3456} and p["cwd"] == "/tmp"
    p = _process()
    _set_process(p, InstanceExecPost(command=["id"], group="web"), root)
    assert p["user"] == {"uid": 7, "gid": 3456}  # the start's user, the named group
    with pytest.raises(BadRequest, match="nobody-here"):
        _set_process(_process(), InstanceExecPost(command=["id"], user="nobody-here"), root)
    with pytest.raises(BadRequest, match="nogroup-here"):
        _set_process(_process(), InstanceExecPost(command=["id"], group="nogroup-here"), root)


def test_a_passwd_pointing_out_of_the_root_is_not_the_hosts(tmp_path: Path) -> None:
    root = _root(tmp_path)
    (root / "etc" / "passwd").unlink()
    os.symlink("../../../../../../../../../../etc/passwd", root / "etc" / "passwd")
    host_user = Path("/etc/passwd").read_text().splitlines()[0].split(":")[0]  # root, mostly
    with pytest.raises(BadRequest):
        _set_process(_process(), InstanceExecPost(command=["id"], user=host_user), root)
