"""The layer store (``cove.storage.layers``): chains, references, the sweep,
a legacy image read as its own single layer, and the cleaning of an upper
layer copy; and the export side (``cove.client._wire_publish``): reading an
export answer, streamed or whole, whatever its chunking."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cove.client._http import Response
from cove.client._wire_publish import export_files, safe_filename, write_export
from cove.model.errors import BadRequest, InternalError, NotFound
from cove.storage.export import compression_ext
from cove.storage.layers import MAX_LAYERS, LayerStore, sanitize_upper

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _legacy(root: Path, fp: str) -> Path:
    (root / fp / "rootfs").mkdir(parents=True)
    return root / fp / "rootfs"


def test_legacy_image_is_its_own_layer(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    rootfs = _legacy(tmp_path, A)
    assert store.chain(A) == [A]
    assert store.lowers(A) == [rootfs]
    assert store.images() == [A]
    assert not (tmp_path / "layers").exists()  # made by the first publish only
    with pytest.raises(NotFound):
        store.chain(B)
    with pytest.raises(BadRequest):
        store.path("../etc")


def test_chain_references_and_sweep(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    _legacy(tmp_path, A)
    work = store.mkdtemp("publish")
    (work / "layer").mkdir()
    layer = store.add(work / "layer")
    store.write_chain(work, [A, layer])
    os.rename(work, tmp_path / B)
    assert store.chain(B) == [A, layer]
    assert store.lowers(B) == [tmp_path / "layers" / layer, tmp_path / A / "rootfs"]
    assert store.referenced(besides=B) == {A}
    assert store.referenced(besides=A) == {A, layer}  # B keeps A's rootfs
    orphan = store.mkdtemp("publish")
    (orphan / "l").mkdir()
    gone_id = store.add(orphan / "l")  # a publish killed before its chain
    removed: list[str] = []

    def remove(rel: str) -> None:
        removed.append(rel)
        os.rmdir(tmp_path / rel)

    assert store.sweep_layers(remove) == [gone_id]
    assert removed == [f"layers/{gone_id}"]
    (tmp_path / B / "layers.json").unlink()  # B gone: its layer is unreferenced
    os.rmdir(tmp_path / B)
    assert store.sweep_layers(remove) == [layer]


def test_bad_chains(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    (tmp_path / C).mkdir()
    (tmp_path / C / "layers.json").write_text(json.dumps({"layers": ["../x"]}))
    with pytest.raises(InternalError):
        store.chain(C)
    assert store.referenced() == set()  # logged, never a crash
    with pytest.raises(BadRequest):
        store.write_chain(tmp_path / C, [A] * (MAX_LAYERS + 1))
    with pytest.raises(BadRequest):
        store.write_chain(tmp_path / C, [])


def test_sanitize_upper_keeps_whiteouts_drops_devices(tmp_path: Path) -> None:
    top = tmp_path / "upper"
    (top / "d").mkdir(parents=True)
    os.mknod(top / "wh", 0o600 | stat.S_IFCHR, os.makedev(0, 0))  # an overlay whiteout
    os.mknod(top / "tty", 0o600 | stat.S_IFCHR, os.makedev(5, 0))
    os.mknod(top / "d" / "disk", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
    os.mkfifo(top / "fifo")
    os.symlink("/etc/shadow", top / "link")
    os.setxattr(top / "d", "trusted.overlay.opaque", b"y")
    os.setxattr(top / "d", "trusted.overlay.origin", b"x")
    assert sanitize_upper(top) == 2
    assert sorted(os.listdir(top)) == ["d", "fifo", "link", "wh"]
    assert os.listdir(top / "d") == []
    assert os.listxattr(top / "d") == ["trusted.overlay.opaque"]
    assert os.readlink(top / "link") == "/etc/shadow"  # never followed


FP = "f" * 64
_MP = (b"--XB\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"meta-F.tar\""
       b"\r\nContent-Type: application/octet-stream\r\n\r\nMETA\r\n--X\r\n--XB\r\n"
       b"Content-Disposition: form-data; name=\"rootfs\"; filename=\"../../evil\"\r\n\r\n"
       + b"R" * 3000 + b"\r\n--XB--\r\n")


@pytest.mark.parametrize("size", [1, 2, 5, 17, 4096, 1 << 20])
def test_write_export_multipart_any_chunking(tmp_path: Path, size: int) -> None:
    chunks = [_MP[i:i + size] for i in range(0, len(_MP), size)]
    written = write_export(chunks, {"content-type": "multipart/form-data; boundary=XB"}, FP,
                           str(tmp_path))
    assert [Path(p).name for p in written] == ["meta-F.tar", "evil"]  # never a path
    assert Path(written[0]).read_bytes() == b"META\r\n--X"
    assert Path(written[1]).read_bytes() == b"R" * 3000
    assert sorted(os.listdir(tmp_path)) == ["evil", "meta-F.tar"]


def test_write_export_truncated_and_unified(tmp_path: Path) -> None:
    with pytest.raises(InternalError):
        write_export([_MP[:200]], {"content-type": "multipart/form-data; boundary=XB"}, FP,
                     str(tmp_path))
    assert os.listdir(tmp_path) == []  # no .part left
    written = write_export([b"ab", b"cd"], {"content-disposition": f"inline;filename={FP}.tar"},
                           FP, str(tmp_path))
    assert written == [str(tmp_path / f"{FP}.tar")]
    assert (tmp_path / f"{FP}.tar").read_bytes() == b"abcd"


def test_export_files_whole() -> None:
    resp = Response(200, {"content-type": "multipart/form-data; boundary=XB"}, _MP)
    assert export_files(resp, FP) == [("meta-F.tar", b"META\r\n--X"), ("evil", b"R" * 3000)]
    resp = Response(200, {"content-disposition": "inline;filename=x.tar.xz"}, b"z")
    assert export_files(resp, FP) == [("x.tar.xz", b"z")]
    assert safe_filename("", FP) == FP and safe_filename("..", FP) == FP


@pytest.mark.parametrize(("head", "ext"), [(b"\x1f\x8b\x08", ".tar.gz"), (b"\xfd7zXZ\x00", ".tar.xz"),
                                           (b"BZh9", ".tar.bz2"), (b"\x28\xb5\x2f\xfd", ".tar.zst"),
                                           (b"hsqs", ".squashfs"), (b"ustar", ".tar")])
def test_compression_ext(head: bytes, ext: str) -> None:
    assert compression_ext(head) == ext


def _publisher(root: Path) -> Any:
    from types import SimpleNamespace

    from cove.engine._publish import Publisher
    from cove.engine._runs import Paths

    images = SimpleNamespace(layers=SimpleNamespace(layers=LayerStore(root / "images")))
    return Publisher(store=None, paths=Paths(root), runs=None, runtime=None,  # type: ignore[arg-type]
                     instances=None, images=images, operations=None)  # type: ignore[arg-type]


def test_publish_refuses_too_deep_or_too_long_chains(tmp_path: Path) -> None:
    root = tmp_path / "r"
    store = LayerStore(root / "images")
    _legacy(root / "images", A)
    pub = _publisher(root)
    pub._check_depth(A)  # one layer: fine
    work = store.mkdtemp("x")
    ids = [A]
    for _ in range(MAX_LAYERS - 1):
        (work / "l").mkdir()
        ids.append(store.add(work / "l"))
    store.write_chain(work, ids)
    os.rename(work, root / "images" / B)
    with pytest.raises(BadRequest, match="at most"):
        pub._check_depth(B)  # a 33rd layer
    deep = tmp_path / ("d" * 200) / ("e" * 200) / ("f" * 200)
    _legacy(deep / "images", A)
    deep_store = LayerStore(deep / "images")
    work = deep_store.mkdtemp("x")
    ids = [A]
    for _ in range(4):
        (work / "l").mkdir()
        ids.append(deep_store.add(work / "l"))
    deep_store.write_chain(work, ids)
    os.rename(work, deep / "images" / B)
    with pytest.raises(BadRequest, match="one overlay mount"):
        _publisher(deep)._check_depth(B)  # 6 paths of ~700 bytes: past one page
    with pytest.raises(BadRequest, match="not in the store"):
        pub._check_depth(C)
