"""Ansible's community.general.lxd inventory plugin against coved: a running
instance is reported running (it reads config volatile.last_state.power).

Ansible is not in the test extras: the ``ansible`` package (which carries
community.general) is a 54 MB wheel that unpacks to about 550 MB and takes
about two minutes to install here, too much for every test venv. Point
``COVETEST_ANSIBLE`` at a venv that has it (``python3 -m venv DIR &&
DIR/bin/pip install 'ansible>=12,<13'``) to run this test; without it the
test is skipped and ``test_client_bugs.py`` still checks the exact field
the plugin reads.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from covetest import Api, Coved, new_name

_VENV = os.environ.get("COVETEST_ANSIBLE", "")
_INVENTORY = Path(_VENV) / "bin" / "ansible-inventory"

pytestmark = pytest.mark.skipif(not _VENV or not _INVENTORY.exists(),
                                reason="COVETEST_ANSIBLE (a venv with ansible) is not set")


def _inventory(coved: Coved, tmp_path: Path, state: str) -> dict[str, object]:
    conf = tmp_path / "covetest.lxd.yml"
    conf.write_text(f"plugin: community.general.lxd\nurl: unix:{coved.socket}\n"
                    f"state: {state}\n")
    env = {"PATH": f"{_VENV}/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "ANSIBLE_INVENTORY_ENABLED": "community.general.lxd",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    p = subprocess.run([str(_INVENTORY), "-i", str(conf), "--list"], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0 and "Failed to parse" not in p.stderr, p.stderr
    out: dict[str, object] = json.loads(p.stdout)
    return out


def test_inventory_plugin_sees_running_and_stopped(coved: Coved, api: Api,
                                                   tmp_path: Path) -> None:
    running, stopped = new_name("ar"), new_name("as")
    api.launch(running)
    api.create(stopped, config={"cove.cmd": "sleep 1000"})
    api.action(stopped, "start")
    api.action(stopped, "stop", force=True)
    hostvars = _inventory(coved, tmp_path, "RUNNING")["_meta"]["hostvars"]  # type: ignore[index]
    assert running in hostvars and stopped not in hostvars
    state = hostvars[running]["ansible_lxd_state"]
    if isinstance(state, dict):  # ansible-core 2.19 marks plugin strings unsafe in JSON
        state = state.get("__ansible_unsafe")
    assert state == "running"
    hostvars = _inventory(coved, tmp_path, "STOPPED")["_meta"]["hostvars"]  # type: ignore[index]
    assert stopped in hostvars and running not in hostvars
