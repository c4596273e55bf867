"""An OCI image's run config in an image tarball (``storage.oci_keep``):
what an export sends for each kind of image directory, what an import
takes, and hostile members refused naming ``oci.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cove.model.errors import BadRequest
from cove.storage import oci_keep
from cove.storage.safefs import RootFS

KEYS = {"cove.cwd": "/srv", "cove.uid": "1000", "cove.gid": "1000", "cove.halt": "15",
        "cove.health": "/bin/true", "cove.health.interval": "5s"}


def _never() -> tuple[list[str], dict[str, str]]:
    raise AssertionError("the row is asked only for an OCI import of before")


def test_export_member_by_kind_of_image(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    oci_keep.write_full(full / "oci.json", ["/entry", "arg"], {"A": "1"}, KEYS)
    member = oci_keep.export_member(full, _never)
    assert member is not None and member == oci_keep.export_member(full, _never)  # stable
    assert oci_keep.decode(member) == (["/entry", "arg"], {"A": "1"}, KEYS)
    assert oci_keep.kept_run(full) == (["/entry", "arg"], {"A": "1"})

    # an OCI import of before: the short form, its command from the row
    old = tmp_path / "old"
    old.mkdir()
    (old / "oci.json").write_text(json.dumps({"config": {"cove.cwd": "/w"}}))
    (old / "manifest.json").write_text("{}")
    member = oci_keep.export_member(old, lambda: (["/run"], {"B": "2"}))
    assert member is not None and oci_keep.decode(member) == (["/run"], {"B": "2"},
                                                              {"cove.cwd": "/w"})
    assert oci_keep.kept_run(old) is None

    # a published image of before (short form, no manifest): its fingerprint
    # was hashed without the member, so none; an image with no oci.json, none
    (old / "manifest.json").unlink()
    assert oci_keep.export_member(old, _never) is None
    assert oci_keep.export_member(tmp_path, _never) is None


@pytest.mark.parametrize(("doc", "needle"), [
    ({"config": {"security.privileged": "true"}}, "security.privileged"),
    ({"config": {"raw.lxc": "x"}}, "raw.lxc"),
    ({"config": {"cove.cmd": "/bin/sh"}}, "cove.cmd"),
    ({"config": {"cove.cwd": "relative"}}, "cove.cwd"),
    ({"config": {"cove.halt": "NOSIG"}}, "oci.json"),
    ({"config": []}, "'config'"),
    ({"cmd": "/bin/sh"}, "'cmd'"),
    ({"cmd": ["a\0b"]}, "'cmd'"),
    ({"env": {"A=B": "x"}}, "'env'"),
    ({"env": {"": "x"}}, "'env'"),
    ({"env": {"A": 1}}, "'env'"),
    ([], "JSON object"),
])
def test_hostile_members_are_refused(doc: object, needle: str) -> None:
    with pytest.raises(BadRequest) as e:
        oci_keep.decode(json.dumps(doc).encode())
    assert e.value.message.startswith("oci.json:") and needle in e.value.message


def test_keep_takes_a_checked_regular_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    with RootFS(src) as fs:
        oci_keep.keep(fs, dst)  # none: nothing
        assert not (dst / "oci.json").exists()
        (src / "oci.json").write_bytes(b'{"cmd": ["/x"], "env": {}, "config": {}}')
        oci_keep.keep(fs, dst)
        assert oci_keep.kept_run(dst) == (["/x"], {})
        for bad, needle in ((b"not json", "not valid JSON"),
                            (b" " * (oci_keep.LIMIT + 1), "larger than")):
            (src / "oci.json").write_bytes(bad)
            with pytest.raises(BadRequest, match=needle):
                oci_keep.keep(fs, dst)
        (src / "oci.json").unlink()
        os.symlink("/etc/passwd", src / "oci.json")
        with pytest.raises(BadRequest, match="oci.json: not a regular file"):
            oci_keep.keep(fs, dst)
