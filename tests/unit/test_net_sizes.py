"""Subnet sizes (a /22 for a root's default network, LXD's /24 otherwise)
and the fast address parsing leases are chosen with (issue 14)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from types import SimpleNamespace

import pytest

from cove.engine import _net_bridge
from cove.engine._net_bridge import BridgeType
from cove.model.errors import Conflict, InternalError
from cove.network.model import default_network_name
from cove.network.subnets import (
    DEFAULT_NETWORK_PREFIX,
    NETWORK_PREFIX,
    address_int,
    free_address,
    free_address6,
    pick_subnet,
)


def test_default_network_holds_a_thousand() -> None:
    assert (NETWORK_PREFIX, DEFAULT_NETWORK_PREFIX) == (24, 22)
    net = pick_subnet([], seed="r:cove1", prefix=DEFAULT_NETWORK_PREFIX)
    assert net.prefixlen == 22 and net.num_addresses - 3 == 1021  # minus gateway, ends


def test_a_20_skips_a_host_route_inside_it() -> None:
    first = pick_subnet([], seed="s", prefix=22)
    inside = IPv4Network((int(first.network_address) + 512, 24))  # a /24 in its middle
    second = pick_subnet([inside], seed="s", prefix=22)
    assert second != first and not second.overlaps(inside)


def test_address_int_matches_ipaddress() -> None:
    for text in ("10.0.0.1", "255.255.255.255", "0.0.0.0"):
        assert address_int(text) == int(IPv4Address(text))
    for text in ("fd00::1", "::", "fd12:3456:789a::ffff"):
        assert address_int(text) == int(IPv6Address(text))
    for bad in ("", "10.0.0", "x", "10.0.0.256"):
        with pytest.raises(ValueError):
            address_int(bad)


def test_free_address_takes_ints_past_254() -> None:
    net = IPv4Network("10.9.0.0/22")
    gw = IPv4Address("10.9.0.1")
    taken = [address_int(f"10.9.{n // 256}.{n % 256}") for n in range(2, 600)]
    assert free_address(net, taken, gateway=gw) == IPv4Address("10.9.2.88")  # 600
    full = [int(a) for a in net.hosts() if a != gw]
    with pytest.raises(Conflict, match="all 1021 instance addresses"):
        free_address(net, full, gateway=gw)
    taken6 = [address_int("fd00::1"), address_int("fd00::2")]
    assert free_address6(IPv6Network("fd00::/64"), taken6) == IPv6Address("fd00::3")


class _Host:
    def __init__(self) -> None:
        self.nl = SimpleNamespace(links=dict)

    def specs(self) -> list[object]:
        return []

    def host_subnets(self, exclude_bridge: str | None = None) -> list[IPv4Network]:
        return [IPv4Network("0.0.0.0/0")]  # a default route uses nothing


def _bridge(tmp_path: Path) -> BridgeType:
    ctx = SimpleNamespace(store=SimpleNamespace(list_networks=list), host=_Host(),
                          paths=SimpleNamespace(root=tmp_path))
    return BridgeType(ctx)  # type: ignore[arg-type]


def test_auto_subnet_sizes(tmp_path: Path) -> None:
    kind = _bridge(tmp_path)
    default = default_network_name(tmp_path)
    assert kind.new_config(default, {}, None, False)["ipv4.address"].endswith("/22")
    assert kind.new_config("lab", {}, None, False)["ipv4.address"].endswith("/24")
    assert kind.new_config("lab", {"ipv4.address": "auto"}, None,
                           False)["ipv4.address"].endswith("/24")


def test_default_network_falls_back_to_a_24(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = _net_bridge.pick_subnet

    def no_22(used: list[IPv4Network], seed: str, prefix: int = 24) -> IPv4Network:
        if prefix == 22:
            raise InternalError("no /22 free")
        return real(used, seed, prefix)

    monkeypatch.setattr(_net_bridge, "pick_subnet", no_22)
    conf = _bridge(tmp_path).new_config(default_network_name(tmp_path), {}, None, False)
    assert conf["ipv4.address"].endswith("/24")
