"""coved: the unix socket (mode, stale files, a live coved) and ``coved``'s
command line."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from test_server_fakes import short_socket_path

from cove.server import main as coved
from cove.server.listen import SocketInUse, bind_unix


def test_socket_is_0600_even_under_a_loose_umask(tmp_path: Path) -> None:
    path = short_socket_path(tmp_path)
    old = os.umask(0)
    try:
        sock = bind_unix(path)
    finally:
        os.umask(old)
    try:
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert os.umask(old) == old  # the process umask is back
    finally:
        sock.close()
        path.unlink()


def test_stale_socket_is_replaced_live_one_is_not(tmp_path: Path) -> None:
    path = short_socket_path(tmp_path)
    dead = bind_unix(path)
    dead.close()  # the file stays, nobody listens: a coved that died
    sock = bind_unix(path)
    sock.listen()
    try:
        with pytest.raises(SocketInUse):
            bind_unix(path)
        assert path.exists()
    finally:
        sock.close()
        path.unlink()


def test_refuses_to_replace_a_file(tmp_path: Path) -> None:
    path = short_socket_path(tmp_path)
    path.write_text("precious")
    try:
        with pytest.raises(FileExistsError):
            bind_unix(path)
        assert path.read_text() == "precious"
    finally:
        path.unlink()


def test_root_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVE_DIR", raising=False)
    assert coved._parse([]).root == Path("/var/lib/cove")
    monkeypatch.setenv("COVE_DIR", "/srv/cove")
    assert coved._parse([]).root == Path("/srv/cove")
    assert coved._parse(["--root", "/x"]).root == Path("/x")


def test_one_coved_per_root(tmp_path: Path) -> None:
    fd = coved._lock_root(tmp_path)
    try:
        with pytest.raises(SocketInUse):
            coved._lock_root(tmp_path)
    finally:
        os.close(fd)
    os.close(coved._lock_root(tmp_path))  # free again


def test_main_refuses_a_live_socket(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = short_socket_path(tmp_path)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen()
    try:
        assert coved.main(["--root", str(root), "--socket", str(path)]) == 1
    finally:
        live.close()
        path.unlink()


def test_main_creates_root_0700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "new" / "root"
    made: list[Path] = []

    class StopHere(Exception):
        pass

    class NoEngine:
        def __init__(self, r: Path) -> None:
            made.append(r)
            raise StopHere

    monkeypatch.setattr(coved, "Engine", NoEngine)
    path = short_socket_path(tmp_path)
    assert coved.main(["--root", str(root), "--socket", str(path)]) == 1
    assert made == [root]
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert not path.exists()  # the socket is removed on the way out


def test_coved_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    """The real entry point with the fake engine: serves, and on SIGTERM
    stops, closes the engine and removes its socket."""
    import signal
    import subprocess
    import sys
    import time

    import pylxd

    root = tmp_path / "root"
    path = short_socket_path(tmp_path)
    marker = tmp_path / "closed"
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from test_server_fakes import FakeEngine
from cove.server import main as coved

class Engine(FakeEngine):
    def __init__(self, root):
        super().__init__(root=root)
        self.add("c1")
    def startup(self):
        pass
    def close(self):
        Path({str(marker)!r}).write_text("closed")

coved.Engine = Engine
sys.exit(coved.main(["--root", {str(root)!r}, "--socket", {str(path)!r}]))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        import socket as _socket

        for _ in range(200):  # bound before it listens: wait for a connect to work
            probe = _socket.socket(_socket.AF_UNIX)
            try:
                probe.connect(str(path))
                break
            except OSError:
                time.sleep(0.05)
            finally:
                probe.close()
        client = pylxd.Client(endpoint=str(path))
        assert client.instances.get("c1").execute(["echo", "up"]).stdout == "up\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert marker.read_text() == "closed"
    assert not path.exists()
    assert b"stopping" in err
