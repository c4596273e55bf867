"""The driver flows (convergence, undo, retries, waits) on a fake host, the REST
steps on scripted answers, file flows, the factory and the exported names.

The fake host is a small typed handler (``FakeHost._do``), not a mock: it keeps
instances in a dict and answers each step the way a host would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import cove.client
from cove.client import _wire as wire
from cove.client._exec import CommandFailed, CommandNotFound, ExecResult
from cove.client._flow import drive
from cove.client._http import Response
from cove.client.drivers import _rest_steps
from cove.client.drivers.base import (
    Action,
    Create,
    Delete,
    Driver,
    GetInstance,
    GetState,
    ListImages,
    Progress,
    RunCommand,
    Sleep,
    Step,
    Update,
    first_global_address,
    flows,
    image_source,
)
from cove.client.transports import _trees as trees
from cove.client.transports.base import Transport, check_container_path
from cove.client.transports.local import LocalTransport
from cove.model.errors import (
    BadRequest,
    Conflict,
    CoveError,
    InternalError,
    NotFound,
    Timeout,
)


class FakeHost(Driver):
    """Instances in a dict; ``fail`` makes the next step of a kind raise."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.steps: list[Step] = []
        self.fail: dict[type, CoveError] = {}
        self.images = [{"fingerprint": "aaa", "properties": {"os": "busybox"},
                        "created_at": "2026-01-01", "aliases": [{"name": "bb"}]},
                       {"fingerprint": "bbb", "properties": {"os": "busybox"},
                        "created_at": "2026-02-01", "aliases": []}]
        self.stop_ignored = 0  # how many graceful stops the container ignores
        self.ips: list[str] = []
        self.files: dict[str, bytes] = {}
        self.ready_codes: list[int] = []

    def transport_for(self, name: str) -> Transport:
        raise AssertionError("not used")

    def _do(self, step: Step) -> Any:
        self.steps.append(step)
        err = self.fail.pop(type(step), None)
        if err is not None:
            raise err
        if isinstance(step, GetInstance):
            inst = self.instances.get(step.name)
            return dict(inst) if inst else None
        if isinstance(step, GetState):
            if step.name not in self.instances:
                raise NotFound("Instance not found")
            addrs = [{"family": "inet", "address": ip, "scope": "global"}
                     for ip in self.ips[:1]]
            if self.ips:
                self.ips.pop(0)
            return {"status": self.instances[step.name]["status"],
                    "network": {"eth0": {"addresses": addrs}}}
        if isinstance(step, ListImages):
            return self.images
        if isinstance(step, Create):
            if step.name in self.instances:
                raise Conflict("exists")
            post = step.post
            self.instances[step.name] = {"name": step.name, "status": "Stopped",
                                         "config": dict(post.config),
                                         "devices": dict(post.devices),
                                         "profiles": post.profiles or ["default"],
                                         "source": post.source.to_wire()}
            return None
        if isinstance(step, Update):
            inst = self.instances[step.name]
            if step.patch:
                inst["config"].update(step.body.get("config", {}))
                inst["devices"].update(step.body.get("devices", {}))
            else:
                inst.update(step.body)
            if "profiles" in step.body:
                inst["profiles"] = step.body["profiles"]
            return None
        if isinstance(step, Action):
            inst = self.instances[step.name]
            if step.action == "start":
                if inst["status"] == "Running":
                    raise BadRequest("already running")
                inst["status"] = "Running"
            elif step.action == "unfreeze":
                inst["status"] = "Running"
            elif step.action == "stop":
                if inst["status"] == "Stopped":
                    raise BadRequest("already stopped")
                if not step.force and self.stop_ignored > 0:
                    self.stop_ignored -= 1
                    raise InternalError("Failed shutting down instance: timeout")
                inst["status"] = "Stopped"
            return None
        if isinstance(step, Delete):
            if step.name not in self.instances:
                raise NotFound("Instance not found")
            if self.instances[step.name]["status"] != "Stopped":
                raise BadRequest("Instance is running")
            del self.instances[step.name]
            return None
        if isinstance(step, RunCommand):
            if step.command[0] == "cat":
                data = self.files.get(step.command[1])
                return (0, data) if data is not None else (1, b"")
            return (self.ready_codes.pop(0) if self.ready_codes else 0), b""
        if isinstance(step, Sleep):
            return None
        raise AssertionError(step)


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


