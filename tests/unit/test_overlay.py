"""Overlay mounts: mount, see writes land in upper, unmount, leave nothing.

Needs root (mount(2)); every test unmounts in ``finally``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cove.model.errors import BadRequest, Conflict, InternalError
from cove.storage.overlay import is_mounted, mount_overlay, mounts_under, umount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def layer(base: Path, name: str, files: dict[str, str]) -> Path:
    path = base / name
    path.mkdir(parents=True)
    for rel, text in files.items():
        (path / rel).write_text(text)
    return path


def test_mount_write_umount(tmp_path: Path) -> None:
    lower = layer(tmp_path, "covetest-lower", {"from-image": "image", "shadowed": "low"})
    upper, work, target = (tmp_path / n for n in ("covetest-upper", "covetest-work",
                                                  "covetest-rootfs"))
    mount_overlay([lower], upper, work, target)
    try:
        assert is_mounted(target)
        assert mounts_under(tmp_path) == [str(target)]
        assert (target / "from-image").read_text() == "image"
        (target / "new").write_text("instance")
        (target / "shadowed").write_text("changed")
        assert (upper / "new").read_text() == "instance"
        assert (upper / "shadowed").read_text() == "changed"
        assert (lower / "shadowed").read_text() == "low"
        assert not (lower / "new").exists()
        with pytest.raises(Conflict):
            mount_overlay([lower], upper, work, target)
    finally:
        umount(target)
    assert not is_mounted(target)
    assert mounts_under(tmp_path) == []
    assert os.listdir(target) == []
    umount(target)  # idempotent
    umount(tmp_path / "covetest-missing")


def test_layer_order_topmost_first(tmp_path: Path) -> None:
    top = layer(tmp_path, "covetest-top", {"f": "top"})
    bottom = layer(tmp_path, "covetest-bottom", {"f": "bottom", "only-bottom": "b"})
    target = tmp_path / "covetest-target"
    mount_overlay([top, bottom], tmp_path / "u", tmp_path / "w", target)
    try:
        assert (target / "f").read_text() == "top"
        assert (target / "only-bottom").read_text() == "b"
    finally:
        umount(target)
    assert not is_mounted(target)


def test_mountinfo_escapes(tmp_path: Path) -> None:
    lower = layer(tmp_path, "covetest-lower", {"x": "x"})
    target = tmp_path / "covetest with space\tand tab"
    mount_overlay([lower], tmp_path / "u", tmp_path / "w", target)
    try:
        assert is_mounted(target)
        assert mounts_under(tmp_path) == [str(target)]
    finally:
        umount(target)
    assert mounts_under(tmp_path) == []


def test_mounts_under_deepest_first(tmp_path: Path) -> None:
    lower = layer(tmp_path, "covetest-lower", {"x": "x"})
    outer = tmp_path / "covetest-outer"
    inner = outer / "sub"
    mount_overlay([lower], tmp_path / "u1", tmp_path / "w1", outer)
    try:
        mount_overlay([lower], tmp_path / "u2", tmp_path / "w2", inner)
        try:
            assert mounts_under(tmp_path) == [str(inner), str(outer)]
            assert mounts_under(outer) == [str(inner), str(outer)]
            assert mounts_under(tmp_path / "covetest-out") == []  # prefix, not a parent
        finally:
            umount(inner)
    finally:
        umount(outer)
    assert mounts_under(tmp_path) == []


def test_bad_arguments(tmp_path: Path) -> None:
    target = tmp_path / "covetest-target"
    with pytest.raises(BadRequest):
        mount_overlay([], tmp_path / "u", tmp_path / "w", target)
    with pytest.raises(InternalError, match="missing"):
        mount_overlay([tmp_path / "covetest-nope"], tmp_path / "u", tmp_path / "w", target)
    odd = layer(tmp_path, "covetest:colon", {})
    with pytest.raises(BadRequest, match="must not contain"):
        mount_overlay([odd], tmp_path / "u", tmp_path / "w", target)
    assert not is_mounted(target)


def test_is_mounted_from_statx_agrees_with_mountinfo(tmp_path: Path) -> None:
    """is_mounted asks statx (no mount table read, whatever N); it must say
    what mountinfo says, for a mount, a plain directory under it, a bind
    mount of the same filesystem (st_dev cannot tell that one) and a path
    that is not there."""
    from cove.host.syscalls import MS_BIND, is_mount_root, mount

    assert is_mount_root("/proc") is True  # this kernel has STATX_ATTR_MOUNT_ROOT
    lower = layer(tmp_path, "covetest-lower", {"x": "x"})
    target = tmp_path / "covetest-rootfs"
    bound = tmp_path / "covetest-bind"
    bound.mkdir()
    mount_overlay([lower], tmp_path / "u", tmp_path / "w", target)
    try:
        mount(str(lower), str(bound), None, MS_BIND, None)
        try:
            for path, want in ((target, True), (bound, True), (target / "x", False),
                               (lower, False), (tmp_path / "covetest-none", False)):
                assert is_mounted(path) is want, path
                assert (str(path) in mounts_under(tmp_path)) is want, path
        finally:
            umount(bound)
    finally:
        umount(target)
    assert not is_mounted(target) and not is_mounted(bound)
