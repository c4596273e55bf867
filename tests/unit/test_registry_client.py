"""The registry client against a fake registry on loopback: pulls into an OCI
layout, auth, index platform choice, resume, push, and the hostile answers
(digest mismatches, a blob longer than declared, redirects to another host)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeregistry import Registry as FakeRegistry
from fakeregistry import Server, digest, layer, make_image, make_index

from cove.model.errors import BadRequest, InternalError, NotFound
from cove.storage.registry import (
    Descriptor,
    Layout,
    Reference,
    Registry,
    RegistryAuthError,
    RegistryError,
    host_platform,
)


@pytest.fixture
def fake() -> Iterator[tuple[FakeRegistry, Server]]:
    reg = FakeRegistry()
    srv = Server(reg)
    yield reg, srv
    srv.close()


def _two_layers() -> tuple[bytes, bytes]:
    return layer({"etc/os-release": b"ID=fake\n"}), layer({"bin/app": b"x" * 300_000})


def _client(srv: Server, **kw: object) -> Registry:
    return Registry(srv.url, insecure=True, **kw)  # type: ignore[arg-type]


def _blob_gets(reg: FakeRegistry, dig: str) -> list[str]:
    return [rng for m, p, rng in reg.requests if m == "GET" and p.endswith(f"/blobs/{dig}")]


def test_reference_grammar() -> None:
    assert Reference.parse("alpine") == Reference("alpine", "latest", "")
    assert Reference.parse("library/alpine:3.20") == Reference("library/alpine", "3.20", "")
    d = "sha256:" + "a" * 64
    assert Reference.parse(f"a/b@{d}") == Reference("a/b", "", d)
    for bad in ("Alpine", "a//b", "a:b:c", "a@sha256:xyz", "a:" + "t" * 129, ""):
        with pytest.raises(BadRequest):
            Reference.parse(bad)


def test_plain_http_only_insecure_on_loopback() -> None:
    with pytest.raises(BadRequest, match="insecure"):
        Registry("http://127.0.0.1:5000")
    with pytest.raises(BadRequest, match="loopback"):
        Registry("http://192.0.2.1:5000", insecure=True)
    with pytest.raises(BadRequest, match="https"):
        Registry("ftp://127.0.0.1/")
    Registry("http://127.0.0.1:5000", insecure=True)


def test_pull_into_layout_and_again_fetches_nothing(fake: tuple[FakeRegistry, Server],
                                                     tmp_path: Path) -> None:
    reg, srv = fake
    img = make_image(list(_two_layers()))
    reg.add("library/app", "1.0", img)
    seen: list[tuple[str, int | None, str]] = []
    pulled = _client(srv).pull(Reference.parse("library/app:1.0"), tmp_path,
                               progress=lambda s, p, t: seen.append((s, p, t)))
    assert pulled.manifest.digest == digest(img.manifest)
    assert [x.digest for x in pulled.layers] == list(img.blobs)[1:]
    assert pulled.config_data["config"]["Cmd"] == ["/bin/sh"]
    assert pulled.fetched_bytes == sum(len(b) for b in img.blobs.values())
    for dig, data in [*img.blobs.items(), (digest(img.manifest), img.manifest)]:
        assert (tmp_path / "blobs/sha256" / dig[7:]).read_bytes() == data
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest(img.manifest)
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == \
        f"127.0.0.1:{reg.port}/library/app:1.0"
    assert json.loads((tmp_path / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    assert seen and seen[-1][1] == 100 and all(s == "Download" for s, _, _ in seen)
    assert not list((tmp_path / "ingest").iterdir())

    reg.requests.clear()
    again = _client(srv).pull(Reference.parse("library/app:1.0"), tmp_path)
    assert again.fetched_bytes == 0
    assert not [p for _, p, _ in reg.requests if "/blobs/" in p]


def test_second_image_fetches_only_its_new_layer(fake: tuple[FakeRegistry, Server],
                                                  tmp_path: Path) -> None:
    reg, srv = fake
    base, top = _two_layers()
    other = layer({"bin/other": b"y" * 1000})
    reg.add("a", "1", make_image([base, top]))
    reg.add("b", "1", make_image([base, other], cmd="/bin/other"))
    client = _client(srv)
    client.pull(Reference.parse("a:1"), tmp_path)
    reg.requests.clear()
    pulled = client.pull(Reference.parse("b:1"), tmp_path)
    assert _blob_gets(reg, digest(base)) == []
    assert _blob_gets(reg, digest(other)) == [""]
    assert pulled.fetched_bytes == len(other) + pulled.config.size


def test_index_picks_this_hosts_architecture(fake: tuple[FakeRegistry, Server],
                                             tmp_path: Path) -> None:
    reg, srv = fake
    arch, _ = host_platform()
    mine = make_image([layer({"mine": b"1"})])
    theirs = make_image([layer({"theirs": b"2"})])
    alien = "s390x" if arch != "s390x" else "amd64"
    index = make_index([(alien, theirs), (arch, mine)])
    reg.blobs.update(mine.blobs)
    reg.blobs.update(theirs.blobs)
    for img in (mine, theirs):
        reg.manifests[f"multi:{digest(img.manifest)}"] = (
            "application/vnd.oci.image.manifest.v1+json", img.manifest)
    reg.manifests["multi:latest"] = ("application/vnd.oci.image.index.v1+json", index)
    pulled = _client(srv).pull(Reference.parse("multi"), tmp_path)
    assert pulled.manifest.digest == digest(mine.manifest)
    assert not (tmp_path / "blobs/sha256" / digest(theirs.manifest)[7:]).exists()

    reg.manifests["only-alien:latest"] = ("application/vnd.oci.image.index.v1+json",
                                          make_index([(alien, theirs)]))
    with pytest.raises(RegistryError, match=f"no linux/{arch} manifest.*linux/{alien}"):
        _client(srv).pull(Reference.parse("only-alien"), tmp_path)


def test_missing_tag_is_not_found(fake: tuple[FakeRegistry, Server], tmp_path: Path) -> None:
    _, srv = fake
    with pytest.raises(NotFound, match="MANIFEST_UNKNOWN"):
        _client(srv).pull(Reference.parse("nope:1"), tmp_path)


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_auth_from_an_auth_file(fake: tuple[FakeRegistry, Server], tmp_path: Path,
                                mode: str) -> None:
    reg, srv = fake
    reg.auth = mode
    reg.add("priv", "1", make_image([layer({"f": b"1"})]))
    with pytest.raises(RegistryAuthError):
        _client(srv).pull(Reference.parse("priv:1"), tmp_path / "l")
    auth = tmp_path / "auth.json"
    good = base64.b64encode(b"alice:s3cret").decode()
    auth.write_text(json.dumps({"auths": {f"127.0.0.1:{reg.port}": {"auth": good}}}))
    pulled = _client(srv, auth_file=auth).pull(Reference.parse("priv:1"), tmp_path / "l")
    assert pulled.layers
    bad = base64.b64encode(b"alice:wrong").decode()
    auth.write_text(json.dumps({"auths": {f"https://127.0.0.1:{reg.port}": {"auth": bad}}}))
    with pytest.raises(RegistryAuthError):
        _client(srv, auth_file=auth).pull(Reference.parse("priv:1"), tmp_path / "l")


def test_manifest_not_matching_its_digest_is_refused(fake: tuple[FakeRegistry, Server],
                                                     tmp_path: Path) -> None:
    reg, srv = fake
    img = make_image([layer({"f": b"1"})])
    reg.add("m", "1", img)
    reg.wrong_digest_header = True
    with pytest.raises(RegistryError, match="does not match its digest"):
        _client(srv).pull(Reference.parse("m:1"), tmp_path)
    reg.wrong_digest_header = False
    # asked for by digest, the body is another one
    wanted = digest(img.manifest)
    reg.manifests[f"m:{wanted}"] = (reg.manifests[f"m:{wanted}"][0], img.manifest + b"\n")
    with pytest.raises(RegistryError, match="does not match its digest"):
        _client(srv).pull(Reference.parse(f"m@{wanted}"), tmp_path)
    assert not (tmp_path / "blobs/sha256" / wanted[7:]).exists()


def test_blob_larger_than_declared_is_cut_off_and_refused(
        fake: tuple[FakeRegistry, Server], tmp_path: Path) -> None:
    reg, srv = fake
    big = layer({"f": b"z" * 100_000})
    reg.add("o", "1", make_image([big]))
    reg.extra_bytes[digest(big)] = b"\0" * (8 << 20)
    with pytest.raises(RegistryError, match="larger than the .* bytes its manifest declares"):
        _client(srv).pull(Reference.parse("o:1"), tmp_path)
    assert not (tmp_path / "blobs/sha256" / digest(big)[7:]).exists()
    assert not list((tmp_path / "ingest").iterdir())


def test_blob_with_another_digest_is_refused(fake: tuple[FakeRegistry, Server],
                                             tmp_path: Path) -> None:
    reg, srv = fake
    real = layer({"f": b"1"})
    reg.add("d", "1", make_image([real]))
    reg.blobs[digest(real)] = bytes(len(real))  # same size, other bytes
    with pytest.raises(RegistryError, match="does not match its digest"):
        _client(srv).pull(Reference.parse("d:1"), tmp_path)
    assert not (tmp_path / "blobs/sha256" / digest(real)[7:]).exists()


def test_blob_redirects(fake: tuple[FakeRegistry, Server], tmp_path: Path) -> None:
    reg, srv = fake
    img = make_image([layer({"f": b"1"})])
    reg.add("r", "1", img)
    # to another host, over plain http: refused (a blob goes elsewhere only over https)
    reg.redirect_blobs = f"http://127.0.0.2:{reg.port}/v2/r"
    with pytest.raises(RegistryError, match="only https targets are followed"):
        _client(srv).pull(Reference.parse("r:1"), tmp_path)
    # to an https host that is internal, from a registry that is not loopback: refused
    from cove.storage._registry_http import Origin
    origin = Origin("https://registry.example")
    with pytest.raises(RegistryError, match="internal address"):
        origin._check_redirect("https://169.254.169.254/x", may_leave=True)
    with pytest.raises(RegistryError, match="another origin"):
        origin._check_redirect("https://cdn.example/x", may_leave=False)
    # within the same origin: followed
    reg.redirect_blobs = ""
    reg.blobs["sha256:" + "0" * 64] = b""
    pulled = _client(srv).pull(Reference.parse("r:1"), tmp_path)
    assert pulled.layers


def test_interrupted_pull_resumes_with_range(fake: tuple[FakeRegistry, Server],
                                             tmp_path: Path) -> None:
    reg, srv = fake
    first, second = layer({"a": b"1"}), layer({"b": os.urandom(200_000)})
    reg.add("i", "1", make_image([first, second]))
    reg.cut_after[digest(second)] = 50_000
    with pytest.raises(RegistryError, match="stopped at"):
        _client(srv).pull(Reference.parse("i:1"), tmp_path)
    assert (tmp_path / "blobs/sha256" / digest(first)[7:]).exists()
    assert (tmp_path / "ingest" / digest(second).replace(":", "-")).stat().st_size == 50_000
    reg.requests.clear()
    pulled = _client(srv).pull(Reference.parse("i:1"), tmp_path)
    assert _blob_gets(reg, digest(first)) == []
    assert _blob_gets(reg, digest(second)) == ["bytes=50000-"]
    assert pulled.fetched_bytes == len(second) - 50_000
    assert (tmp_path / "blobs/sha256" / digest(second)[7:]).read_bytes() == second


@pytest.mark.parametrize("auth", ["", "bearer"])
def test_push_sends_only_missing_blobs(fake: tuple[FakeRegistry, Server], tmp_path: Path,
                                       auth: str) -> None:
    reg, srv = fake
    img = make_image(list(_two_layers()))
    reg.add("src", "1", img)
    client = _client(srv)
    pulled = client.pull(Reference.parse("src:1"), tmp_path)
    reg.blobs.clear()
    reg.manifests.clear()
    reg.auth = auth
    client = _client(srv, credentials=("alice", "s3cret"))
    sent = client.push(tmp_path, pulled.manifest, Reference.parse("dst/x:2"))
    assert set(reg.uploads) == set(img.blobs)
    assert sent == sum(len(b) for b in img.blobs.values()) + len(img.manifest)
    assert reg.manifests["dst/x:2"][1] == img.manifest
    reg.uploads.clear()
    client.push(tmp_path, pulled.manifest, Reference.parse("dst/x:3"))
    assert reg.uploads == {}
    with pytest.raises(BadRequest):
        client.push(tmp_path, Descriptor("x", "sha256:" + "1" * 64, 1), Reference.parse("a:1"))


def test_cancelled_pull_keeps_what_came(fake: tuple[FakeRegistry, Server],
                                        tmp_path: Path) -> None:
    reg, srv = fake
    big = layer({"b": os.urandom(3 << 20)})
    reg.add("c", "1", make_image([big]))
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 2  # the config's one chunk, the layer's first, then stop

    with pytest.raises(InternalError, match="cancelled"):
        _client(srv).pull(Reference.parse("c:1"), tmp_path, cancelled=cancelled)
    part = tmp_path / "ingest" / digest(big).replace(":", "-")
    assert part.stat().st_size == 1 << 20
    reg.requests.clear()
    _client(srv).pull(Reference.parse("c:1"), tmp_path)
    assert _blob_gets(reg, digest(big)) == [f"bytes={1 << 20}-"]


def test_prune_forgets_gone_images_and_old_leftovers(fake: tuple[FakeRegistry, Server],
                                                      tmp_path: Path) -> None:
    reg, srv = fake
    base = layer({"base": b"1"})
    a, b = make_image([base]), make_image([base, layer({"b": b"2"})], cmd="/bin/b")
    reg.add("a", "1", a)
    reg.add("b", "1", b)
    client = _client(srv)
    pa = client.pull(Reference.parse("a:1"), tmp_path)
    pb = client.pull(Reference.parse("b:1"), tmp_path)
    (tmp_path / "ingest" / "sha256-partial").write_bytes(b"x")
    layout = Layout(tmp_path)
    keep_a = {pa.manifest.digest}
    # young leftovers stay (a pull may resume them); b is forgotten
    layout.prune(lambda d: d in keep_a, max_age=3600)
    assert layout.lookup(pa.name) == pa.manifest and layout.lookup(pb.name) is None
    assert layout.has(pa.manifest) and layout.has(pa.config)
    assert not layout.has(pb.manifest) and not layout.has(pb.config)
    assert layout.has(pb.layers[1]) and (tmp_path / "ingest" / "sha256-partial").exists()
    # old ones go; a's manifest and config stay
    gone = layout.prune(lambda d: d in keep_a, max_age=3600, now=time.time() + 7200)
    assert "sha256-partial" in gone
    assert not layout.has(pb.layers[1]) and not layout.has(pa.layers[0])
    assert layout.has(pa.manifest) and layout.has(pa.config)
    assert layout.prune(lambda d: d in keep_a, max_age=3600, now=time.time() + 7200) == []
