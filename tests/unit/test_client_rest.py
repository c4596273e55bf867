"""The REST client's calls against the fake LXD server."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time

import pytest
from test_client_fakelxd import (
    FakeExec,
    FakeLXD,
    FakeOp,
    Reply,
    Request,
    async_,
    error,
    sync,
)

from cove.client import Client, Operation
from cove.model.errors import BadRequest, Conflict, InternalError, NotFound, Timeout

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)

C1 = {"name": "c1", "status": "Running", "type": "container", "config": {}, "devices": {},
      "ephemeral": False, "profiles": ["default"], "architecture": "x86_64"}


@pytest.fixture
def client(fake: FakeLXD) -> Client:
    c = Client(fake.socket_path)
    yield c
    c.close()


def test_default_socket_path_follows_cove_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_DIR", "/srv/cove")
    assert Client().socket_path == "/srv/cove/unix.socket"
    monkeypatch.delenv("COVE_DIR")
    assert Client().socket_path == "/var/lib/cove/unix.socket"


def test_instances_and_state(fake: FakeLXD, client: Client) -> None:
    fake.route("GET", "/1.0/instances")(lambda req: sync(
        [C1] if req.query.get("recursion") == "1" else ["/1.0/instances/c1"]))
    fake.route("GET", "/1.0/instances/c1")(lambda req: sync(C1))
    fake.route("GET", "/1.0/instances/c1/state")(lambda req: sync({"status": "Running",
                                                                    "pid": 42}))
    assert client.instances() == [C1]
    assert client.instances(0) == ["/1.0/instances/c1"]
    assert client.instance("c1")["name"] == "c1"
    assert client.instance_state("c1")["pid"] == 42


def test_names_are_quoted_in_paths(fake: FakeLXD, client: Client) -> None:
    with pytest.raises(NotFound):
        client.instance("a b/c")
    assert fake.requests[-1].path == "/1.0/instances/a%20b%2Fc"


def test_create_returns_operation_and_wait(fake: FakeLXD, client: Client) -> None:
    op = fake.add_op(FakeOp(resources={"instances": ["/1.0/instances/c1"]}))
    fake.route("POST", "/1.0/instances")(lambda req: async_(op))
    got = client.create_instance("c1", {"type": "image", "alias": "busybox"},
                                 config={"limits.cpu": "1"}, ephemeral=True)
    assert isinstance(got, Operation) and got.id == op.id and not got.done
    body = fake.find("POST", "/1.0/instances")[0].json()
    assert body == {"type": "container", "name": "c1",
                    "source": {"type": "image", "alias": "busybox"},
                    "config": {"limits.cpu": "1"}, "devices": {}, "ephemeral": True,
                    "description": ""}
    threading.Timer(0.05, op.finish).start()
    assert got.wait(timeout=5) is got
    assert got.status == "Success" and got.done
    assert fake.find("GET", f"/1.0/operations/{op.id}/wait")[0].query == {"timeout": "5"}


def test_wait_without_timeout_sends_minus_one(fake: FakeLXD, client: Client) -> None:
    op = fake.add_op(FakeOp()).finish()
    client.wait_operation(op.id)
    assert fake.find("GET", f"/1.0/operations/{op.id}/wait")[0].query == {"timeout": "-1"}


@pytest.mark.parametrize(("code", "cls"), [(0, InternalError), (400, BadRequest),
                                           (404, NotFound), (409, Conflict)])
def test_failed_operation_raises_mapped_error(fake: FakeLXD, client: Client, code: int,
                                              cls: type[Exception]) -> None:
    op = fake.add_op(FakeOp())
    fake.route("PUT", "/1.0/instances/c1/state")(lambda req: async_(op))
    started = client.change_state("c1", "start")
    op.fail("Instance is already running", error_code=code)
    with pytest.raises(cls, match="already running") as info:
        started.wait()
    assert type(info.value) is cls
    assert started.status == "Failure" and started.err == "Instance is already running"


def test_wait_timeout_raises_timeout(fake: FakeLXD, client: Client) -> None:
    op = fake.add_op(FakeOp())
    with pytest.raises(Timeout, match=op.id):
        client.wait_operation(op.id, timeout=0)


def test_state_change_body(fake: FakeLXD, client: Client) -> None:
    fake.route("PUT", "/1.0/instances/c1/state")(lambda req: fake.finished())
    client.change_state("c1", "stop", timeout=10, force=True).wait()
    assert fake.find("PUT", "/1.0/instances/c1/state")[0].json() == {
        "action": "stop", "timeout": 10, "force": True, "stateful": False}


def test_sync_answer_to_async_call_is_a_done_operation(fake: FakeLXD, client: Client) -> None:
    fake.route("PATCH", "/1.0/instances/c1")(lambda req: sync({}))
    op = client.update_instance("c1", {"config": {"a": "b"}}, patch=True)
    assert op.done and op.wait() is op
    assert fake.find("PATCH", "/1.0/instances/c1")[0].json() == {"config": {"a": "b"}}


def test_rename_and_delete(fake: FakeLXD, client: Client) -> None:
    fake.route("POST", "/1.0/instances/c1")(lambda req: fake.finished())
    fake.route("DELETE", "/1.0/instances/c2")(lambda req: fake.finished())
    client.rename_instance("c1", "c2").wait()
    client.delete_instance("c2").wait()
    assert fake.find("POST", "/1.0/instances/c1")[0].json() == {"name": "c2"}


def test_operation_refresh_and_cancel(fake: FakeLXD, client: Client) -> None:
    op = fake.add_op(FakeOp())
    fake.route("DELETE", f"/1.0/operations/{op.id}")(lambda req: sync(None))
    got = client.operation(op.id)
    assert got.status == "Running"
    op.finish(answer=42)
    assert got.refresh().metadata == {"answer": 42}
    client.cancel_operation(op.id)


# -- exec --------------------------------------------------------------------------------

def test_exec_streams_stdin_out_err_and_returns_exit_code(fake: FakeLXD,
                                                          client: Client) -> None:
    ex = FakeExec(fake, "c1", stdout=b"out:", stderr=b"warn\n", code=3)
    fake.resolves_names()
    t0 = time.monotonic()
    result = client.exec("c1", ["cat"], environment={"A": "1"}, user="nobody", group=100,
                         cwd="/tmp", stdin=b"hello")
    assert result.exit_code == 3
    assert time.monotonic() - t0 < 1.5  # no close-handshake stall
    assert result.stdout == b"out:hello"
    assert result.stderr == b"warn\n"
    assert ex.stdin == b"hello" and ex.stdin_end == "text"
    assert ex.body == {"command": ["cat"], "environment": {"A": "1"},
                       "wait-for-websocket": True, "interactive": False,
                       "record-output": False, "user-name": "nobody", "group": 100,
                       "cwd": "/tmp"}
    # All four streams, in any order: the fake serves each connection in its
    # own thread, so the order it records them in is not the client's.
    assert sorted(ex.connected) == ["0", "1", "2", "control"]


def test_exec_to_file_objects_and_fds(fake: FakeLXD, client: Client) -> None:
    FakeExec(fake, "c1", stdout=b"to-fd", stderr=b"to-file", code=0)
    r, w = os.pipe()
    err = io.BytesIO()
    result = client.exec("c1", ["true"], stdin=io.BytesIO(b""), stdout=w, stderr=err)
    os.close(w)
    assert os.read(r, 100) == b"to-fd"
    os.close(r)
    assert err.getvalue() == b"to-file" and result.exit_code == 0


def test_exec_output_to_broken_pipe_signals_sigpipe(fake: FakeLXD, client: Client) -> None:
    ex = FakeExec(fake, "c1", stdout=b"lots", stderr=b"", code=141)
    r, w = os.pipe()
    os.close(r)  # the reader went away, as with `cove exec ... | head`
    try:
        result = client.exec("c1", ["yes"], stdout=w)
    finally:
        os.close(w)
    assert result.exit_code == 141
    assert ex.control_event.wait(5)
    assert ex.control == [{"command": "signal", "signal": 13}]


def test_exec_stdin_from_pipe_fd(fake: FakeLXD, client: Client) -> None:
    ex = FakeExec(fake, "c1")
    r, w = os.pipe()
    os.write(w, b"piped")
    os.close(w)
    result = client.exec("c1", ["cat"], stdin=r)
    os.close(r)
    assert result.stdout == b"piped" and ex.stdin_end == "text"


def test_exec_interactive_uses_one_stream_and_resizes(fake: FakeLXD, client: Client) -> None:
    ex = FakeExec(fake, "c1", stdout=b"$ ", code=0)
    ex.hold.clear()
    session = client.exec_start("c1", ["sh"], interactive=True, width=100, height=30)
    assert ex.body["interactive"] is True and ex.body["width"] == 100
    out = io.BytesIO()
    t = threading.Thread(target=lambda: setattr(t, "result", session.run(b"ls\n", out)))
    t.start()
    session.resize(120, 40)
    session.signal(signal.SIGTERM)
    assert ex.control_event.wait(5)
    ex.hold.set()
    t.join(10)
    assert t.result.exit_code == 0  # type: ignore[attr-defined]
    assert out.getvalue() == b"$ ls\n"
    assert {"command": "window-resize", "args": {"width": "120", "height": "40"}} in ex.control
    assert {"command": "signal", "signal": int(signal.SIGTERM)} in ex.control
    assert sorted(ex.connected) == ["0", "control"]


def test_exec_on_stopped_instance_raises(fake: FakeLXD, client: Client) -> None:
    fake.route("POST", "/1.0/instances/c1/exec")(
        lambda req: error(400, "Instance is not running"))
    with pytest.raises(BadRequest, match="not running"):
        client.exec("c1", ["true"])


# -- files -------------------------------------------------------------------------------

def test_file_get_file_directory_symlink(fake: FakeLXD, client: Client) -> None:
    def files(req: Request) -> Reply:
        path = req.query["path"]
        if path == "/etc":
            return sync(["hosts", "passwd"], headers={
                "X-LXD-type": "directory", "X-LXD-uid": "0", "X-LXD-gid": "0",
                "X-LXD-mode": "0755"})
        if path == "/etc/link":
            return Reply(200, b"hosts", {"X-LXD-type": "symlink", "X-LXD-uid": "0",
                                         "X-LXD-gid": "0", "X-LXD-mode": "0777"})
        if path == "/etc/hosts":
            return Reply(200, b"127.0.0.1 localhost\n", {
                "Content-Type": "application/octet-stream", "X-LXD-type": "file",
                "X-LXD-uid": "1000", "X-LXD-gid": "100", "X-LXD-mode": "0640"})
        return error(404, "not found")

    fake.route("GET", "/1.0/instances/c1/files")(files)
    f = client.file_get("c1", "/etc/hosts")
    assert (f.type, f.uid, f.gid, f.mode, f.content) == (
        "file", 1000, 100, 0o640, b"127.0.0.1 localhost\n")
    d = client.file_get("c1", "/etc")
    assert d.type == "directory" and d.entries == ["hosts", "passwd"] and d.mode == 0o755
    link = client.file_get("c1", "/etc/link")
    assert link.type == "symlink" and link.target == "hosts"
    with pytest.raises(NotFound):
        client.file_get("c1", "/nope")


def test_file_put_headers_and_delete(fake: FakeLXD, client: Client) -> None:
    fake.route("POST", "/1.0/instances/c1/files")(lambda req: sync({}))
    fake.route("DELETE", "/1.0/instances/c1/files")(lambda req: sync({}))
    client.file_put("c1", "/tmp/a b", b"data", uid=1000, gid=1000, mode=0o600)
    client.file_put("c1", "/tmp/dir", type="directory", mode=0o755)
    client.file_put("c1", "/tmp/link", b"target", type="symlink")
    client.file_put("c1", "/tmp/log", b"more", write="append")
    client.file_delete("c1", "/tmp/a b")
    puts = fake.find("POST", "/1.0/instances/c1/files")
    assert puts[0].query == {"path": "/tmp/a b"} and puts[0].body == b"data"
    h = puts[0].headers
    assert (h["x-lxd-uid"], h["x-lxd-gid"], h["x-lxd-mode"], h["x-lxd-type"],
            h["x-lxd-write"]) == ("1000", "1000", "0600", "file", "overwrite")
    assert puts[1].headers["x-lxd-type"] == "directory" and puts[1].body == b""
    assert puts[1].headers["x-lxd-mode"] == "0755"
    assert puts[2].headers["x-lxd-type"] == "symlink" and puts[2].body == b"target"
    assert "x-lxd-uid" not in puts[2].headers
    assert puts[3].headers["x-lxd-write"] == "append"
    assert fake.find("DELETE", "/1.0/instances/c1/files")[0].query == {"path": "/tmp/a b"}


# -- logs --------------------------------------------------------------------------------

def test_logs_and_follow(fake: FakeLXD, client: Client) -> None:
    def log(req: Request) -> Reply:
        if req.query.get("follow"):
            return Reply(200, chunks=iter([b"line 1\n", b"line 2\n"]),
                         headers={"Content-Type": "text/plain"})
        return Reply(200, b"line 1\n", {"Content-Type": "text/plain"})

    fake.route("GET", "/1.0/instances/c1/logs/console.log")(log)
    assert client.logs("c1") == b"line 1\n"
    assert b"".join(client.follow_logs("c1")) == b"line 1\nline 2\n"
    with pytest.raises(NotFound):
        client.logs("c2")
    with pytest.raises(NotFound):
        list(client.follow_logs("c2"))


# -- images ------------------------------------------------------------------------------

FP = "3f2a9c81d0e4" + "0" * 52


def test_import_image_uploads_waits_and_aliases(fake: FakeLXD, client: Client,
                                                cove_dir: str) -> None:
    tarball = os.path.join(cove_dir, "busybox.tar.gz")
    with open(tarball, "wb") as f:
        f.write(b"T" * 100_000)
    fake.route("POST", "/1.0/images")(lambda req: fake.finished(fingerprint=FP, size=100_000))
    fake.route("POST", "/1.0/images/aliases")(lambda req: sync({}))
    progress: list[int] = []
    fp = client.import_image(tarball, aliases=["busybox", "bb"],
                             progress=lambda sent, total: progress.append(sent))
    assert fp == FP
    up = fake.find("POST", "/1.0/images")[0]
    assert up.body == b"T" * 100_000
    assert up.headers["x-lxd-filename"] == "busybox.tar.gz"
    assert up.headers["x-lxd-public"] == "0"
    assert up.headers["content-type"] == "application/octet-stream"
    assert [r.json() for r in fake.find("POST", "/1.0/images/aliases")] == [
        {"name": "busybox", "target": FP, "description": ""},
        {"name": "bb", "target": FP, "description": ""}]
    assert progress[-1] == 100_000


def test_image_and_alias_calls(fake: FakeLXD, client: Client) -> None:
    img = {"fingerprint": FP, "size": 1, "aliases": [{"name": "busybox"}]}
    fake.route("GET", "/1.0/images")(lambda req: sync([img]))
    fake.route("GET", f"/1.0/images/{FP}")(lambda req: sync(img))
    fake.route("DELETE", f"/1.0/images/{FP}")(lambda req: fake.finished())
    fake.route("GET", "/1.0/images/aliases")(lambda req: sync([{"name": "busybox",
                                                                 "target": FP}]))
    fake.route("GET", "/1.0/images/aliases/busybox")(lambda req: sync({"name": "busybox",
                                                                        "target": FP}))
    fake.route("POST", "/1.0/images/aliases/busybox")(lambda req: sync({}))
    fake.route("DELETE", "/1.0/images/aliases/bb")(lambda req: sync({}))
    assert client.images() == [img]
    assert fake.requests[-1].query == {"recursion": "1"}
    assert client.image(FP)["size"] == 1
    assert client.aliases()[0]["target"] == FP
    assert client.alias("busybox")["target"] == FP
    client.rename_alias("busybox", "bb")
    assert fake.find("POST", "/1.0/images/aliases/busybox")[0].json() == {"name": "bb"}
    client.delete_alias("bb")
    client.delete_image(FP).wait()


def test_operation_equality_and_repr() -> None:
    a = Operation.from_dict({"id": "x", "class": "task", "status": "Success",
                             "status_code": 200, "metadata": {"k": 1}})
    b = Operation.from_dict(json.loads(json.dumps({"id": "x", "class": "task",
                                                   "status": "Success", "status_code": 200,
                                                   "metadata": {"k": 1}})))
    assert a == b and "x" in repr(a) and a.done
