"""An instance's own metadata.yaml and templates (``engine._inst_metadata``)
on real directories, the image side faked: LXD's ``ImageMetadata`` shape,
copy-on-first-write from the image, hostile names and rules refused with
nothing written, a backup's hostile templates/ taken without its symlinks,
and the ``/etc/hosts`` that keeps an image's template (``network.dns``)."""

from __future__ import annotations

import os
from ipaddress import ip_address
from pathlib import Path

import pytest
import yaml

from cove.engine._inst_metadata import (
    InstanceMetadata,
    effective_templates,
    own_files,
    restore_own,
    stage_templates,
)
from cove.engine._runs import Paths
from cove.engine.events import EventBus
from cove.model.errors import BadRequest, NotFound
from cove.model.records import Instance
from cove.model.templates import metadata_wire
from cove.network.dns import hosts_on_base
from cove.store import Store

FP = "a" * 64
META = {"architecture": "x86_64", "creation_date": 5, "properties": {"os": "busybox"},
        "templates": {"/etc/hostname": {"when": ["create"], "template": "hostname.tpl"}}}


class _Images:
    def __init__(self, root: Path) -> None:
        self.dir = root / "image"
        (self.dir / "templates").mkdir(parents=True)
        (self.dir / "templates" / "hostname.tpl").write_text("{{ instance.name }}\n")
        (self.dir / "metadata.yaml").write_text(yaml.safe_dump(META))

    def template_files(self, fingerprint: str) -> tuple[bytes | None, Path | None]:
        assert fingerprint == FP
        return (self.dir / "metadata.yaml").read_bytes(), self.dir / "templates"


@pytest.fixture
def svc(tmp_path: Path) -> tuple[InstanceMetadata, _Images, Path]:
    store = Store(tmp_path / "cove.db")
    store.add_instance(Instance(name="web", image=FP, architecture="x86_64"))
    (tmp_path / "instances" / "web").mkdir(parents=True)
    images = _Images(tmp_path)
    return (InstanceMetadata(store=store, paths=Paths(tmp_path), images=images,
                             events=EventBus()), images, tmp_path / "instances" / "web")


def test_metadata_wire_shape_and_refusals() -> None:
    assert metadata_wire({}) == {"architecture": "", "creation_date": 0, "expiry_date": 0,
                                 "properties": None, "templates": None}
    assert metadata_wire(META)["templates"] == {"/etc/hostname": {
        "when": ["create"], "create_only": False, "template": "hostname.tpl",
        "properties": None}}
    for bad in ([], {"creation_date": "x"}, {"architecture": 1},
                {"templates": {"/x": {"template": "../y"}}},
                {"templates": {"/../x": {"template": "y"}}}, {"templates": []}):
        with pytest.raises(BadRequest):
            metadata_wire(bad)


def test_copy_on_first_write(svc: tuple[InstanceMetadata, _Images, Path]) -> None:
    meta, images, d = svc
    assert meta.get("web")["templates"] == metadata_wire(META)["templates"]
    assert own_files(d) is None  # read: nothing copied
    meta.template_put("web", "extra.tpl", b"x")
    assert own_files(d) is not None
    assert meta.template_names("web") == ["extra.tpl", "hostname.tpl"]
    assert meta.template_get("web", "hostname.tpl") == b"{{ instance.name }}\n"
    meta.template_delete("web", "hostname.tpl")
    assert os.listdir(images.dir / "templates") == ["hostname.tpl"]  # the image's stays
    with pytest.raises(NotFound):
        meta.template_delete("web", "hostname.tpl")
    meta.put("web", {**META, "properties": {"os": "edited"}})
    assert meta.get("web")["properties"] == {"os": "edited"}
    # written back as LXD's encoder writes it: a null map reads back empty
    assert effective_templates(d, images, Instance(name="web", image=FP)) == {
        "/etc/hostname": {"when": ["create"], "create_only": False,
                          "template": "hostname.tpl", "properties": {}}}


def test_hostile_names_write_nothing(svc: tuple[InstanceMetadata, _Images, Path],
                                     tmp_path: Path) -> None:
    meta, _, d = svc
    for name in ("", "..", "../x", "a/b", "a\\b", ".", "x\0"):
        with pytest.raises(BadRequest):
            meta.template_put("web", name, b"x")
        with pytest.raises(BadRequest):
            meta.template_get("web", name)
    with pytest.raises(BadRequest):
        meta.put("web", {"templates": {"/etc/x": {"template": "../../etc/shadow"}}})
    assert own_files(d) is None and sorted(os.listdir(d)) == []
    # a symlink planted in the instance's templates/ is neither read nor written through
    meta.template_put("web", "ok.tpl", b"x")
    outside = tmp_path / "outside"
    outside.write_text("secret")
    (d / "templates" / "link.tpl").symlink_to(outside)
    with pytest.raises(NotFound):
        meta.template_get("web", "link.tpl")
    with pytest.raises(BadRequest):
        meta.template_put("web", "link.tpl", b"overwrite")
    assert outside.read_text() == "secret"
    with pytest.raises(NotFound):
        meta.get("other")


def test_backup_templates_round_trip_without_symlinks(
        svc: tuple[InstanceMetadata, _Images, Path], tmp_path: Path) -> None:
    _, images, d = svc
    staged = tmp_path / "stage"
    staged.mkdir()
    assert stage_templates(d, images, Instance(name="web", image=FP),
                           staged / "templates") == ["templates", "templates/hostname.tpl"]
    (staged / "metadata.yaml").write_text(yaml.safe_dump(META))
    (staged / "templates" / "evil.tpl").symlink_to("/etc/shadow")
    target = tmp_path / "imported"
    target.mkdir()
    restore_own(staged, target)
    assert sorted(os.listdir(target / "templates")) == ["hostname.tpl"]
    assert yaml.safe_load((target / "metadata.yaml").read_text()) == META
    empty = tmp_path / "empty"
    empty.mkdir()
    restore_own(tmp_path / "nothing", empty)  # no templates in the backup: nothing made
    assert os.listdir(empty) == []


def test_hosts_on_base_keeps_the_template() -> None:
    base = "127.0.1.1\tweb\n127.0.0.1\tlocalhost"
    assert hosts_on_base(base, "web", "cove", [ip_address("10.0.0.2")]) == \
        "127.0.1.1\tweb\n127.0.0.1\tlocalhost\n10.0.0.2\tweb.cove web\n"
    assert hosts_on_base("", "web", "", []) == ""