def _kinds(host: FakeHost) -> list[str]:
    return [type(s).__name__ for s in host.steps if not isinstance(s, Sleep)]


# -- convergence ------------------------------------------------------------------------

def test_create_is_convergent_and_starts(host: FakeHost) -> None:
    seen: list[Progress] = []
    assert host.create_container("c1", alias="bb", config={"limits.cpu": 1, "x.y": True},
                                 progress=seen.append) == "c1"
    inst = host.instances["c1"]
    assert inst["status"] == "Running"
    assert inst["config"] == {"limits.cpu": "1", "x.y": "true"}
    assert inst["source"] == {"type": "image", "alias": "bb"}
    assert [p.stage for p in seen] == ["create", "start"]
    host.steps.clear()
    host.create_container("c1", alias="bb")  # exists and runs: nothing
    assert _kinds(host) == ["GetInstance", "GetInstance"]


def test_create_without_autostart_and_existing_one_is_left_alone(host: FakeHost) -> None:
    host.create_container("c1", alias="bb", autostart=False)
    assert host.instances["c1"]["status"] == "Stopped"
    host.create_container("c1", alias="other", config={"a.b": "1"}, autostart=False)
    assert host.instances["c1"]["config"] == {}


def test_create_undoes_when_the_start_fails(host: FakeHost) -> None:
    host.fail[Action] = InternalError("runc says no")
    with pytest.raises(InternalError, match="runc says no"):
        host.create_container("c1", alias="bb")
    assert "c1" not in host.instances


def test_create_raced_by_another_creator_converges(host: FakeHost) -> None:
    host.fail[Create] = Conflict("Instance 'c1' already exists")
    host.instances["c1"] = {"name": "c1", "status": "Stopped", "config": {}, "devices": {}}
    host.create_container("c1", alias="bb")
    assert host.instances["c1"]["status"] == "Running"


def test_create_by_properties_picks_the_newest_match(host: FakeHost) -> None:
    host.create_container("c1", properties={"os": "busybox"}, autostart=False)
    assert host.instances["c1"]["source"] == {"type": "image", "fingerprint": "bbb"}
    with pytest.raises(NotFound, match="No image has the properties"):
        host.create_container("c2", properties={"os": "plan9"})
    assert "c2" not in host.instances


@pytest.mark.parametrize("kwargs", [
    {}, {"alias": "a", "fingerprint": "f"}, {"protocol": "simplestreams", "alias": "a"}])
