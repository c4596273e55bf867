"""Behaviour bugs real clients found (issue 9), against a real coved and
real containers: the power state Ansible reads, environment.* for the next
exec, bad ids refused, failures logged, and a subnet that grows live."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from covetest import Api, Coved, new_name, rand, wait_until

POWER = "volatile.last_state.power"


def test_power_state_is_recorded_as_ansible_reads_it(api: Api) -> None:
    # community.general's lxd inventory plugin reads exactly this key of
    # GET /1.0/instances/NAME's config (plugins/inventory/lxd.py) for
    # ansible_lxd_state and its state filter.
    name = new_name("pw")
    api.create(name, config={"cove.cmd": "sleep 1000"})
    assert POWER not in api.instance(name)["config"]  # LXD: never started, no key
    api.action(name, "start")
    assert api.instance(name)["config"][POWER] == "RUNNING"
    api.action(name, "stop", force=True)
    assert api.instance(name)["config"][POWER] == "STOPPED"
    # the init exits on its own: STOPPED, as LXD's onStop hook records it
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"cove.cmd": "sleep 2"}})
    api.action(name, "start")
    assert api.instance(name)["config"][POWER] == "RUNNING"
    wait_until(lambda: api.status(name) == "Stopped", 15)
    assert api.instance(name)["config"][POWER] == "STOPPED"
    # a PUT of the config keeps it (volatile keys are the server's)
    api.run("PUT", f"/1.0/instances/{name}", {"config": {"cove.cmd": "sleep 1000"}})
    assert api.instance(name)["config"][POWER] == "STOPPED"
    # ...and so does a stale copy sent back while it runs
    stale = api.instance(name)["config"]
    api.action(name, "start")
    api.run("PUT", f"/1.0/instances/{name}", {"config": stale})
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {POWER: "STOPPED"}})
    assert api.instance(name)["config"][POWER] == "RUNNING"


def test_environment_set_while_running_reaches_the_next_exec(api: Api) -> None:
    name = new_name("env")
    api.launch(name, config={"environment.FOO": "one"})
    assert api.sh(name, "echo $FOO") == b"one\n"
    api.sync("PATCH", f"/1.0/instances/{name}",
             {"config": {"environment.FOO": "two", "environment.BAR": "new"}})
    assert api.sh(name, 'echo "$FOO $BAR"') == b"two new\n"  # no restart
    # the exec's own environment still wins over the config's
    code, out, _ = api.exec(name, ["sh", "-c", "echo $FOO"], env={"FOO": "mine"})
    assert code == 0 and out == b"mine\n"
    # a key removed from the config is gone from the next exec too
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"environment.FOO": ""}})
    assert api.sh(name, 'echo "${FOO-unset} $BAR"') == b"unset new\n"
    api.run("PUT", f"/1.0/instances/{name}", {"config": {}})
    assert api.sh(name, 'echo "${FOO-unset} ${BAR-unset} $PATH"').startswith(b"unset unset /")


def test_bad_ids_and_modes_are_refused_before_anything_is_made(api: Api) -> None:
    name = new_name("bad")
    api.launch(name)
    for headers, field in (({"X-LXD-uid": "-5"}, "X-LXD-uid"),
                           ({"X-LXD-uid": "99999999999"}, "X-LXD-uid"),
                           ({"X-LXD-gid": "-1"}, "X-LXD-gid"),
                           ({"X-LXD-gid": "99999999999"}, "X-LXD-gid"),
                           ({"X-LXD-mode": "-0644"}, "X-LXD-mode"),
                           ({"X-LXD-mode": "077777777"}, "X-LXD-mode")):
        r = api.file_put(name, "/tmp/f", b"x", headers)
        assert r.status == 400, (headers, r.status, r.body)
        assert field in r.error
        assert api.file_get(name, "/tmp/f").status == 404  # nothing was written
    for body, field in (({"user": "root"}, "'user'"), ({"group": "0"}, "'group'"),
                        ({"user": -1}, "'user'"), ({"user": 2**40}, "'user'")):
        r = api.request("POST", f"/1.0/instances/{name}/exec",
                        {"command": ["id"], "wait-for-websocket": False, **body})
        assert r.status == 400, (body, r.status, r.body)
        assert field in r.error
    # the good forms still work: a uid, and cove's user-name extension
    code, out, _ = api.exec(name, ["id", "-u"], user=65534)
    assert (code, out) == (0, b"65534\n")
    r = api.request("POST", f"/1.0/instances/{name}/exec",
                    {"command": ["id", "-u"], "wait-for-websocket": False,
                     "record-output": True, "user-name": "nobody"})
    op = api.wait(r)
    assert op["status"] == "Success" and op["metadata"]["return"] == 0
    out_path = op["metadata"]["output"]["1"]
    assert api.request("GET", out_path).body == b"65534\n"


def test_failed_requests_are_in_coveds_log(coved: Coved, api: Api) -> None:
    marker = f"covetestnope{rand(6)}"
    assert api.request("GET", f"/1.0/instances/{marker}").status == 404
    r = api.request("POST", "/1.0/instances/x/exec", {"command": ["id"], "user": "root"})
    assert r.status in (400, 404)

    def logged() -> bool:
        return f"GET /1.0/instances/{marker} -> 404 " in coved.log.read_text(errors="replace")

    wait_until(logged, 5)


def _bridge_addrs(net: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", net], check=True,
                         capture_output=True, text=True).stdout
    return [w for line in out.splitlines() for w in line.split() if "/" in w and "." in w
            and not w.startswith("brd")]


def _launch_on(api: Api, name: str, net: str) -> dict[str, Any]:
    api.made.append(name)
    r = api.request("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": "sleep 1000"}, "start": True,
        "devices": {"eth0": {"type": "nic", "network": net}}})
    return api.wait(r)


def test_a_subnet_grows_while_instances_run(api: Api) -> None:
    net = f"covetest{rand(6)}"
    api.sync("POST", "/1.0/networks", {"name": net, "config": {"ipv4.address":
                                                              "192.168.247.1/30"}})
    one, two = new_name("g1"), new_name("g2")
    try:
        assert _launch_on(api, one, net)["status"] == "Success"
        op = _launch_on(api, two, net)
        # a /30: one instance address besides the gateway, and the message says one
        assert op["status"] == "Failure" and "all 1 instance addresses are leased" in op["err"]
        assert "192.168.247.1 is the gateway" in op["err"]
        api.made.remove(two)
        # moving the gateway stays refused while leased, in one short line
        for change in ({"ipv4.address": "192.168.247.5/29"}, {"dns.domain": "lab"}):
            r = api.request("PATCH", f"/1.0/networks/{net}", {"config": change})
            assert r.status == 400 and one in r.error and "\n" not in r.error, r.body
        r = api.request("PATCH", f"/1.0/networks/{net}",
                        {"config": {"ipv4.address": "192.168.247.1/29"}})
        assert r.status == 200, r.body
        assert _bridge_addrs(net) == ["192.168.247.1/29"]
        nft = subprocess.run(["nft", "list", "ruleset"], check=True, capture_output=True,
                             text=True).stdout
        assert "192.168.247.0/29" in nft and "192.168.247.0/30" not in nft
        assert api.sync("GET", f"/1.0/instances/{one}")["status"] == "Running"
        op = _launch_on(api, two, net)
        assert op["status"] == "Success", op
        ip_one = api.state(one)["network"]["eth0"]["addresses"][0]["address"]
        assert api.state(two)["network"]["eth0"]["addresses"][0]["address"] == "192.168.247.3"
        # the running one still reaches its gateway, and the new one reaches it
        assert b"1 packets received" in api.sh(one, "ping -c1 -W2 192.168.247.1")
        assert b"1 packets received" in api.sh(two, f"ping -c1 -W2 {ip_one}")
        # the running one got the new prefix in place (as a DHCP renewal would),
        # with its default route still there
        out = api.sh(one, "ip -o -4 addr show dev eth0; ip route")
        assert b"192.168.247.2/29" in out and b"/30" not in out, out
        assert b"default via 192.168.247.1" in out, out
        assert b"1 packets received" in api.sh(one, "ping -c1 -W2 192.168.247.3")
    finally:
        api.remove(one)
        api.remove(two)
        api.request("DELETE", f"/1.0/networks/{net}")
    assert not os.path.exists(f"/sys/class/net/{net}")
