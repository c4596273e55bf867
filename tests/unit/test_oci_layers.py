"""OCI layers as hostile input (``storage.oci_layer``) and layouts
(``storage.oci_layout``): whiteouts, opaque directories, the image
tarballs' hostile cases, digests, sizes, decompression caps."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from cove.model.errors import BadRequest, NotFound
from cove.storage._extract import Budget
from cove.storage.oci_layer import extract_layer
from cove.storage.oci_layout import Layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from ocilayout import LayoutBuilder, host_goarch, other_goarch, tar_of

SENTINEL = "covetest-oci-sentinel"


def _extract(tmp_path: Path, raw: bytes, how: str = "gzip", *, limit: int | None = 1 << 30,
             size: int | None = None, digest: str | None = None,
             diff_id: str | None = None) -> Path:
    blob = {"gzip": lambda b: gzip.compress(b, mtime=0),
            "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
            "none": lambda b: b}[how](raw)
    (tmp_path / "blob").write_bytes(blob)
    dest = tmp_path / "layer"
    dest.mkdir()
    with open(tmp_path / "blob", "rb") as f:
        extract_layer(f, dest, digest=digest or hashlib.sha256(blob).hexdigest(),
                      size=len(blob) if size is None else size,
                      diff_id=diff_id or hashlib.sha256(raw).hexdigest(),
                      budget=Budget(limit))
    return dest


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir()
    (d / SENTINEL).write_text("host file")
    return d


@pytest.mark.parametrize("how", ["gzip", "zstd", "none"])
def test_whiteouts_and_opaque_dirs(tmp_path: Path, how: str) -> None:
    dest = _extract(tmp_path, tar_of([
        ("f", "etc/.wh.passwd", b""), ("d", "var", None), ("f", "var/.wh..wh..opq", b""),
        ("f", "var/new", b"n"), ("f", "keep", b"k"), ("f", ".wh.keep", b""),
        ("f", "a/b/.wh.c", b"")]), how)
    for wh in ("etc/passwd", "a/b/c"):
        s = os.lstat(dest / wh)
        assert stat.S_ISCHR(s.st_mode) and s.st_rdev == 0
    assert os.getxattr(dest / "var", "trusted.overlay.opaque") == b"y"
    assert (dest / "var" / "new").read_bytes() == b"n"
    assert (dest / "keep").read_bytes() == b"k"  # a whiteout hides only lower layers
    assert not any(n.startswith(".wh.") for _, ds, fs in os.walk(dest) for n in ds + fs)


@pytest.mark.parametrize("members, message", [
    ([("f", "../.wh.x", b"")], "'..'"),
    ([("f", "/etc/.wh.passwd", b"")], "absolute"),
    ([("f", "a/../../x", b"")], "'..'"),
    ([("f", ".wh..wh..opq", b"")], "opaque marker at the layer's root"),
    ([("d", "d/.wh..wh..opq", None)], "regular file entry"),
    ([("l", "x/.wh.y", "/etc")], "regular file entry"),
    ([("f", "a/.wh..wh..opq/b", b"")], "whiteout name inside a path"),
    ([("f", "a/.wh.", b"")], "not a valid whiteout name"),
    ([("f", "a/.wh...", b"")], "not a valid whiteout name"),
    ([("f", "a/.wh..wh.plnk", b"")], "not a valid whiteout name"),
    ([("l", "etc", "/etc"), ("f", "etc/.wh.passwd", b"")], "is a symlink"),
    ([("l", "up", ".."), ("f", "up/.wh..wh..opq", b"")], "is a symlink"),
    ([("f", "file", b"x"), ("f", "file/.wh.y", b"")], "is a file"),
    ([("c", "dev/null", (1, 3))], "device nodes"),
    ([("c", "x", (0, 0))], "device nodes"),
    ([("f", "a", b"a"), ("h", "b", "../../" + SENTINEL)], "'..'"),
    ([("h", "b", "etc/missing")], "layer member 'b'"),
    ([("f", ".wh.x", b""), ("h", "y", ".wh.x")], "hardlink to a whiteout"),
])
def test_hostile_layers_are_refused(tmp_path: Path, outside: Path,
                                    members: list[tuple[str, str, object]],
                                    message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _extract(tmp_path, tar_of(members))
    assert [p.name for p in outside.iterdir()] == [SENTINEL]
    assert (outside / SENTINEL).read_text() == "host file"


def test_image_tarball_hostile_cases_hold_for_layers(tmp_path: Path, outside: Path) -> None:
    """The image tarballs' symlink cases: everything lands inside the layer,
    or the layer is refused; the host is never written."""
    dest = _extract(tmp_path, tar_of([
        ("l", "up", "../../../.."), ("f", "up/escaped", b"inside"),
        ("l", "host", str(outside / SENTINEL))]))
    assert (dest / "escaped").read_bytes() == b"inside"
    assert not (tmp_path.parent / "escaped").exists()
    assert os.readlink(dest / "host") == str(outside / SENTINEL)
    for members in ([("l", "etc", str(outside)), ("f", f"etc/{SENTINEL}", b"pwned")],
                    [("l", "etc", "/etc"), ("f", "etc/covetest-oci", b"pwned")],
                    [("l", "x", str(outside / SENTINEL)), ("f", "x", b"pwned")]):
        sub = tmp_path / f"case{len(os.listdir(tmp_path))}"
        sub.mkdir()
        try:
            _extract(sub, tar_of(members))
        except BadRequest:
            pass
        assert (outside / SENTINEL).read_text() == "host file"
        assert not Path("/etc/covetest-oci").exists()


def test_size_digest_and_diff_id_are_checked(tmp_path: Path) -> None:
    raw = tar_of([("f", "x", b"x")])
    for kw, message in (({"size": 10}, "declares 10"),
                        ({"digest": "0" * 64}, "digest mismatch"),
                        ({"diff_id": "1" * 64}, "diff_id mismatch")):
        sub = tmp_path / message.split()[0]
        sub.mkdir()
        with pytest.raises(BadRequest, match=message):
            _extract(sub, raw, **kw)  # type: ignore[arg-type]


def test_decompression_bomb_stops_at_its_header(tmp_path: Path) -> None:
    """A member claiming 20 GiB is refused before a byte of it is written."""
    info = tarfile.TarInfo("bomb")
    info.size = 20 << 30
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(header)
        g.write(bytes(8 << 20))  # the first 8 MiB of its zeros
    (tmp_path / "blob").write_bytes(gz.getvalue())
    (tmp_path / "layer").mkdir()
    with open(tmp_path / "blob", "rb") as f, pytest.raises(BadRequest, match="more than"):
        extract_layer(f, tmp_path / "layer", digest="0" * 64, size=len(gz.getvalue()),
                      diff_id="0" * 64, budget=Budget(1 << 30))
    assert os.listdir(tmp_path / "layer") == []


def test_trailing_zeros_past_the_cap_are_refused(tmp_path: Path) -> None:
    raw = tar_of([("f", "x", b"x")]) + bytes(4 << 20)
    with pytest.raises(BadRequest, match="uncompresses to more than"):
        _extract(tmp_path, raw, "zstd", limit=1 << 20)


def _layout(tmp_path: Path) -> LayoutBuilder:
    return LayoutBuilder(tmp_path / "layout")


def test_layout_picks_by_ref_and_architecture(tmp_path: Path) -> None:
    lay = _layout(tmp_path)
    mine, _ = lay.image([(tar_of([("f", "a", b"a")]), "gzip")], {"Cmd": ["a"]})
    theirs, _ = lay.image([(tar_of([("f", "b", b"b")]), "gzip")], {}, arch=other_goarch())
    lay.add_index([theirs, mine], "multi")
    lay.write()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(host_goarch(), host_goarch())
    with Layout(lay.path) as layout:
        assert layout.pick(None, arch).fingerprint == mine["digest"][7:]
        assert layout.pick("multi", arch).fingerprint == mine["digest"][7:]
        with pytest.raises(NotFound):
            layout.pick("nope", arch)


def test_layout_blobs_are_checked(tmp_path: Path) -> None:
    lay = _layout(tmp_path)
    d, mbytes = lay.image([(tar_of([("f", "a", b"a")]), "gzip")], {})
    lay.add(d)
    lay.write()
    blob = lay.path / "blobs" / "sha256" / d["digest"][7:]
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(host_goarch(), host_goarch())
    blob.write_bytes(mbytes.replace(b'"schemaVersion": 2', b'"schemaVersion": 3'))
    with Layout(lay.path) as layout, pytest.raises(BadRequest, match="does not match"):
        layout.pick(None, arch)
    blob.unlink()
    blob.symlink_to("/etc/hostname")  # never read through
    with Layout(lay.path) as layout, pytest.raises((BadRequest, NotFound)):
        layout.pick(None, arch)
    (lay.path / "index.json").write_text(json.dumps({"manifests": [{"mediaType": "x"}]}))
    with Layout(lay.path) as layout, pytest.raises(BadRequest, match="digest"):
        layout.pick(None, arch)


def test_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="oci-layout"):
        Layout(tmp_path)


def test_zstd_image_tarball_imports(tmp_path: Path) -> None:
    """zstd is no longer refused for image tarballs either (LXD takes it)."""
    from cove.storage.images import ImageStore

    raw = tar_of([("d", "etc", None), ("f", "etc/hostname", b"z\n"), ("f", "big", bytes(70000)),
                  ("f", "after", b"a")])
    (tmp_path / "img.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    store = ImageStore(tmp_path / "store")
    got = store.import_file(tmp_path / "img.tar.zst")
    root = store.rootfs(got.fingerprint)
    assert (root / "etc" / "hostname").read_bytes() == b"z\n"
    assert (root / "after").read_bytes() == b"a"
    (tmp_path / "bad.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 64)
    with pytest.raises(BadRequest, match="not a valid image archive"):
        store.import_file(tmp_path / "bad.tar.zst")
