"""Networks of type cni: conflist checks, each plugin's stdin (golden),
reading results and errors, and the ADD/DEL order and state of
``network._cni.Cni`` with small fake plugins (shell scripts)."""

from __future__ import annotations

import json
import os
import stat
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from pathlib import Path

import pytest

from cove.model.errors import BadRequest
from cove.network import cni, dns
from cove.network._cni import Cni, CniFailed
from cove.network.model import validate_network_config, validate_network_type

GOLDEN = Path(__file__).parent / "golden"

LIST = {
    "cniVersion": "1.0.0", "name": "lab",
    "plugins": [
        {"type": "bridge", "bridge": "cni-lab0", "isGateway": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.222.7.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
        {"type": "firewall", "name": "ignored", "cniVersion": "0.3.1"},
    ],
}

RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni-lab0", "mac": "56:10:c8:17:f5:69"},
                   {"name": "veth16dc3ae2", "mac": "26:d7:d6:6a:f8:45"},
                   {"name": "eth0", "mac": "26:af:00:91:d5:af", "sandbox": "/run/x/netns"}],
    "ips": [{"interface": 2, "address": "10.222.7.2/24", "gateway": "10.222.7.1"},
            {"interface": 0, "address": "10.222.7.1/24"},
            {"interface": 2, "address": "fd00:7::2/64"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {"nameservers": ["10.222.7.1"], "search": ["lab"], "domain": "lab.example"},
}


def _golden(name: str, got: str) -> None:
    path = GOLDEN / name
    if os.environ.get("COVE_UPDATE_GOLDEN"):
        path.write_text(got)
    assert got == path.read_text()


# -- conflists ---------------------------------------------------------------------------

def test_conflist_parses_and_lists_its_binaries() -> None:
    conf = cni.parse_conflist(json.dumps(LIST))
    assert conf.name == "lab" and conf.cni_version == "1.0.0" and len(conf.plugins) == 3
    assert conf.types() == ["bridge", "host-local", "tuning", "firewall"]
    assert cni.parse_conflist(conf.to_json()) == conf


def test_single_plugin_config_is_a_list_of_one() -> None:
    conf = cni.parse_conflist(json.dumps({"cniVersion": "0.4.0", "name": "one",
                                          "type": "ptp", "ipMasq": False}))
    assert conf.plugins == ({"type": "ptp", "ipMasq": False},)


@pytest.mark.parametrize("doc, words", [
    ("", "JSON text"),
    ("[1]", "JSON object"),
    ("{", "not JSON"),
    ({"name": "x", "plugins": [{"type": "bridge"}]}, "cniVersion None"),
    ({"cniVersion": "0.2.0", "name": "x", "plugins": [{"type": "bridge"}]}, "0.2.0"),
    ({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}, "needs a name"),
    ({"cniVersion": "1.0.0", "name": "a b", "plugins": [{"type": "bridge"}]}, "needs a name"),
    ({"cniVersion": "1.0.0", "name": "x"}, "non-empty list"),
    ({"cniVersion": "1.0.0", "name": "x", "plugins": ["bridge"]}, "plugins[0] is not"),
    ({"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "/bin/sh"}]}, "plugins[0]"),
    ({"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "bridge", "ipam": {}}]},
     "plugins[0].ipam"),
    ({"cniVersion": "1.0.0", "name": "x",
      "plugins": [{"type": "bridge"}, {"type": "a/../b"}]}, "plugins[1]"),
])
def test_bad_conflists(doc: object, words: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(BadRequest, match="Invalid cni.config") as e:
        cni.parse_conflist(text)
    assert words in str(e.value)


def test_network_type_and_keys() -> None:
    assert validate_network_type("") == "bridge" and validate_network_type("cni") == "cni"
    with pytest.raises(BadRequest, match="not supported"):
        validate_network_type("macvlan")
    text = json.dumps(LIST)
    assert validate_network_config({"cni.config": text, "user.a": "b"}, "cni") == \
        {"cni.config": text, "user.a": "b"}
    with pytest.raises(BadRequest, match="Unknown configuration key of a cni network"):
        validate_network_config({"ipv4.address": "auto"}, "cni")
    with pytest.raises(BadRequest, match="Unknown network configuration key"):
        validate_network_config({"cni.config": text})  # a bridge has no cni.*
    with pytest.raises(BadRequest, match="directly in /etc/cni/net.d"):
        validate_network_config({"cni.path": "/etc/cni/net.d/../shadow"}, "cni")
    assert cni.validate_cni_path("/etc/cni/net.d/10-lab.conflist")
    cni.check_keys({"cni.path": "/etc/cni/net.d/x"})
    for bad in ({}, {"cni.path": "/etc/cni/net.d/x", "cni.config": text}):
        with pytest.raises(BadRequest, match="exactly one"):
            cni.check_keys(bad)


# -- each plugin's stdin -------------------------------------------------------------------

def test_plugin_stdin_chain_golden() -> None:
    """ADD in order, each with the previous result; DEL in reverse, each
    with the final result (1.0.0); the list's name and version win."""
    conf = cni.parse_conflist(json.dumps(LIST))
    r0 = {"cniVersion": "1.0.0", "ips": [{"address": "10.222.7.2/24"}]}
    lines = ["# ADD"]
    prev: dict[str, object] | None = None
    for i in range(3):
        lines.append(cni.plugin_stdin(conf, i, prev).decode())
        prev = r0 if i == 0 else RESULT
    lines.append("# DEL")
    for i in reversed(range(3)):
        lines.append(cni.plugin_stdin(conf, i, cni.del_prev_result(conf, RESULT)).decode())
    _golden("cni_stdin.txt", "\n".join(lines) + "\n")


def test_del_passes_no_prev_result_before_0_4_0() -> None:
    old = cni.parse_conflist(json.dumps({**LIST, "cniVersion": "0.3.1"}))
    assert cni.del_prev_result(old, RESULT) is None
    assert b"prevResult" not in cni.plugin_stdin(old, 0, cni.del_prev_result(old, RESULT))
    new = cni.parse_conflist(json.dumps(LIST))
    assert cni.del_prev_result(new, None) is None


# -- results and errors ----------------------------------------------------------------------

def test_result_of_the_container_interface() -> None:
    got = cni.attached(RESULT, "eth0")
    assert got.addresses == (IPv4Interface("10.222.7.2/24"), IPv6Interface("fd00:7::2/64"))
    assert got.gateways == (IPv4Address("10.222.7.1"),)
    assert got.mac == "26:af:00:91:d5:af" and got.host_peer == "veth16dc3ae2"
    assert got.nameservers == (IPv4Address("10.222.7.1"),) and got.search == ("lab",)
    assert got.domain == "lab.example"
    assert cni.attached(None, "eth0") == cni.Attached("eth0")
    # 0.3.x/0.4.0 results carry "version"; ips without an interface are the NIC's
    old = {"ips": [{"version": "4", "address": "10.1.0.5/16"}], "interfaces": "junk"}
    assert cni.attached(old, "eth0").addresses == (IPv4Interface("10.1.0.5/16"),)
    assert cni.attached({"ips": [{"address": "nope"}, 3]}, "eth0").addresses == ()


def test_plugin_errors_are_read_from_structured_output() -> None:
    out = b'{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no subnet"}'
    assert cni.parse_error(out) == (7, "bad config: no subnet")
    assert cni.parse_error(b'{"code":999,"msg":"boom"}') == (999, "boom")
    assert cni.parse_error(b"panic: oops") == (0, "")
    assert cni.parse_error(b"[]") == (0, "")
    with pytest.raises(ValueError):
        cni.parse_result(b"[]")


def test_resolv_from_host_drops_loopback_servers() -> None:
    host = ("# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n"
            "search corp.example\noptions edns0 trust-ad\nsortlist 10.0.0.0\n")
    assert dns.resolv_from_host(host) == ("nameserver 10.0.0.2\nsearch corp.example\n"
                                         "options edns0 trust-ad\n")
    assert dns.resolv_from_host("nameserver 127.0.0.1\n") == ""
    assert dns.container_hosts("web", "", [IPv4Address("10.0.0.2")]).endswith(
        "10.0.0.2\tweb\n")


# -- ADD and DEL with fake plugins -----------------------------------------------------------

PLUGIN = """#!/bin/sh
# a fake CNI plugin: log the call, then answer as $0's config says
me=$(basename "$0")
input=$(cat)
echo "$me $CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME ${CNI_NETNS:-none} $input" >> "$LOG"
if [ -e "$FAIL.$me.$CNI_COMMAND" ]; then
    echo '{"code": '"$(cat "$FAIL.$me.$CNI_COMMAND")"', "msg": "'"$me"' says no"}'
    exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
    if [ "$me" = first ]; then
        echo '{"cniVersion":"1.0.0","interfaces":[{"name":"h1"},{"name":"'"$CNI_IFNAME"'","sandbox":"x"}],"ips":[{"interface":1,"address":"10.9.0.2/24"}]}'
    else
        PYTHON -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])["prevResult"]))' "$input"
    fi
fi
"""


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Cni, Path, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log, fail = tmp_path / "log", tmp_path / "fail"
    for name in ("first", "second"):  # cove gives plugins no environment of its own
        p = bindir / name
        p.write_text(PLUGIN.replace("$LOG", str(log)).replace("$FAIL", str(fail))
                     .replace("PYTHON", sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return Cni(tmp_path / "root", "abc123", plugin_dirs=(str(bindir),)), log, fail


def _conf() -> cni.ConfList:
    return cni.parse_conflist(json.dumps({"cniVersion": "1.0.0", "name": "fake",
                                          "plugins": [{"type": "first"},
                                                      {"type": "second", "k": 1}]}))


def _calls(log: Path) -> list[list[str]]:
    return [line.split(" ", 5) for line in log.read_text().splitlines()]


def test_add_chains_results_and_del_runs_in_reverse(fake: tuple[Cni, Path, Path]) -> None:
    c, log, _ = fake
    att = c.add("web", "eth0", "lab", "eth0", _conf(), "/run/ns")
    assert cni.attached(att.result, "eth0").addresses == (IPv4Interface("10.9.0.2/24"),)
    assert [a.result for a in c.attachments("web")] == [att.result]
    calls = _calls(log)
    assert [x[:5] for x in calls] == [["first", "ADD", "cove-abc123-web", "eth0", "/run/ns"],
                                      ["second", "ADD", "cove-abc123-web", "eth0", "/run/ns"]]
    assert "prevResult" not in json.loads(calls[0][5])
    assert json.loads(calls[1][5])["prevResult"] == att.result
    assert c.instances() == ["web"]
    log.write_text("")
    assert c.release("web") == []
    calls = _calls(log)
    assert [x[:2] for x in calls] == [["second", "DEL"], ["first", "DEL"]]
    assert all(x[4] == "none" for x in calls)  # no pin mounted: no CNI_NETNS
    assert all(json.loads(x[5])["prevResult"] == att.result for x in calls)
    assert c.attachments("web") == [] and c.instances() == []


def test_failed_add_is_recorded_for_del(fake: tuple[Cni, Path, Path]) -> None:
    c, _, fail = fake
    Path(f"{fail}.second.ADD").write_text("999")
    with pytest.raises(CniFailed, match="plugin second failed: second says no") as e:
        c.add("web", "eth0", "lab", "eth0", _conf(), "/run/ns")
    assert e.value.code == 999
    [att] = c.attachments("web")
    assert att.result is not None  # first's result: DEL's prevResult
    assert c.release("web") == [] and c.instances() == []


def test_failed_del_is_kept_then_given_up(fake: tuple[Cni, Path, Path]) -> None:
    c, _, fail = fake
    c.add("web", "eth0", "lab", "eth0", _conf(), "/run/ns")
    Path(f"{fail}.first.DEL").write_text("11")  # try again later
    errs = c.release("web")
    assert len(errs) == 1 and "tried again" in errs[0]
    assert [a.del_failures for a in c.attachments("web")] == [1]
    assert "tried again" in c.release("web")[0]
    assert "given up" in c.release("web")[0]
    assert c.attachments("web") == [] and c.instances() == []
    # a request the plugin calls bad is not tried again
    c.add("db", "eth0", "lab", "eth0", _conf(), "/run/ns")
    Path(f"{fail}.first.DEL").write_text("7")
    assert "given up" in c.release("db")[0] and c.instances() == []


def test_missing_plugins_are_400(fake: tuple[Cni, Path, Path]) -> None:
    c, _, _ = fake
    conf = {"cniVersion": "1.0.0", "name": "x",
            "plugins": [{"type": "first", "ipam": {"type": "nosuch"}}, {"type": "gone"}]}
    with pytest.raises(BadRequest, match="plugins nosuch, gone not found"):
        c.load({"cni.config": json.dumps(conf)}, "Network n")
    assert c.load({"cni.config": _conf().to_json()}, "Network n") == _conf()
