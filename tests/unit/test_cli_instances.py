"""``cove launch/list/info/start/stop/delete/rename/config/logs`` against the fake server."""

from __future__ import annotations

import json
import os

import pytest
from test_client_fakelxd import (
    FakeLXD,
    FakeOp,
    Reply,
    Request,
    async_,
    error,
    sync,
)

from cove.cli import render
from cove.cli.instances import image_source, info_text
from cove.cli.main import main

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)

STATE = {
    "status": "Running", "status_code": 103, "pid": 4242, "processes": 3,
    "cpu": {"usage": 2_500_000_000},
    "memory": {"usage": 1_572_864, "usage_peak": 3_145_728},
    "network": {
        "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8",
                              "scope": "local"}]},
        "eth0": {"type": "broadcast", "state": "up", "host_name": "veth1a2b",
                 "hwaddr": "00:16:3e:00:00:01", "mtu": 1500,
                 "counters": {"bytes_received": 1234, "bytes_sent": 456,
                              "packets_received": 10, "packets_sent": 5},
                 "addresses": [
                     {"family": "inet", "address": "10.0.3.5", "netmask": "24",
                      "scope": "global"},
                     {"family": "inet6", "address": "fe80::1", "netmask": "64",
                      "scope": "link"}]}},
}
WEB = {"name": "web", "status": "Running", "type": "container", "ephemeral": False,
       "architecture": "x86_64", "created_at": "2024-05-01T10:20:30.123456789Z",
       "last_used_at": "2024-05-01T12:00:00Z", "profiles": ["default"], "devices": {},
       "description": "", "stateful": False,
       "config": {"limits.memory": "256MiB", "volatile.last_state.exit_code": "0",
                  "image.description": "busybox 1.36"},
       "expanded_config": {"limits.memory": "256MiB", "limits.cpu": "1"},
       "state": STATE}
DB = {"name": "db", "status": "Stopped", "type": "container", "ephemeral": True,
      "architecture": "x86_64", "created_at": "2024-04-30T08:00:00+02:00",
      "last_used_at": "0001-01-01T00:00:00Z", "config": {}, "devices": {},
      "profiles": ["default"], "state": {"status": "Stopped", "network": None}}


