"""``driver.stack(...)`` (the Compose ``Stack`` API) on every driver that
reaches coved: REST over the socket and TLS, ``cove`` and ``lxc`` as
command lines, and the in-process ``LocalDriver``. The same two-service
stack comes up in dependency order on its own network (the dependent
reaches the other by its service name), ``ps`` and ``stacks`` see it, a
second ``up`` changes nothing, and ``down`` removes it all. LXD has no
``cove.depends``: its drivers are not in this test's matrix."""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import COVE_DRIVERS, Host

from cove.client.drivers import _steps as st
from cove.model.compose import bridge_name
from cove.model.errors import NotFound


@pytest.mark.parametrize("host", COVE_DRIVERS, indirect=True)
def test_stack_on_every_driver_that_reaches_coved(host: Host) -> None:
    d = host.driver
    name = f"covetest-st{secrets.token_hex(2)}"
    doc = {"name": name, "services": {
        "db": {"image": host.image, "command": "sleep 100000", "stop_signal": "KILL",
               "healthcheck": {"test": ["CMD", "true"], "interval": "1s"}},
        "web": {"image": host.image, "stop_signal": "KILL",
                "command": "sh -c 'ping -c1 -W2 db > /tmp/p 2>&1; mv /tmp/p /tmp/ping; "
                           "exec sleep 100000'",
                "depends_on": {"db": {"condition": "service_healthy"}}}}}
    stack = d.stack(doc)
    try:
        changes = stack.up()
        assert sorted((c.service, c.action) for c in changes) == [
            ("db", "created"), ("web", "created")]
        assert sorted(i.name for i in stack.ps()) == [f"{name}-db", f"{name}-web"]
        assert d.stacks()[name] == {"running": 2}
        assert d._perform(st.GetNetwork(bridge_name(name))) is not None
        web = d.container(f"{name}-web")
        assert web["config"]["cove.depends"] == f"{name}-db:healthy"
        # web started after db was healthy, on the stack's network: db by name
        # (/tmp/ping appears once ping has ended; on a busy host that is after ``up``)
        deadline = time.monotonic() + 10
        while True:
            code, out = d._perform(st.RunCommand(f"{name}-web", ("cat", "/tmp/ping")))
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 0 and b"1 packets received" in out, out
        assert all(c.action == "unchanged" for c in stack.up())  # convergent
        assert sorted(stack.down()) == [f"{name}-db", f"{name}-web"]
        assert name not in d.stacks()
        with pytest.raises(NotFound):
            d.container(f"{name}-db")
        assert d._perform(st.GetNetwork(bridge_name(name))) is None  # its network went too
    finally:
        try:
            d.stack(name=name).down()
        except NotFound:
            pass
