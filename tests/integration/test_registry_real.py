"""The registry client against a real Distribution registry (Debian's
``docker-registry``) on loopback with TLS (a CA made here) and htpasswd
auth, images pushed to it by ``skopeo`` from OCI layouts built here: an
index with two architectures, several layers, a zstd layer, a Docker
schema 2 image; cove pulls, pushes back, and skopeo reads what cove pushed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import mkroot
from ociregistry import (
    LAYER_ZSTD,
    PASSWORD,
    USER,
    LayoutBuilder,
    RealRegistry,
    busybox_files,
)

from cove.model.errors import BadRequest
from cove.storage.registry import (
    MEDIA_DOCKER_MANIFEST,
    Reference,
    Registry,
    RegistryAuthError,
    RegistryError,
    host_platform,
)

ALIEN = "arm64" if host_platform()[0] != "arm64" else "amd64"


@pytest.fixture(scope="module")
def world(oci_registry: RealRegistry) -> Iterator[tuple[RealRegistry, dict[str, str]]]:
    """The registry, and the digests of what was pushed to it (by name)."""
    d = mkroot("registry")
    reg = oci_registry
    arch = host_platform()[0]
    b = LayoutBuilder(d / "layout")
    base = b.layer(busybox_files())
    mid = b.layer({"etc/app.conf": b"x=1\n"})
    top = b.layer({"srv": None, "srv/data": b"zstd layer\n" * 1000}, zstd=True)
    mine = b.image([base, mid, top], arch=arch)
    theirs = b.image([b.layer({"alien": b"not for this host\n"})], arch=ALIEN)
    b.tag(b.multi_arch([(ALIEN, theirs), (arch, mine)]), "multi")
    second = b.image([base, mid, b.layer({"second": b"only here\n"})], arch=arch)
    b.tag(second, "second")
    plain = b.image([base, mid], arch=arch)
    b.tag(plain, "plain")
    reg.skopeo_push(b.root, "multi", "covetest/app:1")
    reg.skopeo_push(b.root, "second", "covetest/second:1", all_=False)
    reg.skopeo_push(b.root, "plain", "covetest/docker:1", all_=False, fmt="v2s2")
    digests = {"mine": mine["digest"], "theirs": theirs["digest"], "base": base[0]["digest"],
               "top": top[0]["digest"], "second": second["digest"]}
    yield reg, digests
    shutil.rmtree(d, ignore_errors=True)


def _client(reg: RealRegistry, **kw: object) -> Registry:
    opts: dict[str, object] = {"ca_file": reg.ca, "credentials": (USER, PASSWORD)}
    opts.update(kw)
    return Registry(reg.url, **opts)  # type: ignore[arg-type]


def test_pull_index_zstd_layers_then_a_sharing_image(
        world: tuple[RealRegistry, dict[str, str]], tmp_path: Path) -> None:
    reg, dig = world
    client = _client(reg)
    client.ping()
    pulled = client.pull(Reference.parse("covetest/app:1"), tmp_path)
    assert pulled.manifest.digest == dig["mine"]  # this host's entry of the index
    assert [x.media_type for x in pulled.layers][-1] == LAYER_ZSTD
    assert pulled.layers[-1].digest == dig["top"]
    assert not (tmp_path / "blobs/sha256" / dig["theirs"][7:]).exists()
    assert pulled.fetched_bytes > 0
    again = client.pull(Reference.parse("covetest/app:1"), tmp_path)
    assert again.fetched_bytes == 0
    second = client.pull(Reference.parse("covetest/second:1"), tmp_path)
    assert second.manifest.digest == dig["second"]
    assert second.fetched_bytes == second.layers[-1].size + second.config.size


def test_docker_schema2_manifest(world: tuple[RealRegistry, dict[str, str]],
                                 tmp_path: Path) -> None:
    reg, _ = world
    pulled = _client(reg).pull(Reference.parse("covetest/docker:1"), tmp_path)
    assert pulled.manifest.media_type == MEDIA_DOCKER_MANIFEST
    assert pulled.config_data["config"]["Cmd"] == ["/bin/sh"]


def test_push_back_and_skopeo_reads_it(world: tuple[RealRegistry, dict[str, str]],
                                       tmp_path: Path) -> None:
    reg, dig = world
    client = _client(reg)
    pulled = client.pull(Reference.parse("covetest/app:1"), tmp_path / "l")
    sent = client.push(tmp_path / "l", pulled.manifest, Reference.parse("covetest/pushed:2"))
    assert sent > 0
    raw = reg.skopeo("inspect", "--raw", "--creds", f"{USER}:{PASSWORD}", "--cert-dir",
                     str(reg.cert_dir), f"docker://{reg.host}/covetest/pushed:2")
    assert json.loads(raw)["layers"][-1]["digest"] == dig["top"]
    out = tmp_path / "back"
    reg.skopeo("copy", "-q", "--src-creds", f"{USER}:{PASSWORD}", "--src-cert-dir",
               str(reg.cert_dir), f"docker://{reg.host}/covetest/pushed:2", f"oci:{out}:x")
    assert (out / "blobs/sha256" / dig["base"][7:]).exists()
    # the blobs are there already: only the manifest goes again
    assert client.push(tmp_path / "l", pulled.manifest,
                       Reference.parse("covetest/pushed:3")) == pulled.manifest.size


def test_wrong_password_and_wrong_ca_are_refused(world: tuple[RealRegistry, dict[str, str]],
                                                 tmp_path: Path) -> None:
    reg, _ = world
    with pytest.raises(RegistryAuthError):
        _client(reg, credentials=(USER, "wrong")).pull(Reference.parse("covetest/app:1"),
                                                       tmp_path)
    with pytest.raises(RegistryAuthError):
        _client(reg, credentials=None).ping()
    with pytest.raises(RegistryError, match="TLS"):
        _client(reg, ca_file=None).ping()  # the system CAs do not know the test CA
    with pytest.raises(BadRequest, match="insecure"):
        Registry(f"http://{reg.host}")
