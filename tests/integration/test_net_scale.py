"""A default network that holds a thousand (issue 14): a fresh root's
default network is a /22; addresses past the first 254 are leased through
the real chooser and work (two instances beyond a /24's end reach the
gateway and each other); NICs on a network without IPv6 carry no
link-local address on either end, so the bridge floods nothing of them;
and nothing is left behind."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from covetest import new_name, wait_until
from nethost import links

from cove.engine._net_bridge import _chooser
from cove.network._host import spec_of
from cove.network.model import Nic, default_network_name, nic_from_device
from cove.store import Store

FILL = 300  # leases held before the real launches: past a /24's 253


def _if_inet6(api, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Interfaces with an IPv6 address inside ``name`` (from /proc/net/if_inet6)."""
    out = api.sh(name, "cat /proc/net/if_inet6 || true").decode()
    return sorted({line.split()[-1] for line in out.splitlines() if line.strip()})


def test_default_network_leases_past_254(make_coved, busybox_tar) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("netscale")
    api = d.api
    api.import_image(busybox_tar, "busybox")
    net_name = default_network_name(d.root)
    conf = api.sync("GET", f"/1.0/networks/{net_name}")["config"]
    gw = IPv4Interface(conf["ipv4.address"])
    assert gw.network.prefixlen == 22, conf
    before = sorted(links(d.root))

    # The leases a few hundred running instances would hold, chosen by the
    # launch's own chooser in the same store coved uses.
    store = Store(d.root / "cove.db")
    spec = spec_of(store.get_network(net_name))
    nic = nic_from_device("eth0", {"type": "nic", "network": net_name})
    assert isinstance(nic, Nic)
    fake = [store.add_lease(net_name, f"covetestfill{i}", "eth0", "00:16:3e:00:00:00",
                            _chooser(spec, nic)) for i in range(FILL)]
    try:
        assert fake[-1].address == str(gw.ip + FILL)  # lowest free, in order
        names = [new_name("sa"), new_name("sb")]
        api.made += names
        for n in names:
            api.run("POST", "/1.0/instances", {
                "name": n, "source": {"type": "image", "alias": "busybox"},
                "config": {"cove.cmd": "sleep 1000"}, "start": True})
        addrs = []
        for n in names:
            (a,) = [x for x in api.state(n)["network"]["eth0"]["addresses"]
                    if x["family"] == "inet"]
            assert a["netmask"] == "22"
            addrs.append(IPv4Address(a["address"]))
        assert addrs == [gw.ip + FILL + 1, gw.ip + FILL + 2]
        assert all(int(a) & 0xFF00 != int(gw.ip) & 0xFF00 for a in addrs)  # past the /24
        assert b"1 packets received" in api.sh(names[0], f"ping -c1 -W2 {gw.ip}")
        assert b"1 packets received" in api.sh(names[0], f"ping -c1 -W2 {addrs[1]}")
        # no IPv6 on this network: only lo has an address inside, and the
        # host end of each veth has IPv6 off
        assert _if_inet6(api, names[0]) in ([], ["lo"])
        veths = sorted(set(links(d.root)) - set(before))
        assert len(veths) == 2
        for v in veths:
            assert Path(f"/proc/sys/net/ipv6/conf/{v}/disable_ipv6").read_text().strip() == "1"
        for n in names:
            api.remove(n)
    finally:
        for lease in fake:
            store.delete_lease(lease.id)
        store.close()
    wait_until(lambda: sorted(links(d.root)) == before, 10, what="the veths gone")
    assert api.sync("GET", f"/1.0/networks/{net_name}/leases") == []
