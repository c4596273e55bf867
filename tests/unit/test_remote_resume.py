"""Resumable downloads from image servers (``cove.storage.remote_resume``)
against a plain HTTP server on loopback that can cut a body short, ignore
``Range`` or answer another range."""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cove.storage import remote_resume
from cove.storage.remote_fetch import Fetcher, RemoteError, RemoteRefused

DATA = os.urandom(3 * (1 << 20) + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


class _Server:
    def __init__(self) -> None:
        self.mode = "range"  # range | norange | badrange | cut
        self.cut_at = 1 << 20
        self.sent = 0
        self.ranges: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range", "")
                outer.ranges.append(rng)
                start = 0
                if rng and outer.mode in ("range", "badrange", "cut"):
                    start = int(rng.split("=")[1].rstrip("-"))
                if start >= len(DATA) and rng:
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if start:
                    self.send_response(206)
                    shown = start + 1 if outer.mode == "badrange" else start
                    self.send_header("Content-Range",
                                     f"bytes {shown}-{len(DATA) - 1}/{len(DATA)}")
                else:
                    self.send_response(200)
                body = DATA[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "cut":
                    body = body[:outer.cut_at]
                outer.sent += len(body)  # before the write: the client may be done first
                self.wfile.write(body)
                if outer.mode == "cut":
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def srv(server: _Server) -> _Server:
    server.mode, server.sent, server.ranges = "range", 0, []
    return server


def _get(srv: _Server, tmp_path: Path, name: str = "out", **kw: Any) -> tuple[int, Fetcher]:
    f = Fetcher(srv.url)
    n = remote_resume.download(f, "/file", tmp_path / name, downloads=tmp_path / "dl",
                               sha256=kw.pop("sha256", SHA), size=kw.pop("size", len(DATA)),
                               limit=1 << 30, **kw)
    return n, f


def _cut(srv: _Server, tmp_path: Path) -> Path:
    srv.mode = "cut"
    with pytest.raises(RemoteError) as e:
        _get(srv, tmp_path)
    assert not isinstance(e.value, RemoteRefused), e.value  # cut: worth keeping
    part = remote_resume.partial_path(tmp_path / "dl", SHA)
    assert part.stat().st_size == srv.cut_at  # what came is kept
    assert not (tmp_path / "out").exists()
    return part


def test_cut_download_resumes_with_range(srv: _Server, tmp_path: Path) -> None:
    part = _cut(srv, tmp_path)
    srv.mode, srv.sent = "range", 0
    n, f = _get(srv, tmp_path)
    assert srv.ranges[-1] == f"bytes={srv.cut_at}-"
    assert n == f.fetched == srv.sent == len(DATA) - srv.cut_at
    assert (tmp_path / "out").read_bytes() == DATA
    assert not part.exists()


def test_server_without_range_starts_over(srv: _Server, tmp_path: Path) -> None:
    _cut(srv, tmp_path)
    srv.mode, srv.sent = "norange", 0
    n, _ = _get(srv, tmp_path)
    assert n == srv.sent == len(DATA)
    assert (tmp_path / "out").read_bytes() == DATA


def test_another_range_is_refused_and_forgotten(srv: _Server, tmp_path: Path) -> None:
    part = _cut(srv, tmp_path)
    srv.mode = "badrange"
    with pytest.raises(RemoteRefused, match="another range"):
        _get(srv, tmp_path)
    assert not part.exists() and not (tmp_path / "out").exists()


def test_a_bad_prefix_fails_the_digest_once(srv: _Server, tmp_path: Path) -> None:
    part = _cut(srv, tmp_path)
    with open(part, "r+b") as f:
        f.write(b"X")
    srv.mode = "range"
    with pytest.raises(RemoteRefused, match="sha256"):
        _get(srv, tmp_path)
    assert not part.exists() and not (tmp_path / "out").exists()
    srv.sent = 0
    n, _ = _get(srv, tmp_path)  # the next one starts over
    assert n == len(DATA) and (tmp_path / "out").read_bytes() == DATA


def test_whole_partial_is_not_fetched_again(srv: _Server, tmp_path: Path) -> None:
    part = remote_resume.partial_path(tmp_path / "dl", SHA)
    part.parent.mkdir()
    part.write_bytes(DATA)
    n, _ = _get(srv, tmp_path)
    assert n == 0 and srv.ranges == [] and (tmp_path / "out").read_bytes() == DATA
    part.write_bytes(DATA)  # the size unknown (an LXD unified tarball): hashed
    n, _ = _get(srv, tmp_path, "out2", size=None)
    assert n == 0 and srv.ranges == []


def test_larger_than_declared_is_refused(srv: _Server, tmp_path: Path) -> None:
    with pytest.raises(RemoteRefused, match="larger than"):
        _get(srv, tmp_path, size=1000)
    assert not list((tmp_path / "dl").iterdir())


def test_partial_held_by_another_pull_is_left_alone(srv: _Server, tmp_path: Path) -> None:
    part = _cut(srv, tmp_path)
    srv.mode, srv.sent = "range", 0
    with open(part, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        n, _ = _get(srv, tmp_path)
    assert n == len(DATA) and srv.ranges[-1] == ""
    assert part.stat().st_size == srv.cut_at


def test_sweep_drops_old_partials_only(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    dl.mkdir()
    old, young, junk = dl / f"sha256-{'a' * 64}.part", dl / f"sha256-{'b' * 64}.part", dl / "x"
    for p in (old, young, junk):
        p.write_bytes(b"1")
    os.utime(old, (time.time() - 100, time.time() - 100))
    assert sorted(remote_resume.sweep(dl, max_age=50)) == sorted([old.name, junk.name])
    assert young.exists()
    assert remote_resume.sweep(tmp_path / "missing", max_age=1) == []


def test_lxd_unified_export_resumes(srv: _Server, tmp_path: Path) -> None:
    """An LXD server's unified tarball: its fingerprint is its sha256, so it
    resumes as a simplestreams item does."""
    from cove.storage import lxd_remote

    img = lxd_remote.LxdImage(SHA, {})
    dl = tmp_path / "dl"
    srv.mode = "cut"
    with pytest.raises(RemoteError):
        lxd_remote.download(Fetcher(srv.url), img, tmp_path, limit=1 << 30, downloads=dl)
    assert remote_resume.partial_path(dl, SHA).stat().st_size == srv.cut_at
    assert not (tmp_path / "image.tar").exists()
    srv.mode, srv.sent = "range", 0
    f = Fetcher(srv.url)
    rootfs, meta = lxd_remote.download(f, img, tmp_path, limit=1 << 30, downloads=dl)
    assert meta is None and rootfs.read_bytes() == DATA
    assert srv.sent == f.fetched == len(DATA) - srv.cut_at
    assert list(dl.iterdir()) == []