@pytest.fixture
def cli(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    fake.route("GET", "/1.0/instances")(lambda req: sync(
        [WEB, DB] if req.query.get("recursion") == "2" else [
            {k: v for k, v in i.items() if k != "state"} for i in (WEB, DB)]))
    return run


# -- list ----------------------------------------------------------------------------

TABLE = """\
+------+---------+-----------------+-----------------------+----------------------+
| NAME |  STATE  |      IPV4       |         TYPE          |       CREATED        |
+------+---------+-----------------+-----------------------+----------------------+
| db   | STOPPED |                 | CONTAINER (EPHEMERAL) | 2024/04/30 06:00 UTC |
+------+---------+-----------------+-----------------------+----------------------+
| web  | RUNNING | 10.0.3.5 (eth0) | CONTAINER             | 2024/05/01 10:20 UTC |
+------+---------+-----------------+-----------------------+----------------------+
"""


def test_list_table(cli, fake: FakeLXD) -> None:
    code, out, err = cli("list")
    assert (code, err) == (0, "")
    assert out == TABLE
    # only the state part the columns need (LXD's instances_state_selective_recursion)
    # and only their keys (cove's cove_instances_keys: this fake, as LXD, ignores it)
    assert fake.find("GET", "/1.0/instances")[0].query == {
        "recursion": "2", "fields": "state.network",
        "cove-keys": "name,status,type,ephemeral,created_at,state.network,state.cove"}


def test_list_csv_json_compact_yaml(cli, fake: FakeLXD) -> None:
    code, out, _ = cli("list", "--format", "csv")
    assert code == 0
    assert out == ("db,STOPPED,,CONTAINER (EPHEMERAL),2024/04/30 06:00 UTC\n"
                   "web,RUNNING,10.0.3.5 (eth0),CONTAINER,2024/05/01 10:20 UTC\n")
    code, out, _ = cli("list", "--format", "json")
    assert "cove-keys" not in fake.find("GET", "/1.0/instances")[-1].query  # whole objects
    assert [i["name"] for i in json.loads(out)] == ["db", "web"]
    assert json.loads(out)[1]["state"]["pid"] == 4242
    code, out, _ = cli("ls", "-f", "compact", "we")
    assert out == ("NAME  STATE    IPV4             TYPE       CREATED\n"
                   "web   RUNNING  10.0.3.5 (eth0)  CONTAINER  2024/05/01 10:20 UTC\n")
    code, out, _ = cli("list", "--format", "yaml", "db")
    assert out.startswith("- name: db\n")


def test_list_empty_is_just_the_header(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/instances")(lambda req: sync([]))
    code, out, _ = cli("list")
    assert code == 0 and out.count("\n") == 3 and "NAME" in out


def test_table_multiline_cells() -> None:
    out = render.table(["A", "B"], [["x\ny", "z"]])
    assert out.splitlines()[3:5] == ["| x | z |", "| y |   |"]


@pytest.mark.parametrize(("value", "shown"), [
    ("2024-05-01T10:20:30.123456789Z", "2024/05/01 10:20 UTC"),
    ("2024-05-01T12:20:30+02:00", "2024/05/01 10:20 UTC"),
    ("2024-05-01T10:20:30", "2024/05/01 10:20 UTC"),
    ("0001-01-01T00:00:00Z", ""), ("1970-01-01T00:00:00Z", ""), ("", ""), (None, ""), (0, ""),
    (1714558830, "2024/05/01 10:20 UTC"), ("garbage", "garbage"),
    ("2024-05-01T10:20:30+00:00", "2024/05/01 10:20 UTC"),
    ("2024-05-01t10:20:30.5z", "2024/05/01 10:20 UTC"),
    ("1970-01-01T00:00:00.000Z", ""), ("0001-01-01T00:00:00+00:00", ""),
    ("2024-13-01T10:20:30Z", "2024-13-01T10:20:30Z"),  # not a time: shown as sent
])
def test_timestamps(value: object, shown: str) -> None:
    assert render.timestamp(value) == shown


def test_utc_timestamps_fast_path_agrees_with_datetime() -> None:
    """The character-level path for UTC times says what datetime says."""
    import random
    from datetime import UTC, datetime

    rnd = random.Random(14)
    for _ in range(500):
        t = datetime.fromtimestamp(rnd.uniform(86400, 4e9), UTC)
        frac = rnd.choice(["", ".5", ".123456", ".123456789"])
        text = t.strftime("%Y-%m-%dT%H:%M:%S") + frac + rnd.choice(["Z", "+00:00"])
        assert render._utc_minutes(text) == t.strftime("%Y/%m/%d %H:%M UTC"), text


def test_sizes() -> None:
    assert render.bytes_iec(512) == "512B"
    assert render.bytes_iec(1_572_864) == "1.50MiB"
    assert render.bytes_si(1234) == "1.23kB"
    assert render.bytes_iec(None) == "0B"


# -- info ----------------------------------------------------------------------------

INFO = """\
Name: web
Status: RUNNING
Type: container
Architecture: x86_64
Image: busybox 1.36
PID: 4242
Created: 2024/05/01 10:20 UTC
Last Used: 2024/05/01 12:00 UTC
Last Exit Code: 0

Resources:
  Processes: 3
  CPU usage:
    CPU usage (in seconds): 2
  Memory usage:
    Memory (current): 1.50MiB
    Memory (peak): 3.00MiB
  Network usage:
    eth0:
      Type: broadcast
      State: UP
      Host interface: veth1a2b
      MAC address: 00:16:3e:00:00:01
      MTU: 1500
      Bytes received: 1.23kB
      Bytes sent: 456B
      Packets received: 10
      Packets sent: 5
      IP addresses:
        inet:  10.0.3.5/24 (global)
        inet6:  fe80::1/64 (link)
"""


def test_info(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/instances/web")(lambda req: sync(WEB))
    fake.route("GET", "/1.0/instances/web/state")(lambda req: sync(STATE))
    code, out, err = cli("info", "web")
    assert (code, err) == (0, "")
    assert out == INFO


def test_info_stopped_without_resources() -> None:
    out = info_text(DB, {"status": "Stopped", "pid": 0, "processes": -1})
    assert "PID" not in out and "Resources" not in out
    assert "Type: container (ephemeral)" in out and "Last Used: \n" in out


def test_info_without_name_shows_server(cli) -> None:
    code, out, _ = cli("info")
    assert code == 0 and "Server: cove" in out and "API version: 1.0" in out


# -- create and state ------------------------------------------------------------------

def test_image_source() -> None:
    assert image_source("busybox") == {"type": "image", "alias": "busybox"}
    assert image_source("3f2a9c81d0e4") == {"type": "image", "fingerprint": "3f2a9c81d0e4"}
    assert image_source("deadbeef") == {"type": "image", "alias": "deadbeef"}


def test_launch_creates_and_starts_in_one_operation(fake: FakeLXD, cli) -> None:
    fake.route("POST", "/1.0/instances")(lambda req: fake.finished())
    code, out, err = cli("launch", "busybox", "c1", "-c", "limits.cpu=1", "-c",
                         "environment.A=b=c", "-e")
    assert (code, err) == (0, "")
    assert out == "Launching c1\n"
    body = fake.find("POST", "/1.0/instances")[0].json()
    assert body["name"] == "c1" and body["ephemeral"] is True and body["start"] is True
    assert body["source"] == {"type": "image", "alias": "busybox"}
    assert body["config"] == {"limits.cpu": "1", "environment.A": "b=c"}
    assert not [r for r in fake.requests if r.path.endswith("/state")]


def test_init_does_not_start_and_makes_a_name(fake: FakeLXD, cli) -> None:
    fake.route("POST", "/1.0/instances")(lambda req: fake.finished())
    code, out, _ = cli("-q", "init", "busybox")
    assert code == 0 and out == ""
    name = fake.find("POST", "/1.0/instances")[0].json()["name"]
    assert name.count("-") == 2
    assert not [r for r in fake.requests if r.path.endswith("/state")]


def test_create_failure_is_error_line(fake: FakeLXD, cli) -> None:
    op = fake.add_op(FakeOp()).fail("Image 'nope' not found", error_code=404)
    fake.route("POST", "/1.0/instances")(lambda req: async_(op))
    code, _out, err = cli("launch", "nope", "c1")
    assert code == 1 and err == "Error: Image 'nope' not found\n"


def test_stop_many_reports_each_failure(fake: FakeLXD, cli) -> None:
    fake.route("PUT", "/1.0/instances/a/state")(lambda req: fake.finished())
    fake.route("PUT", "/1.0/instances/b/state")(lambda req: error(404, "Instance not found"))
    code, _out, err = cli("stop", "-f", "--timeout", "5", "a", "b")
    assert code == 1 and err == "Error: b: Instance not found\n"
    assert fake.find("PUT", "/1.0/instances/a/state")[0].json() == {
        "action": "stop", "timeout": 5, "force": True, "stateful": False}


@pytest.mark.parametrize(("cmd", "action"), [("start", "start"), ("restart", "restart"),
                                             ("pause", "freeze"), ("resume", "unfreeze")])
def test_state_actions(fake: FakeLXD, cli, cmd: str, action: str) -> None:
    fake.route("PUT", "/1.0/instances/web/state")(lambda req: fake.finished())
    assert cli(cmd, "web")[0] == 0
    assert fake.find("PUT", "/1.0/instances/web/state")[0].json()["action"] == action


def test_start_all_picks_stopped(fake: FakeLXD, cli) -> None:
    fake.route("PUT", "/1.0/instances/db/state")(lambda req: fake.finished())
    assert cli("start", "--all")[0] == 0
    assert [r.path for r in fake.requests if r.method == "PUT"] == ["/1.0/instances/db/state"]


def test_start_without_names_is_usage_error(cli) -> None:
    code, _, err = cli("start")
    assert code == 2 and err.startswith("Error: give instance names")


def test_delete_force_stops_running_first(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/instances/web")(lambda req: sync(WEB))
    fake.route("PUT", "/1.0/instances/web/state")(lambda req: fake.finished())
    fake.route("DELETE", "/1.0/instances/web")(lambda req: fake.finished())
    assert cli("delete", "-f", "web")[0] == 0
    stop = fake.find("PUT", "/1.0/instances/web/state")[0].json()
    assert stop["action"] == "stop" and stop["force"] is True
    assert fake.find("DELETE", "/1.0/instances/web")


def test_delete_without_force_does_not_stop(fake: FakeLXD, cli) -> None:
    fake.route("DELETE", "/1.0/instances/web")(
        lambda req: error(400, "Instance is running"))
    code, _, err = cli("rm", "web")
    assert code == 1 and err == "Error: Instance is running\n"
    assert not fake.find("PUT", "/1.0/instances/web/state")


def test_rename(fake: FakeLXD, cli) -> None:
    fake.route("POST", "/1.0/instances/web")(lambda req: fake.finished())
    assert cli("rename", "web", "www")[0] == 0
    assert fake.find("POST", "/1.0/instances/web")[0].json() == {"name": "www"}


# -- config ----------------------------------------------------------------------------

def test_config_get_show(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/instances/web")(lambda req: sync(WEB))
    assert cli("config", "get", "web", "limits.memory")[1] == "256MiB\n"
    assert cli("config", "get", "web", "nope")[1] == "\n"
    assert cli("config", "get", "--expanded", "web", "limits.cpu")[1] == "1\n"
    code, out, _ = cli("config", "show", "web")
    assert code == 0 and "limits.memory: 256MiB" in out and "pid" not in out
    assert out.startswith("architecture: x86_64\n")


def test_config_set_patches(fake: FakeLXD, cli) -> None:
    fake.route("PATCH", "/1.0/instances/web")(lambda req: sync({}))
    assert cli("config", "set", "web", "limits.memory", "1GiB")[0] == 0
    assert cli("config", "set", "web", "a=1", "b=2")[0] == 0
    bodies = [r.json() for r in fake.find("PATCH", "/1.0/instances/web")]
    assert bodies == [{"config": {"limits.memory": "1GiB"}}, {"config": {"a": "1", "b": "2"}}]


def test_config_unset_puts_without_key(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/instances/web")(lambda req: sync(WEB))
    fake.route("PUT", "/1.0/instances/web")(lambda req: fake.finished())
    assert cli("config", "unset", "web", "limits.memory")[0] == 0
    body = fake.find("PUT", "/1.0/instances/web")[0].json()
    assert "limits.memory" not in body["config"]
    assert body["config"]["volatile.last_state.exit_code"] == "0"
    assert set(body) == {"architecture", "config", "devices", "ephemeral", "profiles",
                         "stateful", "description"}
    assert cli("config", "unset", "web", "not.there")[0] == 0
    assert len(fake.find("PUT", "/1.0/instances/web")) == 1


# -- logs ------------------------------------------------------------------------------

def test_logs(fake: FakeLXD, cli) -> None:
    def log(req: Request) -> Reply:
        if req.query.get("follow") == "1":
            return Reply(200, chunks=iter([b"a\n", b"b\n"]))
        return Reply(200, b"a\n")

    fake.route("GET", "/1.0/instances/web/logs/console.log")(log)
    assert cli("logs", "web") == (0, "a\n", "")
    assert cli("logs", "-f", "web") == (0, "a\nb\n", "")
