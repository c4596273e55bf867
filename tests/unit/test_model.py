"""Model: names, config keys and values, signals, passwd parsing."""

from __future__ import annotations

import pytest

from cove.model import config as cfg
from cove.model.errors import BadRequest, Conflict, InternalError, NotFound, error_for_status
from cove.model.names import validate_alias_name, validate_instance_name
from cove.model.passwd import parse_group, parse_passwd, resolve_group, resolve_user


@pytest.mark.parametrize("name", ["a", "web", "web-1", "A1", "x" * 63])
def test_valid_instance_names(name: str) -> None:
    assert validate_instance_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "1a", "a-", "a_b", "a.b", "x" * 64, "a b", None, 5])
def test_invalid_instance_names(name: object) -> None:
    with pytest.raises(BadRequest):
        validate_instance_name(name)


@pytest.mark.parametrize("name", ["", "a/b", " a", "a\n"])
def test_invalid_aliases(name: str) -> None:
    with pytest.raises(BadRequest):
        validate_alias_name(name)


def test_validate_config_accepts_known_and_free_keys() -> None:
    got = cfg.validate_config({
        "limits.memory": "256MB", "limits.cpu": "2", "limits.processes": 100,
        "environment.FOO": "bar", "user.note": "x", "boot.autostart": True,
        "cove.cmd": "/bin/sh -c 'sleep 3; exit 5'", "cove.halt": "SIGINT",
        "cove.uid": "1000", "volatile.base_image": "abc",
        "cove.hostname": "front", "cove.dns.aliases": "web, www",
    })
    assert got["limits.processes"] == "100"
    assert got["boot.autostart"] == "true"


@pytest.mark.parametrize("key,value", [
    ("limits.memory", "lots"), ("limits.memory", "1KB"), ("limits.memory", "150%"),
    ("limits.cpu", "0"), ("limits.cpu", "3-1"), ("limits.cpu", "two"),
    ("limits.processes", "-1"), ("cove.cmd", "'unclosed"),
    ("cove.cwd", "relative"), ("cove.uid", "root"), ("cove.halt", "SIGNOPE"),
    ("boot.autostart", "maybe"), ("nope.key", "1"), ("environment.", "x"),
    ("cove.uid", "4294967294"), ("cove.gid", "2147483648"), ("environment.X", "a\0b"),
    ("environment.A=B", "x"), ("user.note\0", "x"), ("cove.cmd", "sh -c 'a\0'"),
    ("cove.hostname", "not_a_label"), ("cove.hostname", "-x"), ("cove.dns.aliases", "db,a b"),
    ("cove.dns.aliases", "web.example"),
])
def test_validate_config_rejects(key: str, value: str) -> None:
    with pytest.raises(BadRequest) as e:
        cfg.validate_config({key: value})
    assert key.split(".", maxsplit=1)[0] in str(e.value) or value in str(e.value) or "key" in str(e.value)


@pytest.mark.parametrize("text,expected", [
    ("256MB", 256 * 10**6), ("1GiB", 2**30), ("512M", 512 * 2**20), ("8388608", 8388608),
])
def test_parse_memory(text: str, expected: int) -> None:
    assert cfg.parse_memory(text) == expected


def test_parse_memory_percent_of_host() -> None:
    assert cfg.parse_memory("50%", host_total=1000 * 2**20) == 500 * 2**20


def test_resources_from_config() -> None:
    r = cfg.resources_from_config({"limits.memory": "64MiB", "limits.cpu": "2",
                                   "limits.processes": "10"})
    # a hard limit comes with LXD's soft limit 10% below it
    assert r == cfg.Resources(memory=64 * 2**20, cpu_quota=200_000, cpu_period=100_000,
                              cpus=None, pids=10, memory_reservation=int(64 * 2**20 * 0.9))
    r = cfg.resources_from_config({"limits.cpu": "0-1", "limits.cpu.allowance": "25ms/100ms"})
    assert (r.cpus, r.cpu_quota, r.cpu_period) == ("0-1", 25_000, 100_000)
    assert cfg.resources_from_config({}) == cfg.Resources()


def test_command_and_environment_from_config() -> None:
    c = {"cove.cmd": "/bin/sh -c 'sleep 3; exit 5'", "environment.A": "1"}
    assert cfg.command_from_config(c, ["/sbin/init"]) == ["/bin/sh", "-c", "sleep 3; exit 5"]
    assert cfg.command_from_config({}, ["/sbin/init"]) == ["/sbin/init"]
    assert cfg.environment_from_config(c) == {"A": "1"}


@pytest.mark.parametrize("text,num", [("SIGTERM", 15), ("term", 15), ("9", 9), ("SIGPWR", 30)])
def test_parse_signal(text: str, num: int) -> None:
    assert cfg.parse_signal(text) == num


def test_error_for_status() -> None:
    assert isinstance(error_for_status(404, "x"), NotFound)
    assert isinstance(error_for_status(409, "x"), Conflict)
    assert isinstance(error_for_status(418, "x"), BadRequest)
    assert isinstance(error_for_status(502, "x"), InternalError)


PASSWD = """root:x:0:0:root:/root:/bin/sh
# comment
app:x:1000:1001:app:/home/app:/bin/sh
broken line
"""


def test_passwd_resolution() -> None:
    users = parse_passwd(PASSWD)
    assert resolve_user("app", users).uid == 1000
    assert resolve_user("app", users).gid == 1001
    assert resolve_user(1000, users).home == "/home/app"
    assert resolve_user("4242", users).uid == 4242
    with pytest.raises(BadRequest, match="not found"):
        resolve_user("ghost", users)
    groups = parse_group("root:x:0:\napp:x:1001:\n")
    assert resolve_group("app", groups) == 1001
    assert resolve_group(7, groups) == 7
    with pytest.raises(BadRequest):
        resolve_group("ghost", groups)
