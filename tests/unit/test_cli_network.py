"""``cove network ...`` and ``cove launch -p/--network`` against the fake server."""

from __future__ import annotations

import json
import os

import pytest
from test_client_fakelxd import FakeLXD, error, sync

from cove.cli.main import main

pytest_plugins = ("test_client_fakelxd",)

LAB = {"name": "lab", "description": "a lab", "type": "bridge", "managed": True,
       "status": "Created", "config": {"ipv4.address": "10.7.0.1/24", "ipv4.nat": "true",
                                        "ipv6.address": "none", "dns.domain": "cove"},
       "used_by": ["/1.0/profiles/default", "/1.0/instances/web"], "locations": ["none"]}


@pytest.fixture
def cli(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    fake.route("GET", "/1.0/networks")(lambda req: sync([LAB]))
    fake.route("GET", "/1.0/networks/lab")(lambda req: sync(LAB))
    return run


def test_network_list(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("network", "list")
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split("|")[1:4] == [" NAME ", "  TYPE  ", " MANAGED "]
    assert "| lab  | bridge | YES     | 10.7.0.1/24 |" in out
    assert fake.find("GET", "/1.0/networks")[0].query == {"recursion": "1"}
    code, out, _ = cli("network", "ls", "-f", "json")
    assert json.loads(out)[0]["name"] == "lab"


def test_network_create_set_unset_delete(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    fake.route("POST", "/1.0/networks")(lambda req: sync({}, status=201))
    fake.route("PATCH", "/1.0/networks/lab")(lambda req: sync({}))
    fake.route("PUT", "/1.0/networks/lab")(lambda req: sync({}))
    fake.route("DELETE", "/1.0/networks/lab")(lambda req: sync({}))
    code, out, _ = cli("network", "create", "lab", "ipv4.address=10.7.0.1/24",
                       "--description", "a lab")
    assert code == 0 and out == "Network lab created\n"
    assert fake.find("POST", "/1.0/networks")[0].json() == {
        "name": "lab", "type": "bridge", "description": "a lab",
        "config": {"ipv4.address": "10.7.0.1/24"}}
    assert cli("network", "set", "lab", "ipv4.nat", "false")[0] == 0
    assert fake.find("PATCH", "/1.0/networks/lab")[0].json() == {"config": {"ipv4.nat": "false"}}
    assert cli("network", "set", "lab", "dns.domain=lab", "user.a=b")[0] == 0
    assert fake.find("PATCH", "/1.0/networks/lab")[1].json() == {
        "config": {"dns.domain": "lab", "user.a": "b"}}
    assert cli("network", "unset", "lab", "dns.domain")[0] == 0
    put = fake.find("PUT", "/1.0/networks/lab")[0].json()
    assert "dns.domain" not in put["config"] and put["config"]["ipv4.nat"] == "true"
    code, out, _ = cli("network", "delete", "lab")
    assert code == 0 and out == "Network lab deleted\n"


def test_network_delete_in_use_is_one_error_line(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    fake.route("DELETE", "/1.0/networks/lab")(lambda req: error(
        400, "The network is currently in use by /1.0/instances/web: remove those NICs first"))
    code, out, err = cli("network", "delete", "lab")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "in use by /1.0/instances/web" in err


def test_network_show_info_leases(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    fake.route("GET", "/1.0/networks/lab/state")(lambda req: sync({
        "addresses": [{"family": "inet", "address": "10.7.0.1", "netmask": "24",
                       "scope": "global"}], "counters": {"bytes_received": 2000,
                                                         "bytes_sent": 1000},
        "hwaddr": "aa:bb:cc:dd:ee:ff", "mtu": 1500, "state": "up", "type": "broadcast"}))
    fake.route("GET", "/1.0/networks/lab/leases")(lambda req: sync([
        {"hostname": "web", "hwaddr": "00:16:3e:00:00:01", "address": "10.7.0.2",
         "type": "dynamic", "location": "none"}]))
    code, out, _ = cli("network", "show", "lab")
    assert code == 0 and "name: lab\n" in out and "ipv4.address: 10.7.0.1/24" in out
    code, out, _ = cli("network", "info", "lab")
    assert code == 0 and "inet\t10.7.0.1/24 (global)" in out and "Bytes received: 2.00kB" in out
    code, out, _ = cli("network", "list-leases", "lab", "-f", "csv")
    assert code == 0 and out == "web,00:16:3e:00:00:01,10.7.0.2,DYNAMIC\n"


def test_launch_publish_and_network(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    fake.route("POST", "/1.0/instances")(lambda req: fake.finished())
    code, _, err = cli("launch", "busybox", "web", "-p", "8080:80",
                       "-p", "127.0.0.1:5353:53/udp", "--network", "lab")
    assert (code, err) == (0, "")
    body = fake.find("POST", "/1.0/instances")[0].json()
    assert body["devices"] == {
        "eth0": {"type": "nic", "network": "lab", "name": "eth0"},
        "proxy-tcp-8080": {"type": "proxy", "listen": "tcp:0.0.0.0:8080",
                           "connect": "tcp:0.0.0.0:80", "nat": "true"},
        "proxy-udp-127.0.0.1-5353": {"type": "proxy", "listen": "udp:127.0.0.1:5353",
                                     "connect": "udp:0.0.0.0:53", "nat": "true"}}
    code, _, _ = cli("init", "busybox", "quiet", "--network", "none")
    assert code == 0
    assert fake.find("POST", "/1.0/instances")[1].json()["devices"] == {
        "eth0": {"type": "none"}}


def test_bad_publish_is_a_usage_error(cli, fake: FakeLXD) -> None:  # type: ignore[no-untyped-def]
    code, _out, err = cli("launch", "busybox", "web", "-p", "80")
    assert code == 2 and "Invalid publish '80'" in err
    assert not fake.find("POST", "/1.0/instances")
