"""The live published ports of a root (no nftables: apply=False): conflicts
by index lookup, exact bookkeeping when ports change or go."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from pathlib import Path

import pytest

from cove.model.errors import Conflict
from cove.network import NetworkHost, PortKey
from cove.network.nft import PortRule


def _rule(port: int, listen: str | None = None, target: str = "10.0.0.2") -> PortRule:
    return PortRule("tcp", A(listen) if listen else None, port, A(target), 80)


def test_conflicts_and_release(tmp_path: Path) -> None:
    h = NetworkHost(tmp_path)
    h.set_ports("web", [_rule(8080), _rule(9090, "127.0.0.1")], A("10.0.0.2"), apply=False)
    assert h.has_ports("web")
    assert h.port_owner(PortKey("tcp", A("127.0.0.1"), 8080)) == "web"  # 0.0.0.0 covers it
    assert h.port_owner(PortKey("tcp", A("0.0.0.0"), 9090)) == "web"  # it covers 127.0.0.1
    assert h.port_owner(PortKey("tcp", A("192.0.2.9"), 9090)) is None
    assert h.port_owner(PortKey("udp", A("0.0.0.0"), 8080)) is None
    assert h.port_owner(PortKey("tcp", A("0.0.0.0"), 8080), exclude="web") is None
    with pytest.raises(Conflict, match="already published by instance web"):
        h.set_ports("db", [_rule(8080, "127.0.0.1", "10.0.0.3")], None, apply=False)
    h.set_ports("db", [_rule(9090, "192.0.2.9", "10.0.0.3")], None, apply=False)
    # web drops 8080 and keeps 9090: 8080 is free again, its own change is no clash
    h.set_ports("web", [_rule(9090, "127.0.0.1")], A("10.0.0.2"), apply=False)
    assert h.port_owner(PortKey("tcp", A("0.0.0.0"), 8080)) is None
    h.set_ports("db", [_rule(8080, None, "10.0.0.3")], None, apply=False)
    assert h.port_owner(PortKey("tcp", A("127.0.0.1"), 8080)) == "db"
    h.set_ports("web", [], None, apply=False)
    assert not h.has_ports("web")
    assert h.port_owner(PortKey("tcp", A("127.0.0.1"), 9090)) is None
    assert h._by_port == {("tcp", 8080): {None: "db"}}
