"""LXD's backup tarball: writing one from mounted trees, and reading one as
hostile input.

Layout (LXD 5.0's ``dir`` driver, checked against a real ``lxc export``)::

    backup/index.yaml                  name, backend, pool, snapshots, type, config
    backup/snapshots/SNAP/backup.yaml  (first, in the order the snapshots were taken)
    backup/snapshots/SNAP/metadata.yaml  the snapshot's own (its templates: rules)
    backup/snapshots/SNAP/templates/...  the snapshot's template files
    backup/snapshots/SNAP/rootfs/...   the snapshot's whole root filesystem
    backup/container/backup.yaml       container, snapshots, pool, profiles, volume...
    backup/container/metadata.yaml     the instance's own (its templates: rules)
    backup/container/templates/...     the instance's template files
    backup/container/rootfs/...        the instance's whole root filesystem

Both root filesystems are flattened (image layers and upper layer merged),
so the tarball stands alone, as LXD's does.

Reading (``BackupExtractor``): every member is written through a
``RootFS`` of its own tree: the container's ``rootfs/`` into one, each
snapshot's into another, the YAML files into a third. So a symlink in one
tree resolves inside that tree only, as it will in the container, and no
member reaches another tree or the host. A name with a ``..`` component is
refused outright (LXD's own tarballs have none), as is any member outside
this layout. Device nodes are skipped (an unprivileged container cannot use
them, and a host-side node is a way out); sizes are charged to a ``Budget``.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, cast

import yaml

from cove.host import proc
from cove.model.errors import BadRequest
from cove.storage._extract import _TAR_ERRORS, Budget, Extractor, HashingReader, decompressed
from cove.storage.safefs import RootFS

__all__ = ["COMPRESSIONS", "POOL", "BackupExtractor", "compression_of", "make_tarball",
           "read_index", "write_yaml"]

#: cove's one storage pool (what index.yaml and the root disk name)
POOL = "default"
#: compression_algorithm -> the program tar pipes through ("" for none).
COMPRESSIONS = {"none": "", "gzip": "gzip", "bzip2": "bzip2", "xz": "xz"}
#: the most a YAML file of a backup may hold (LXD's are a few KiB)
MAX_YAML = 1 << 20
#: index.yaml must be among the first members (LXD writes it first)
_INDEX_WITHIN = 16
_META_FILES = ("backup.yaml", "metadata.yaml")


def compression_of(value: str) -> str:
    """``compression_algorithm`` checked; "" is gzip (LXD's default).

    Raises: BadRequest naming the field.
    """
    value = value or "gzip"
    if value not in COMPRESSIONS:
        raise BadRequest(f"Field 'compression_algorithm': {value!r} is not supported "
                         f"(one of {', '.join(COMPRESSIONS)})")
    return value


def write_yaml(path: Path, doc: Any) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


def make_tarball(stage: Path, members: list[str], out: Path, compression: str,
                 listing: Path | None = None) -> None:
    """Tar ``members`` (paths under ``stage``, in order) into ``out``; or,
    with ``listing``, the NUL-separated paths it names, each without its
    contents. Mount points under ``stage`` are crossed (the root
    filesystems are overlays mounted there); symlinks are stored, never
    followed.

    Raises: InternalError when tar fails.
    """
    prog = COMPRESSIONS[compression]
    argv = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
            "-C", str(stage), "-cf", str(out)]
    if prog:
        argv += ["--use-compress-program", prog]
    if listing is not None:
        argv += ["--no-recursion", "--null", "-T", str(listing)]
    proc.run([*argv, "--", *members], timeout=None)


class _Sink:
    def update(self, data: bytes) -> None:
        pass


def _parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"backup member {name!r}: a '..' in a name is not allowed")
    return parts


def read_index(path: Path) -> dict[str, Any]:
    """``backup/index.yaml`` of the tarball at ``path``, read from its first
    members without unpacking anything.

    Raises: BadRequest (not a tarball, no index among the first members, bad YAML).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0)
            reader = HashingReader(f, _Sink(), None)
            with decompressed(reader, head) as stream, \
                    tarfile.open(fileobj=cast(Any, stream), mode="r:") as tar:
                for _ in range(_INDEX_WITHIN):
                    m = tar.next()
                    if m is None:
                        break
                    if _parts(m.name) == ["backup", "index.yaml"]:
                        if not m.isreg() or m.size > MAX_YAML:
                            raise BadRequest("backup/index.yaml: not a file of at most "
                                             f"{MAX_YAML} bytes")
                        src = tar.extractfile(m)
                        assert src is not None
                        return parse_yaml(src.read(), "backup/index.yaml")
    except _TAR_ERRORS as exc:
        raise BadRequest(f"not a valid backup archive: {exc}") from None
    raise BadRequest("not a backup: no backup/index.yaml at the start of the archive")