def test_image_options_are_checked_first(host: FakeHost, kwargs: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        host.create_container("c1", **kwargs)
    assert host.steps == []


@pytest.mark.parametrize("name", ["", "-rf", "a b", "x" * 64, "1abc", "ab-", "a/b"])
def test_bad_names_are_refused_before_any_step(host: FakeHost, name: str) -> None:
    for call in (lambda: host.create_container(name, alias="bb"),
                 lambda: host.start_container(name), lambda: host.delete_container(name),
                 lambda: host.container_status(name), lambda: host.wait_for(name, "ip", 1)):
        with pytest.raises(BadRequest):
            call()
    assert host.steps == []


def test_image_source_with_a_server() -> None:
    assert image_source(alias="debian/12", fingerprint=None, properties=None,
                        server="https://images.example", protocol="simplestreams") == {
        "type": "image", "alias": "debian/12", "server": "https://images.example",
        "protocol": "simplestreams", "mode": "pull"}


def test_start_stop_delete_converge(host: FakeHost) -> None:
    host.create_container("c1", alias="bb")
    host.start_container("c1")
    host.stop_container("c1")
    host.stop_container("c1")
    assert host.instances["c1"]["status"] == "Stopped"
    host.start_container("c1")
    host.delete_container("c1")  # running: killed first
    assert "c1" not in host.instances
    host.delete_container("c1")
    assert [s for s in host.steps if isinstance(s, Action)][-1] == \
        Action("c1", "stop", force=True, timeout=-1)


def test_start_thaws_a_frozen_one(host: FakeHost) -> None:
    host.instances["c1"] = {"name": "c1", "status": "Frozen"}
    host.start_container("c1")
    assert host.instances["c1"]["status"] == "Running"
    assert any(isinstance(s, Action) and s.action == "unfreeze" for s in host.steps)


def test_missing_containers(host: FakeHost) -> None:
    for call in (lambda: host.start_container("c1"), lambda: host.stop_container("c1"),
                 lambda: host.container_status("c1"), lambda: host.container("c1"),
                 lambda: host.container_state("c1"), lambda: host.wait_for("c1", "ip", 1),
                 lambda: host.update_container("c1", config={"a.b": "1"})):
        with pytest.raises(NotFound):
            call()


def test_a_start_that_lost_a_race_is_success(host: FakeHost) -> None:
    host.instances["c1"] = {"name": "c1", "status": "Stopped"}
    host.fail[Action] = BadRequest("The instance is already running")
    original = host._do

    def raced(step: Step) -> Any:
        if isinstance(step, Action):
            host.instances["c1"]["status"] = "Running"  # the other starter won
        return original(step)

    host._do = raced  # type: ignore[method-assign]
    host.start_container("c1")


def test_busy_instances_are_retried(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    host.instances["c1"] = {"name": "c1", "status": "Running"}
    host.fail[Action] = Conflict("c1 is busy: operation X is in flight")
    host.stop_container("c1", force=True)
    assert host.instances["c1"]["status"] == "Stopped"
    monkeypatch.setattr(flows, "busy_wait", 0)
    host.instances["c1"]["status"] = "Running"
    host.fail[Action] = Conflict("c1 is busy")
    with pytest.raises(Conflict):
        host.stop_container("c1", force=True)


def test_stop_retries_then_times_out(host: FakeHost) -> None:
    host.instances["c1"] = {"name": "c1", "status": "Running"}
    host.stop_ignored = 2
    host.stop_container("c1", retry_interval=1, retry_count=2)
    assert host.instances["c1"]["status"] == "Stopped"
    stops = [s for s in host.steps if isinstance(s, Action)]
    assert [s.timeout for s in stops] == [1, 1, 1] and not any(s.force for s in stops)
    host.instances["c1"]["status"] = "Running"
    host.stop_ignored = 5
    with pytest.raises(Timeout, match="did not stop cleanly.*after 2 attempts"):
        host.stop_container("c1", retry_interval=1, retry_count=1)
    assert host.instances["c1"]["status"] == "Running"  # left running, as asked
    with pytest.raises(BadRequest):
        host.stop_container("c1", timeout=-1)


def test_update_merges_and_removes(host: FakeHost) -> None:
    host.instances["c1"] = {"name": "c1", "status": "Stopped", "architecture": "x86_64",
                            "config": {"a.b": "1", "volatile.x": "v"},
                            "devices": {"d": {"type": "disk"}}, "profiles": ["default"],
                            "ephemeral": False, "description": ""}
    host.update_container("c1", config={"c.d": 2})
    assert host.steps[-1] == Update("c1", {"config": {"c.d": "2"}}, patch=True)
    host.update_container("c1", config={"a.b": None}, devices={"d": None},
                          profiles=["default", "p2"])
    put = host.steps[-1]
    assert isinstance(put, Update) and not put.patch
    assert put.body["config"] == {"volatile.x": "v", "c.d": "2"}
    assert put.body["devices"] == {} and put.body["profiles"] == ["default", "p2"]


# -- waiting ------------------------------------------------------------------------------

def test_wait_for_ip_ready_and_cloud_init(host: FakeHost) -> None:
    host.instances["c1"] = {"name": "c1", "status": "Running", "config": {}}
    host.ips = ["10.0.0.5"]
    assert host.wait_for("c1", "ip", 5) == "10.0.0.5"
    host.ready_codes = [1, 1, 0]
    assert host.wait_for("c1", "ready", 5) is True
    host.instances["c1"]["config"] = {"user.cove.ready": "test -e /tmp/up"}
    host.wait_for("c1", "ready", 5)
    assert [s for s in host.steps if isinstance(s, RunCommand)][-1] == \
        RunCommand("c1", ("sh", "-c", "test -e /tmp/up"))
    with pytest.raises(Timeout, match="cloud-init has not finished"):
        host.wait_for("c1", "cloud_init", 0.2)
    host.files["/run/cloud-init/result.json"] = b'{"v1": {"errors": []}}'
    assert host.wait_for("c1", "cloud_init", 1) is True
    host.files["/run/cloud-init/result.json"] = b'{"v1": {"errors": ["boom"]}}'
    with pytest.raises(CoveError, match="boom"):
        host.wait_for("c1", "cloud_init", 1)
    with pytest.raises(BadRequest, match="Cannot wait for"):
        host.wait_for("c1", "coffee", 1)


def test_wait_for_says_why_it_timed_out(host: FakeHost) -> None:
    host.instances["c1"] = {"name": "c1", "status": "Stopped", "config": {}}
    with pytest.raises(Timeout, match=r"not given an IP address within 0.1s \(it is stopped\)"):
        host.wait_for("c1", "ip", 0.1)


def test_first_global_address() -> None:
    state = {"network": {
        "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "scope": "local"}]},
        "eth0": {"addresses": [
            {"family": "inet6", "address": "fe80::1", "scope": "link"},
            {"family": "inet6", "address": "fd00::5", "scope": "global"},
            {"family": "inet", "address": "10.1.2.3", "scope": "global"}]}}}
    assert first_global_address(state) == "10.1.2.3"
    state["network"]["eth0"]["addresses"].pop()
    assert first_global_address(state) == "fd00::5"
    assert first_global_address({"network": None}) is None


# -- REST steps on scripted answers ---------------------------------------------------------

def _env(md: Any, *, type_: str = "sync", status: int = 200) -> Response:
    body = {"type": type_, "status": "Success", "status_code": 200, "metadata": md,
            "error_code": 0, "error": "", "operation": ""}
    return Response(status, {}, json.dumps(body).encode())


def _err(code: int, msg: str) -> Response:
    return Response(code, {}, json.dumps({"type": "error", "error_code": code,
                                          "error": msg, "metadata": None}).encode())


def _script(answers: list[Response]) -> tuple[list[wire.Request], Any]:
    sent: list[wire.Request] = []

    def send(req: wire.Request) -> Response:
        sent.append(req)
        return answers.pop(0)
    return sent, send


def test_rest_get_instance_missing_is_none() -> None:
    sent, send = _script([_err(404, "Instance not found")])
    assert drive(_rest_steps.perform(GetInstance("c1")), send) is None
    assert sent[0].path == "/1.0/instances/c1"


def test_rest_action_waits_with_progress() -> None:
    op = {"id": "op1", "status": "Running", "metadata": None}
    running = dict(op, metadata={"progress": {"stage": "start", "percent": "50"}})
    done = dict(op, status="Success", metadata={"progress": {"stage": "start",
                                                             "percent": "100"}})
    sent, send = _script([_env(op, type_="async", status=202), _env(running), _env(done)])
    seen: list[Progress] = []
    drive(_rest_steps.perform(Action("c1", "start", progress=seen.append)), send)
    assert [r.path for r in sent] == ["/1.0/instances/c1/state",
                                      "/1.0/operations/op1/wait?timeout=1",
                                      "/1.0/operations/op1/wait?timeout=1"]
    assert sent[0].body == {"action": "start", "timeout": -1, "force": False,
                            "stateful": False}
    assert seen == [Progress("start", 50), Progress("start", 100)]


def test_rest_failed_operation_raises_its_class() -> None:
    op = {"id": "op1", "status": "Running"}
    failed = dict(op, status="Failure", err="Instance is running",
                  metadata={"cove.error_code": 400})
    _, send = _script([_env(op, type_="async", status=202), _env(failed)])
    with pytest.raises(BadRequest, match="Instance is running"):
        drive(_rest_steps.perform(Delete("c1")), send)


def test_rest_run_command_takes_lxd_127_as_an_exit_code() -> None:
    op = {"id": "op1", "status": "Running"}
    failed = dict(op, status="Failure", err="Command not found", metadata={"return": 127})
    _, send = _script([_env(op, type_="async", status=202), _env(failed), _env(failed)])
    assert drive(_rest_steps.perform(RunCommand("c1", ("x",))), send) == (127, b"")


def test_rest_run_command_reads_and_removes_its_output() -> None:
    op = {"id": "op1", "status": "Running"}
    logs = {"1": "/1.0/instances/c1/logs/exec_op1.stdout",
            "2": "/1.0/instances/c1/logs/exec_op1.stderr"}
    done = dict(op, status="Success", metadata={"return": 0, "output": logs})
    sent, send = _script([_env(op, type_="async", status=202), _env(done),
                          Response(200, {}, b"out\n"), _env({}),
                          Response(200, {}, b""), _env({})])
    assert drive(_rest_steps.perform(RunCommand("c1", ("cat", "/x"))), send) == (0, b"out\n")
    assert [(r.method, r.path) for r in sent[2:]] == [
        ("GET", logs["1"]), ("DELETE", logs["1"]), ("GET", logs["2"]), ("DELETE", logs["2"])]


def test_progress_of_lxd_strings() -> None:
    p = _rest_steps.progress_of({"metadata": {"download_progress": "rootfs: 45% (3MB/s)"}})
    assert p == Progress("download", 45, "rootfs: 45% (3MB/s)")
    assert _rest_steps.progress_of({"metadata": None}) is None


def test_wire_requests_escape_names_and_paths() -> None:
    r = wire.file_put("c1", "/tmp/a b&c", b"x", uid=1, gid=2, mode=0o640)
    assert r.path == "/1.0/instances/c1/files?path=%2Ftmp%2Fa+b%26c"
    assert r.headers["X-LXD-mode"] == "0640" and r.headers["X-LXD-uid"] == "1"
    assert wire.exec_command("c1", ["true"], websockets=False).body["record-output"] is True
    cert = "-----BEGIN CERTIFICATE-----\nAAAA\nBBBB\n-----END CERTIFICATE-----\n"
    assert wire.add_certificate(cert, name="me").body == {
        "type": "client", "name": "me", "certificate": "AAAABBBB"}


# -- file flows ------------------------------------------------------------------------------

class FakeFiles:
    """A container's files for the tree flows: path -> InstanceFile."""

    def __init__(self) -> None:
        self.files: dict[str, wire.InstanceFile] = {
            "/": wire.InstanceFile("/", "directory", 0, 0, 0o755, entries=[])}

    def do(self, op: Any) -> Any:
        if isinstance(op, trees.Get):
            f = self.files.get(op.path)
            if f is None:
                raise NotFound("not found")
            if f.type == "directory":
                f.entries = sorted(p.rsplit("/", 1)[1] for p in self.files
                                   if p != op.path and p.rsplit("/", 1)[0] == op.path.rstrip("/"))
            return f
        if isinstance(op, trees.ListDir):
            return drive(trees.names_in(op.folder), self.do)
        content = op.target.encode() if op.type == "symlink" else op.data
        mode = op.mode if op.mode is not None else 0o777 if op.type == "symlink" else 0o644
        self.files[op.path] = wire.InstanceFile(op.path, op.type, op.uid or 0, op.gid or 0,
                                                mode, content)
        return None


def test_folders_round_trip_with_modes_and_links(tmp_path: Path) -> None:
    src = tmp_path / "src" / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("a")
    os.chmod(src / "a", 0o751)
    os.chmod(src / "sub", 0o700)
    os.symlink("a", src / "link")
    fs = FakeFiles()
    drive(trees.upload_folder(src, "/srv/x", 5, 6), fs.do)
    assert fs.files["/srv/x/tree/a"].mode == 0o751
    assert fs.files["/srv/x/tree/a"].uid == 5
    assert fs.files["/srv/x/tree/link"].type == "symlink"
    assert fs.files["/srv/x/tree/sub"].mode == 0o700
    out = tmp_path / "out"
    out.mkdir()
    drive(trees.download_folder("/srv/x/tree", out), fs.do)
    assert os.readlink(out / "tree" / "link") == "a"
    assert (out / "tree" / "a").stat().st_mode & 0o777 == 0o751
    assert (out / "tree" / "sub").stat().st_mode & 0o777 == 0o700
    with pytest.raises(BadRequest, match="is a folder"):
        drive(trees.read("/srv/x/tree"), fs.do)
    assert drive(trees.program_exists("/srv/x/tree/a", None), fs.do)
    assert not drive(trees.program_exists("nosuch", "/srv/x/tree"), fs.do)
    assert drive(trees.program_exists("a", "/nowhere:/srv/x/tree"), fs.do)


@pytest.mark.parametrize("path", ["tmp/x", "", "./x", "x\0y"])
def test_container_paths_must_be_absolute(path: str) -> None:
    with pytest.raises(BadRequest):
        check_container_path(path)
    t = LocalTransport()
    with pytest.raises(BadRequest):
        t.read_file(path)
    with pytest.raises(BadRequest):
        t.write_file(path, b"x")


# -- LocalTransport: this host ----------------------------------------------------------------

def test_local_transport_exec(tmp_path: Path) -> None:
    t = LocalTransport()
    r = t.execute(["sh", "-c", "echo out; echo err >&2; cat; exit 3"], stdin=b"in")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\nin", b"err\n")
    with pytest.raises(CommandFailed, match="exited 3: err"):
        r.check()
    assert t.execute("echo $FOO", env={"FOO": "bar"}, cwd=str(tmp_path)).text == "bar\n"
    chunks: list[tuple[str, bytes]] = []
    r = t.execute("echo a", stream=lambda n, c: chunks.append((n, c)), capture=False)
    assert chunks == [("stdout", b"a\n")] and r.stdout == b""
    with pytest.raises(CommandNotFound):
        t.execute(["/nonexistent/program"])
    assert t.execute(["sh", "-c", "exit 127"]).exit_code == 127
    with pytest.raises(Timeout, match="killed"):
        t.execute("sleep 10", timeout=0.3)
    with pytest.raises(BadRequest):
        t.execute([])
    with pytest.raises(BadRequest):
        t.execute("true", timeout=0)


def test_local_transport_files_and_user(tmp_path: Path) -> None:
    t = LocalTransport()
    p = str(tmp_path / "f")
    t.write_file(p, "hello", mode=0o600)
    assert t.read_file(p) == b"hello" and os.stat(p).st_mode & 0o777 == 0o600
    with pytest.raises(NotFound):
        t.read_file(str(tmp_path / "nope"))
    nobody = t.user("nobody")
    assert nobody.bound_user is not None and nobody.bound_user.uid == 65534
    assert nobody.execute("id -u", cwd="/").text.strip() == "65534"
    with pytest.raises(BadRequest, match="not found"):
        t.user("no-such-user-here")


def test_exec_result() -> None:
    r = ExecResult(0, b"x\n", b"", ["echo", "x"])
    assert r.check() is r and r.ok and r.text == "x\n"
    assert ExecResult(1, b"", b"e") == ExecResult(1, b"", b"e", ["other"])


# -- the factory and the surface --------------------------------------------------------------

def test_connect_builds_the_driver_asked_for(tmp_path: Path) -> None:
    from cove.client import CliDriver, RestDriver

    d = cove.client.connect(str(tmp_path / "unix.socket"))
    assert isinstance(d, RestDriver) and d.endpoint.endswith("unix.socket")
    c = cove.client.connect(command="cove")
    assert isinstance(c, CliDriver) and c.command == ["cove"]
    assert isinstance(c.transport, LocalTransport)
    nested = cove.client.connect(transport=c.transport_for("c1"), command="lxc")
    assert isinstance(nested, CliDriver)
    for bad in ({"root": "/x", "command": "lxc"}, {"command": "lxc", "verify": False},
                {"env": {"A": "1"}}):
        with pytest.raises(BadRequest):
            cove.client.connect(**bad)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="Bad endpoint"):
        cove.client.connect("http://localhost:8443")
    with pytest.raises(BadRequest, match="Client certificate file not found"):
        cove.client.connect("https://127.0.0.1:1", client_cert="/nope.crt",
                            client_key="/nope.key")


def test_unreachable_unix_endpoints(tmp_path: Path) -> None:
    from cove.client import ConnectionFailed, RestDriver

    with pytest.raises(ConnectionFailed, match="no socket") as e:
        RestDriver(str(tmp_path / "unix.socket")).container_status("c1")
    assert e.value.reason == "missing"
    import socket as _socket

    path = tmp_path / "dead.socket"
    s = _socket.socket(_socket.AF_UNIX)
    s.bind(str(path))  # bound, nobody listens
    try:
        with pytest.raises(ConnectionFailed, match="nothing listens") as e:
            RestDriver(str(path)).start_container("c1")
        assert e.value.reason == "refused"
    finally:
        s.close()
    with pytest.raises(BadRequest, match="unix socket path"):
        RestDriver("relative/unix.socket")


def test_importing_cove_client_loads_no_driver() -> None:
    import subprocess
    import sys

    code = ("import sys, cove.client; "
            "print(sorted(m for m in sys.modules if m.startswith(('cove.client.', 'cove.engine',"
            " 'ssl', 'aiohttp', 'asyncio'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str(sorted(["cove.client._exec", "cove.client._exec_session",
                                      "cove.client._http", "cove.client._json",
                                      "cove.client._rest",
                                      "cove.client._url", "cove.client._wire",
                                      "cove.client._wire_snapshots",
                                      "cove.client._wire_storage"]))
