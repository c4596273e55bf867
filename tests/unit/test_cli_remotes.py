"""``cove remote``: stored remotes, pinned certificates, credentials, and how
``REMOTE:REF`` becomes LXD's image source for launch."""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from socketserver import BaseRequestHandler, TCPServer

import pytest

from cove.cli._remotes import load_remotes, split_image_ref
from cove.cli.instances import image_source
from cove.cli.main import main
from cove.host.certs import generate_certificate


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COVE_DIR", str(tmp_path / "root"))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


class _Quiet(BaseRequestHandler):
    def handle(self) -> None:  # the handshake is all the CLI asks for
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An HTTPS listener on loopback with a self-signed certificate: its URL and PEM."""
    crt, key = tmp_path / "srv.crt", tmp_path / "srv.key"
    generate_certificate(crt, key, server=True, common_name="covetest")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server = TCPServer(("127.0.0.1", 0), _Quiet)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", crt.read_text()
    finally:
        server.shutdown()
        server.server_close()


def test_add_list_rename_remove_and_source(cli, tmp_path: Path) -> None:
    assert cli("remote", "add", "dev", "http://127.0.0.1:5000", "--protocol=oci",
               "--insecure") == (0, "Remote dev added\n", "")
    code, out, err = cli("remote", "list", "-f", "csv")
    assert code == 0 and err == ""
    assert out.splitlines()[1:] == ["dev,http://127.0.0.1:5000,oci,none,NO"]
    assert image_source("dev:library/alpine:3.20") == {
        "type": "image", "server": "http://127.0.0.1:5000", "protocol": "oci",
        "alias": "library/alpine:3.20"}
    # A prefix that names no remote, and local:, stay local references.
    assert image_source("other:thing") == {"type": "image", "alias": "other:thing"}
    assert image_source("local:busybox") == {"type": "image", "alias": "busybox"}
    assert cli("remote", "rename", "dev", "hub") == (0, "", "")
    assert list(load_remotes()) == ["hub"]
    assert cli("remote", "remove", "hub") == (0, "Remote hub removed\n", "")
    assert load_remotes() == {}
    config = tmp_path / "config" / "cove" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


@pytest.mark.parametrize(("argv", "message"), [
    (("local", "https://127.0.0.1:1"), "invalid remote name 'local'"),
    (("a:b", "https://127.0.0.1:1"), "invalid remote name"),
    (("r", "http://127.0.0.1:5000"), "plain HTTP"),
    (("r", "http://10.1.2.3:5000", "--protocol=oci", "--insecure"), "only to a loopback"),
    (("r", "ftp://127.0.0.1"), "invalid URL"),
    (("r", "https://127.0.0.1:99999"), "invalid port"),
    (("r", "https://127.0.0.1:1", "--username", "u"), "credentials are for OCI"),
    (("r", "https://127.0.0.1:1", "--protocol=oci", "--password-stdin"), "needs --username"),
])
def test_add_refuses_bad_input(cli, tmp_path: Path, argv: tuple[str, ...], message: str) -> None:
    code, out, err = cli("remote", "add", *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "config" / "cove" / "config.json").exists()


def test_untrusted_certificate_needs_accepting_then_is_pinned(
        cli, tls_server: tuple[str, str], tmp_path: Path) -> None:
    url, pem = tls_server
    code, _, err = cli("remote", "add", "lxd2", url)
    assert code == 2 and "--accept-certificate" in err and "fingerprint" in err
    assert load_remotes() == {}
    assert cli("remote", "add", "lxd2", url, "--accept-certificate")[0] == 0
    pinned = tmp_path / "config" / "cove" / "servercerts" / "lxd2.crt"
    assert ssl.PEM_cert_to_DER_cert(pinned.read_text()) == ssl.PEM_cert_to_DER_cert(pem)
    assert image_source("lxd2:busybox")["certificate"] == pinned.read_text()
    fp = "ab" * 32
    assert image_source(f"lxd2:{fp}")["fingerprint"] == fp
    assert cli("remote", "remove", "lxd2")[0] == 0
    assert not pinned.exists()


def test_nobody_listening_is_a_clear_error(cli) -> None:
    code, _, err = cli("remote", "add", "gone", "https://127.0.0.1:1")
    assert code == 2 and "cannot reach https://127.0.0.1:1" in err


def test_credentials_from_stdin_and_from_an_auth_file(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert cli("remote", "add", "hub", "http://127.0.0.1:5000", "--protocol=oci", "--insecure",
               "--username", "alice", "--password-stdin")[0] == 0
    hub = load_remotes()["hub"]
    assert hub.credentials() == ("alice", "s3cret")
    assert hub.auth_file is not None
    assert stat.S_IMODE(os.stat(hub.auth_file).st_mode) == 0o600
    auth = tmp_path / "docker.json"
    auth.write_text(json.dumps({"auths": {"https://127.0.0.1:5001": {
        "auth": base64.b64encode(b"bob:pw:with:colons").decode()}}}))
    assert cli("remote", "add", "hub2", "http://127.0.0.1:5001", "--protocol=oci", "--insecure",
               "--auth-file", str(auth))[0] == 0
    assert load_remotes()["hub2"].credentials() == ("bob", "pw:with:colons")
    auth.write_text("{not json")
    code, _, err = cli("remote", "add", "hub3", "http://127.0.0.1:5002", "--protocol=oci",
                       "--insecure", "--auth-file", str(auth))
    assert code == 2 and "is not JSON" in err


def test_split_image_ref_needs_a_name_after_the_remote(cli) -> None:
    assert cli("remote", "add", "dev", "http://127.0.0.1:5000", "--protocol=oci",
               "--insecure")[0] == 0
    from cove.cli.context import UsageError

    with pytest.raises(UsageError, match="dev:NAME"):
        split_image_ref("dev:")
    remote, ref = split_image_ref("dev:a/b@sha256:" + "0" * 64)
    assert remote is not None and ref == "a/b@sha256:" + "0" * 64