def parse_yaml(data: bytes, label: str) -> dict[str, Any]:
    """Raises: BadRequest naming ``label`` (bad YAML, not a mapping)."""
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise BadRequest(f"{label}: invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"{label}: not a YAML mapping")
    return doc


class BackupExtractor(Extractor):
    """Unpacks a backup tarball into ``stage`` (see module note):
    ``stage/meta/backup/...`` the YAML files, ``stage/upper`` the container's
    root filesystem, ``stage/snapshots/SNAP`` each snapshot's (SNAP checked
    with ``check_snapshot`` before its tree is made); ``upper`` given: the
    container's tree goes there instead (an increment onto a copy). Call ``close``."""

    kind = "backup"

    def __init__(self, stage: Path, budget: Budget, check_snapshot: Any,
                 upper: Path | None = None) -> None:
        for sub in ("meta", "snapshots") if upper else ("meta", "upper", "snapshots"):
            (stage / sub).mkdir(mode=0o755 if sub == "upper" else 0o700)
        super().__init__(RootFS(stage / "meta"), route_rootfs=False, budget=budget)
        self._stage = stage
        self._upper = upper or stage / "upper"
        self._check_snapshot = check_snapshot
        self._trees: dict[str, RootFS] = {}
        self.snapshots: list[str] = []  # in the order they came

    def close(self) -> None:
        for fs in self._trees.values():
            fs.close()
        self._trees.clear()
        self.raw.close()
        super().close()

    def _tree(self, key: str) -> RootFS:
        fs = self._trees.get(key)
        if fs is None:
            if key == "":
                path = self._upper
            else:
                self._check_snapshot(key)
                path = self._stage / "snapshots" / key
                path.mkdir(mode=0o755)
                self.snapshots.append(key)
            fs = self._trees[key] = RootFS(path)
        return fs

    def _view(self, parts: list[str], is_dir: bool) -> tuple[RootFS, list[str]]:
        name = "/".join(parts)
        if parts[:3] == ["backup", "container", "rootfs"]:
            return self._tree(""), parts[3:]
        if parts[:2] == ["backup", "snapshots"] and len(parts) >= 4 and parts[3] == "rootfs":
            return self._tree(parts[2]), parts[4:]
        known_dirs = (["backup"], ["backup", "container"], ["backup", "snapshots"])
        if is_dir and (parts in known_dirs or (len(parts) == 3 and parts[1] == "snapshots")):
            return self.raw, parts
        if parts[:3] == ["backup", "container", "templates"]:  # the instance's templates
            return self.raw, parts
        if parts[:2] == ["backup", "snapshots"] and len(parts) >= 4 \
                and parts[3] == "templates":  # a snapshot's templates
            self._check_snapshot(parts[2])
            return self.raw, parts
        if not is_dir and (parts == ["backup", "index.yaml"]
                           or (parts[:2] == ["backup", "container"] and len(parts) == 3
                               and parts[2] in _META_FILES)
                           or (parts[:2] == ["backup", "snapshots"] and len(parts) == 4
                               and parts[3] in _META_FILES)):
            return self.raw, parts
        raise BadRequest(f"not part of an instance backup: {name or '/'}")

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _parts(m.name)
        view, _ = self._view(parts, m.isdir())
        if m.islnk():
            try:
                target = self._view(_parts(m.linkname), False)[0]
            except BadRequest as exc:
                raise BadRequest(f"backup member {m.name!r}: a hard link to "
                                 f"{m.linkname!r}: {exc.message}") from None
            if target is not view:
                # one inode in two trees: a write in the instance would change its snapshot
                raise BadRequest(f"backup member {m.name!r}: a hard link to {m.linkname!r}, "
                                 "in another tree")
        if view is self.raw and not (m.isdir() or m.isreg()):
            raise BadRequest(f"backup member {m.name!r}: must be a file or directory")
        if view is self.raw and m.isreg() and m.size > MAX_YAML:
            raise BadRequest(f"backup member {m.name!r}: more than {MAX_YAML} bytes")
        super()._member(tar, m)

    def read_meta(self, *parts: str) -> dict[str, Any] | None:
        """A YAML file unpacked under ``meta/backup/``; None when absent."""
        path = self._stage.joinpath("meta", "backup", *parts)
        if not path.is_file() or path.is_symlink():
            return None
        return parse_yaml(path.read_bytes()[:MAX_YAML + 1], "backup/" + "/".join(parts))

