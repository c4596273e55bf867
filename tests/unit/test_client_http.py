"""HTTP over the unix socket and LXD's envelope."""

from __future__ import annotations

import io
import json
import os
import socket

import pytest
from test_client_fakelxd import (
    FakeLXD,
    Reply,
    Request,
    error,
    sync,
)

import cove.client
from cove.client import Client, ConnectionFailed, Response, UnixTransport
from cove.client._http import parse_envelope
from cove.model.errors import (
    BadRequest,
    Conflict,
    CoveError,
    Forbidden,
    InternalError,
    NotFound,
    PreconditionFailed,
    Timeout,
)

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)


def test_exported_names() -> None:
    assert sorted(cove.client.__all__) == [
        "AsyncRestDriver", "AsyncTransport", "CliDriver", "CliTransport", "Client",
        "CommandFailed", "CommandNotFound", "ConnectionFailed", "Driver", "EngineTransport",
        "EventDriver", "EventStream", "ExecResult", "ExecSession", "InstanceFile", "LocalDriver", "LocalTransport",
        "Operation", "Progress", "Response", "RestDriver", "RestTransport", "Transport",
        "UnixTransport", "connect", "default_socket_path", "fetch_certificate"]
    for name in cove.client.__all__:
        assert getattr(cove.client, name) is not None


def test_sync_envelope_metadata(fake: FakeLXD) -> None:
    info = Client(fake.socket_path).server()
    assert info["api_version"] == "1.0"
    assert info["environment"]["server"] == "cove"


@pytest.mark.parametrize(("code", "cls"), [
    (400, BadRequest), (403, Forbidden), (404, NotFound), (409, Conflict),
    (412, PreconditionFailed), (504, Timeout), (500, InternalError), (418, BadRequest),
    (503, InternalError),
])
def test_error_envelope_maps_to_class(fake: FakeLXD, code: int, cls: type[CoveError]) -> None:
    fake.route("GET", "/1.0/instances/x")(lambda req: error(code, f"boom {code}"))
    with pytest.raises(cls, match=f"boom {code}") as info:
        Client(fake.socket_path).instance("x")
    assert type(info.value) is cls


def test_error_code_in_envelope_wins_over_http_status() -> None:
    body = json.dumps({"type": "error", "error_code": 409, "error": "taken"}).encode()
    with pytest.raises(Conflict, match="taken"):
        parse_envelope(Response(400, {}, body))


def test_non_envelope_error_body_uses_http_status() -> None:
    with pytest.raises(NotFound, match="404 page not found"):
        parse_envelope(Response(404, {}, b"404 page not found\n"))
    with pytest.raises(InternalError, match="not an LXD envelope"):
        parse_envelope(Response(200, {}, b"<html>"))


def test_missing_socket_is_connection_failed_naming_it(cove_dir: str) -> None:
    path = os.path.join(cove_dir, "unix.socket")
    with pytest.raises(ConnectionFailed, match=path) as info:
        Client(path).server()
    assert info.value.reason == "missing" and info.value.not_running
    assert isinstance(info.value, CoveError)


def test_refused_socket_is_connection_failed(cove_dir: str) -> None:
    path = os.path.join(cove_dir, "unix.socket")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # bound, never listening: a stale socket file
    try:
        with pytest.raises(ConnectionFailed, match="nothing listens") as info:
            Client(path).connect()
        assert info.value.reason == "refused" and info.value.not_running
    finally:
        s.close()


def test_keep_alive_reuses_one_connection(fake: FakeLXD) -> None:
    ports: list[str] = []

    def who(req: Request) -> Reply:
        ports.append(req.headers.get("host", ""))
        return sync({"ok": True})

    fake.route("GET", "/who")(who)
    t = UnixTransport(fake.socket_path)
    t.request("GET", "/who")
    first = t._idle[0]
    t.request("GET", "/who")
    assert t._idle == [first]  # the same connection came back
    t.close()


def test_dead_idle_connection_is_replaced(fake: FakeLXD) -> None:
    fake.route("GET", "/x")(lambda req: sync(1))
    t = UnixTransport(fake.socket_path)
    assert parse_envelope(t.request("GET", "/x"))["metadata"] == 1
    t._idle[0].sock.shutdown(socket.SHUT_RDWR)  # as if the server had hung up
    assert parse_envelope(t.request("GET", "/x"))["metadata"] == 1


def test_json_bytes_and_file_bodies(fake: FakeLXD) -> None:
    got: list[Request] = []

    def keep(req: Request) -> Reply:
        got.append(req)
        return sync(None)

    fake.route("POST", "/b")(keep)
    t = UnixTransport(fake.socket_path)
    t.request("POST", "/b", {"a": 1})
    t.request("POST", "/b", b"raw")
    seen: list[tuple[int, int | None]] = []
    t.request("POST", "/b", io.BytesIO(b"x" * 200_000),
              progress=lambda sent, total: seen.append((sent, total)))
    assert got[0].json() == {"a": 1}
    assert got[0].headers["content-type"] == "application/json"
    assert got[1].body == b"raw"
    assert got[2].body == b"x" * 200_000
    assert got[2].headers["content-length"] == "200000"
    assert seen[-1][0] == 200_000 and all(total == 200_000 for _, total in seen)


def test_stream_reads_as_it_arrives(fake: FakeLXD) -> None:
    fake.route("GET", "/s")(lambda req: Reply(200, chunks=iter([b"one\n", b"two\n"])))
    stream = UnixTransport(fake.socket_path).stream("GET", "/s")
    assert b"".join(stream) == b"one\ntwo\n"
