"""Incremental backups (cove's own, beyond LXD): what changed in an
instance's root filesystem since an earlier backup, and applying that to an
instance imported from the earlier one.

Design notes:

* What is compared. Every backup records a manifest of the flattened root
  filesystem it archived (``backups/ID.manifest``: per path its mode, owner,
  size, mtime and symlink target; not ctime, which the frozen copy does not
  keep, nor a directory's mtime, which every entry made in it changes). A
  backup ``since`` B holds the entries whose record differs from B's or is
  new, each as itself (a directory without its contents), and the paths
  that are gone (``cove_deleted`` in ``index.yaml``, the topmost only).
  A deletion is a list rather than an overlayfs whiteout (a 0/0 character
  device): in a tarball that is a device node, which importers (cove's and
  LXD's) skip or refuse, and tar has no opaque directories.
* The chain. ``index.yaml`` of every backup carries ``cove_backup_id``; an
  increment carries ``cove_since`` (its base's id) too. An instance imported
  from a backup keeps the id in ``volatile.cove.backup_id``; an increment is
  applied only onto a stopped instance whose id is its base's, and then
  takes its id. So ``cove import base; cove import incr1; cove import
  incr2`` restores the chain, and a gap or a wrong order is a 400.
* Applying. The instance's upper layer (all of it: an imported instance has
  no image) is copied to ``.restore-new``, the increment unpacked into the
  copy through the hostile-tarball machinery, the deletions made through a
  ``RootFS``, and the copy swapped in as a snapshot restore does (the
  snapshot sweep finishes or undoes a half-done swap after a crash).
* Snapshots are not in increments (``instance_only`` is implied).
"""

from __future__ import annotations

import gzip
import json
import os
import stat as st
from pathlib import Path
from typing import Any

from cove.model.errors import BadRequest, InternalError

__all__ = ["BACKUP_ID_KEY", "MANIFEST", "changes", "check_deleted", "load_manifest",
           "manifest_of", "save_manifest"]

MANIFEST = ".manifest"  # suffix of a backup's manifest beside its tarball
BACKUP_ID_KEY = "volatile.cove.backup_id"

Manifest = dict[str, list[Any]]


def manifest_of(root: Path) -> Manifest:
    """The record of every entry under ``root`` (not following symlinks)."""
    out: Manifest = {}
    base = str(root)
    for dirpath, dirs, files in os.walk(base):
        for n in (*dirs, *files):
            p = os.path.join(dirpath, n)
            s = os.lstat(p)
            is_dir = st.S_ISDIR(s.st_mode)
            out[os.path.relpath(p, base)] = [
                s.st_mode, s.st_uid, s.st_gid, 0 if is_dir else s.st_size,
                0 if is_dir else s.st_mtime_ns,
                os.readlink(p) if st.S_ISLNK(s.st_mode) else ""]
    return out


def save_manifest(path: Path, manifest: Manifest) -> None:
    with gzip.open(path, "wt", encoding="utf-8", errors="surrogateescape") as f:
        json.dump(manifest, f)


def load_manifest(path: Path) -> Manifest:
    """Raises: InternalError (missing or unreadable)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise InternalError(f"backup manifest {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise InternalError(f"backup manifest {path.name}: not an object")
    return data


def changes(old: Manifest, new: Manifest) -> tuple[list[str], list[str]]:
    """(entries new or changed, sorted so parents come first; topmost gone ones)."""
    changed = sorted(p for p, rec in new.items() if old.get(p) != rec)
    gone = sorted(p for p in old if p not in new)
    top: list[str] = []
    for p in gone:
        if not top or not p.startswith(top[-1] + "/"):
            top.append(p)
    return changed, top


def check_deleted(value: object) -> list[str]:
    """``cove_deleted`` of an increment's index.yaml: relative paths.

    Raises: BadRequest naming the bad entry.
    """
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise BadRequest("backup/index.yaml: 'cove_deleted' must be a list of paths")
    for p in value:
        parts = p.split("/")
        if not p or p.startswith("/") or ".." in parts or "" in parts or "\0" in p:
            raise BadRequest(f"backup/index.yaml: deleted path {p!r} is not allowed")
    return list(value)
