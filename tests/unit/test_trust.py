"""Remote access to coved: core.https_address, the server certificate, LXD's
trust model (/1.0/certificates, 403 for the untrusted), clients over TLS
(RestDriver, AsyncRestDriver, pinning), and the CLI's server and trust forms.

The server is the real app on the fake engine (whose trust store is the
engine's own ``Trust`` service), on a unix socket and a real HTTPS port of
127.0.0.1 picked free for each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_server_fakes import FakeEngine, short_socket_path

from cove.client import Client, ConnectionFailed, RestDriver, fetch_certificate
from cove.client.aio import AsyncRestDriver
from cove.host.certs import generate_certificate
from cove.model import trust
from cove.model.errors import BadRequest, Conflict, Forbidden, NotFound
from cove.server import make_app
from cove.server.listen import bind_unix
from cove.server.routes_trust import HTTPS
from cove.server.tls import accept_any_client_cert


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, fake: FakeEngine, sock: Path) -> None:
        self.fake = fake
        self.sock = sock
        self.loop = asyncio.new_event_loop()
        self.app: web.Application | None = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    fake = FakeEngine(root=tmp_path)
    fake.add("c1")
    s = Served(fake, short_socket_path(tmp_path))
    ready = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        app = make_app(fake)
        runner = web.AppRunner(app, shutdown_timeout=2)
        await runner.setup()
        app[HTTPS].runner = runner
        s.app = app
        await web.SockSite(runner, bind_unix(s.sock)).start()
        ready.set()
        await stop.wait()
        await app[HTTPS].apply("")
        await runner.cleanup()

    thread = threading.Thread(target=s.loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield s
    finally:
        s.loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        s.loop.close()


@pytest.fixture
def client_cert(tmp_path: Path) -> tuple[str, str]:
    crt, key = tmp_path / "client.crt", tmp_path / "client.key"
    generate_certificate(crt, key, server=False, common_name="tester")
    return str(crt), str(key)


def _https(served: Served) -> str:
    port = free_port()
    Client(str(served.sock)).update_server({"core.https_address": f"127.0.0.1:{port}"})
    return f"https://127.0.0.1:{port}"


def _pin(url: str, tmp_path: Path) -> str:
    path = tmp_path / "server.crt"
    path.write_text(fetch_certificate(url))
    return str(path)


# -- model ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "want"), [
    ("", None), (":8443", (None, 8443)), ("0.0.0.0:9000", ("0.0.0.0", 9000)),
    ("127.0.0.1", ("127.0.0.1", 8443)), ("[::1]:8444", ("::1", 8444)), ("[::]", ("::", 8443)),
    ("::1", ("::1", 8443)), ("host.example:1", ("host.example", 1))])
def test_https_address_syntax(value: str, want: Any) -> None:
    assert trust.parse_https_address(value) == want


@pytest.mark.parametrize("value", [":0", ":99999", ":http", "[::1", "[nope]:1", "a b:1",
                                   "1.2.3.4:5:6"])
def test_bad_https_addresses(value: str) -> None:
    with pytest.raises(BadRequest):
        trust.parse_https_address(value)


def test_server_config_keys() -> None:
    assert trust.validate_server_config({"core.https_address": ":8443"}) == {
        "core.https_address": ":8443"}
    assert trust.validate_server_config({"core.https_address": ""}) == {}
    with pytest.raises(BadRequest, match="Unknown server configuration key: core.nope"):
        trust.validate_server_config({"core.nope": "1"})


def test_cert_der_takes_pem_and_base64(client_cert: tuple[str, str]) -> None:
    pem = Path(client_cert[0]).read_text()
    der = trust.cert_der(pem)
    body = "".join(ln for ln in pem.splitlines() if not ln.startswith("-----"))
    assert trust.cert_der(body) == der
    assert trust.cert_der(trust.der_to_pem(der)) == der
    with pytest.raises(BadRequest):
        trust.cert_der("not a cert")


def test_accept_any_client_cert_asks_for_one() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    accept_any_client_cert(ctx)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL


# -- the server over its socket --------------------------------------------------------------

def test_server_config_put_patch_and_errors(served: Served) -> None:
    c = Client(str(served.sock))
    assert c.server()["config"] == {}
    with pytest.raises(BadRequest, match="Unknown server configuration key"):
        c.update_server({"core.trust_password": "x"})
    with pytest.raises(BadRequest, match="bad port"):
        c.update_server({"core.https_address": ":99999"})
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        with pytest.raises(BadRequest, match="Cannot listen on"):
            c.update_server({"core.https_address": f"127.0.0.1:{port}"})
    finally:
        busy.close()
    assert c.server()["config"] == {}  # nothing saved
    url = _https(served)
    info = c.server()
    assert info["config"] == {"core.https_address": url.removeprefix("https://")}
    env = info["environment"]
    assert env["addresses"] == [url.removeprefix("https://")]
    assert env["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert env["certificate_fingerprint"] == trust.fingerprint(trust.cert_der(
        env["certificate"]))
    assert (served.fake.root / "server.key").stat().st_mode & 0o777 == 0o600
    c.update_server({"core.https_address": ""})
    assert c.server()["config"] == {}
    assert c.server()["environment"]["addresses"] == []
    with pytest.raises(ConnectionFailed, match="refused"):
        RestDriver(url, verify=False).server_info()


def test_certificates_api(served: Served, client_cert: tuple[str, str]) -> None:
    c = Client(str(served.sock))
    assert c.certificates() == []
    pem = Path(client_cert[0]).read_text()
    c.add_certificate(pem, name="laptop")
    fp = trust.fingerprint(trust.cert_der(pem))
    [cert] = c.certificates()
    assert (cert["fingerprint"], cert["name"], cert["type"]) == (fp, "laptop", "client")
    assert c._get_list("/1.0/certificates?recursion=0") == [f"/1.0/certificates/{fp}"]
    assert c._get_dict(f"/1.0/certificates/{fp[:12]}")["fingerprint"] == fp
    with pytest.raises(Conflict):
        c.add_certificate(pem)
    with pytest.raises(BadRequest):
        c.add_certificate("garbage")
    c.delete_certificate(fp[:10])
    with pytest.raises(NotFound):
        c.delete_certificate(fp)


# -- clients over HTTPS -----------------------------------------------------------------------

def test_untrusted_clients_see_only_the_public_part(served: Served, tmp_path: Path,
                                                    client_cert: tuple[str, str]) -> None:
    url = _https(served)
    pinned = _pin(url, tmp_path)
    for d in (RestDriver(url, verify=pinned, client_cert=None, client_key=None),
              RestDriver(url, verify=pinned, client_cert=client_cert[0],
                         client_key=client_cert[1])):
        info = d.server_info()
        assert info["auth"] == "untrusted" and "environment" not in info
        with pytest.raises(Forbidden, match="not trusted"):
            d.container_status("c1")
        with pytest.raises(Forbidden):
            d.client.add_certificate(Path(client_cert[0]).read_text())
    Client(str(served.sock)).add_certificate(Path(client_cert[0]).read_text())
    d = RestDriver(url, verify=pinned, client_cert=client_cert[0], client_key=client_cert[1])
    assert d.server_info()["auth"] == "trusted"
    assert d.container_status("c1") == "running"
    assert d.transport_for("c1").execute(["echo", "tls"]).stdout == b"tls\n"

    async def run_async() -> None:
        async with AsyncRestDriver(url, verify=pinned, client_cert=client_cert[0],
                                   client_key=client_cert[1]) as ad:
            assert await ad.container_status("c1") == "running"
    asyncio.run(run_async())


def test_server_trust_is_checked_by_the_client(served: Served, tmp_path: Path) -> None:
    url = _https(served)
    with pytest.raises(ConnectionFailed, match="not trusted") as e:
        RestDriver(url).server_info()  # system CAs: a self-signed server is refused
    assert e.value.reason == "certificate"
    other = tmp_path / "other.crt"
    generate_certificate(other, tmp_path / "other.key")
    with pytest.raises(ConnectionFailed, match="other than the pinned"):
        RestDriver(url, verify=str(other)).server_info()
    assert RestDriver(url, verify=False).server_info()["auth"] == "untrusted"
    with pytest.raises(BadRequest, match="Cannot read the server certificate"):
        RestDriver(url, verify=str(tmp_path / "nope.crt"))
    with pytest.raises(BadRequest, match="Give both"):
        RestDriver(url, client_cert=str(other))


# -- the CLI's forms ---------------------------------------------------------------------------

def test_cli_server_config_and_trust(served: Served, client_cert: tuple[str, str],
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from cove.cli.main import main

    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")
    root = ["--root", str(served.sock.parent)]
    sock = served.sock.parent / "unix.socket"
    if sock != served.sock:
        sock.symlink_to(served.sock)
    port = free_port()
    assert main([*root, "config", "set", "core.https_address", f"127.0.0.1:{port}"]) == 0
    assert main([*root, "config", "get", "core.https_address"]) == 0
    assert capsys.readouterr().out == f"127.0.0.1:{port}\n"
    assert main([*root, "config", "show"]) == 0
    assert f"core.https_address: 127.0.0.1:{port}" in capsys.readouterr().out
    assert main([*root, "config", "trust", "add", client_cert[0], "--name", "me"]) == 0
    assert main([*root, "config", "trust", "list", "-f", "json"]) == 0
    [cert] = json.loads(capsys.readouterr().out)
    assert cert["name"] == "me"
    assert main([*root, "config", "trust", "remove", cert["fingerprint"][:8]]) == 0
    assert main([*root, "config", "trust", "list", "-f", "csv"]) == 0
    assert capsys.readouterr().out == ""
    assert main([*root, "config", "unset", "core.https_address"]) == 0
    assert main([*root, "config", "set", "core.bogus=1"]) == 1
    assert "Unknown server configuration key" in capsys.readouterr().err
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
