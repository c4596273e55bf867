"""An instance's own ``metadata.yaml`` and ``templates/`` (LXD's
``/1.0/instances/NAME/metadata`` and ``.../metadata/templates``).

Design notes:

* Where: LXD keeps both in the instance's directory, copied from the image
  at create. cove keeps them in ``instances/KEY/`` too, but copies on the
  first write (copy-on-write): until an instance's metadata or templates
  are changed, they are its image's (immutable, and kept beside the layers
  as long as an instance uses them), so creating an instance copies
  nothing and instances made before this existed behave the same. The
  marker is ``metadata.yaml`` in the instance's directory: with it the
  instance's own files are used (also by the start's templates,
  ``_templates``), without it the image's.
* A copy of an instance takes its own files along (:func:`copy_own`), a
  rebuild drops them (the new image's are used, as LXD re-creates them),
  a rename and a delete move or remove them with the directory.
* Snapshots. In LXD both files live in the instance's volume beside
  ``rootfs/``, so a snapshot holds them, a restore brings them back, a
  copy or a publish of a snapshot uses the snapshot's. cove's snapshot
  directory (``snapshots/ID/``) gets a copy of the instance's own when it
  is taken, or, when it has none, the mark ``metadata.image`` (its image's
  apply, the snapshot's ``image``: nothing is copied, as for the instance);
  a restore makes the snapshot's the instance's own, or drops the
  instance's (:func:`replace_own`). A snapshot taken before snapshots kept
  them has neither: the instance's apply to it (:func:`snapshot_source`),
  and a restore leaves the instance's.
* Hostile input: a template name is one file name in ``templates/`` (LXD's
  ``IsFileName``: no ``/``, ``\\`` or ``..``; also no NUL, not empty), opened
  with ``O_NOFOLLOW`` below a directory cove made; a ``PUT`` of metadata
  whose rules climb out (``..``) is refused before it is written (LXD
  fails only at the next start).
* Writes are serialized by one lock per service (they are small files);
  ``metadata.yaml`` is replaced atomically, written last when the copy is
  made, so a copy interrupted half-way is made again from the image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Protocol

import yaml

from cove.engine._runs import Paths
from cove.engine.events import EventBus
from cove.model.errors import BadRequest, NotFound
from cove.model.projects import DEFAULT, instance_key, instance_url
from cove.model.records import Instance, Snapshot
from cove.model.templates import metadata_wire
from cove.store import Store

__all__ = [
    "InstanceMetadata",
    "TemplateSource",
    "copy_own",
    "copy_snapshot_own",
    "drop_own",
    "effective_files",
    "effective_templates",
    "own_files",
    "replace_own",
    "replace_restored",
    "restore_own",
    "snapshot_own",
    "snapshot_source",
    "stage_templates",
]

_METADATA = "metadata.yaml"
_TEMPLATES = "templates"
_IMAGE_MARK = "metadata.image"  # a snapshot of an instance with no own files
_LIMIT = 1 << 20  # a template or metadata.yaml: read whole, up to this
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def own_files(d: Path) -> tuple[bytes | None, Path | None] | None:
    """The instance directory ``d``'s own metadata.yaml and templates/
    (the latter None if absent); None when it has no copy of its own."""
    try:
        with open(d / _METADATA, "rb", opener=_nofollow) as f:
            data = f.read(_LIMIT + 1)
    except OSError:  # none (or not a file cove wrote: a symlink is not followed)
        return None
    templates = d / _TEMPLATES
    return data, templates if templates.is_dir() and not templates.is_symlink() else None


class TemplateSource(Protocol):
    """Where an image's metadata.yaml and templates/ are (the images service)."""

    def template_files(self, fingerprint: str) -> tuple[bytes | None, Path | None]:
        """The image's metadata.yaml and templates directory, each None if absent."""
        ...


def effective_files(d: Path, images: TemplateSource,
                    inst: Instance | Snapshot) -> tuple[bytes | None, Path | None]:
    """The metadata.yaml and templates/ that apply to ``inst`` (directory
    ``d``; a snapshot's: :func:`snapshot_source`): its own, else its
    image's (each None if absent)."""
    own = own_files(d)
    if own is not None:
        return own
    return images.template_files(inst.image) if inst.image else (None, None)


def effective_templates(d: Path, images: TemplateSource,
                        inst: Instance | Snapshot) -> dict[str, Any] | None:
    """The ``templates:`` of ``inst``'s effective metadata.yaml as LXD's
    wire form; None without any, or when it does not parse (a backup of
    such an instance still goes on)."""
    data, _ = effective_files(d, images, inst)
    if data is None or len(data) > _LIMIT:
        return None
    try:
        templates = metadata_wire(yaml.load(data, Loader=_LOADER))["templates"]
    except (yaml.YAMLError, BadRequest):
        return None
    return templates if isinstance(templates, dict) else None


def stage_templates(d: Path, images: TemplateSource, inst: Instance | Snapshot,
                    dst: Path) -> list[str]:
    """Copy ``inst``'s effective templates/ (regular files and directories;
    symlinks left out) to ``dst``; the copied paths relative to ``dst``'s
    parent, parents first (what an increment's tar listing names). [] and
    nothing made when it has none."""
    _, templates = effective_files(d, images, inst)
    if templates is None:
        return []
    out = [dst.name]
    dst.mkdir(mode=0o700)
    for dirpath, dirnames, filenames in os.walk(templates):
        rel = Path(dirpath).relative_to(templates)
        for n in sorted(dirnames):
            if not (Path(dirpath) / n).is_symlink():
                (dst / rel / n).mkdir(mode=0o700)
                out.append(str(Path(dst.name) / rel / n))
        dirnames[:] = [n for n in dirnames if (dst / rel / n).is_dir()]
        for n in sorted(filenames):
            src = Path(dirpath) / n
            if src.is_file() and not src.is_symlink():
                shutil.copyfile(src, dst / rel / n, follow_symlinks=False)
                out.append(str(Path(dst.name) / rel / n))
    return out


def restore_own(unpacked: Path, d: Path, *, always: bool = False) -> None:
    """Give instance directory ``d`` the metadata.yaml and templates/ of a
    backup's unpacked ``backup/container`` (hostile: only regular files and
    directories are taken; the rules are checked when a start renders
    them). Nothing when the backup has neither a templates/ directory nor
    a ``templates`` key in its metadata.yaml, unless ``always`` (a
    snapshot's ``backup/snapshots/SNAP``: it has its own, if only ``{}``)."""
    meta, templates = unpacked / _METADATA, unpacked / _TEMPLATES
    data = b""
    if meta.is_file() and not meta.is_symlink():
        data = meta.read_bytes()[:_LIMIT + 1]
    has_templates = templates.is_dir() and not templates.is_symlink()
    if not has_templates and b"templates" not in data and not always:
        return
    if has_templates:
        _copy_templates(templates, d / _TEMPLATES)
    _write_atomic(d / _METADATA, data or b"{}\n")


def copy_own(src: Path, dst: Path) -> None:
    """Copy instance directory ``src``'s own metadata and templates into
    ``dst`` (a copy being made); nothing when it has none."""
    own = own_files(src)
    if own is None:
        return
    if own[1] is not None:
        _copy_templates(own[1], dst / _TEMPLATES)
    _write_atomic(dst / _METADATA, own[0] or b"")


def replace_restored(unpacked: Path, d: Path) -> None:
    """Make the metadata and templates of an increment's unpacked
    ``backup/container`` instance directory ``d``'s (its own dropped
    first); nothing when the increment has no metadata.yaml. Idempotent."""
    meta = unpacked / _METADATA
    if not meta.is_file() or meta.is_symlink():
        return
    drop_own(d)
    restore_own(unpacked, d)


def snapshot_source(inst_dir: Path, snap_dir: Path) -> Path:
    """The directory whose own metadata and templates a snapshot has (none:
    its image's apply): its own, or its instance's for one taken before
    snapshots kept them."""
    meta = snap_dir / _METADATA
    if (meta.is_file() and not meta.is_symlink()) or (snap_dir / _IMAGE_MARK).is_file():
        return snap_dir
    return inst_dir


def snapshot_own(d: Path, dst: Path) -> None:
    """Give snapshot directory ``dst`` (being made) instance directory
    ``d``'s own metadata and templates, or the mark that it had none."""
    if own_files(d) is None:
        (dst / _IMAGE_MARK).touch(mode=0o600)
    else:
        copy_own(d, dst)


def copy_snapshot_own(src: Path, dst: Path) -> None:
    """Copy snapshot directory ``src``'s metadata and templates (or its
    mark) into ``dst`` (a copy's snapshot being made)."""
    copy_own(src, dst)
    if (src / _IMAGE_MARK).is_file():
        (dst / _IMAGE_MARK).touch(mode=0o600)


def replace_own(src: Path, d: Path) -> None:
    """Make snapshot directory ``src``'s metadata and templates instance
    directory ``d``'s own (a restore), ``d``'s dropped first; with the mark,
    only dropped (its image's apply again); nothing for a snapshot from
    before they were kept. Idempotent: a restore a killed coved left runs
    it again."""
    if own_files(src) is not None:
        drop_own(d)
        copy_own(src, d)
    elif (src / _IMAGE_MARK).is_file():
        drop_own(d)


def drop_own(d: Path) -> None:
    """Forget ``d``'s own metadata and templates (its image's are used
    again). Idempotent."""
    with contextlib.suppress(FileNotFoundError):
        (d / _METADATA).unlink()
    shutil.rmtree(d / _TEMPLATES, ignore_errors=True)


def _copy_templates(src: Path, dst: Path) -> None:
    """Copy a templates/ tree without its symlinks (an image's or a
    backup's may hold some; a template that is one is refused anyway)."""
    shutil.copytree(src, dst, symlinks=True,
                    ignore=lambda p, names: [n for n in names if (Path(p) / n).is_symlink()])


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover (or a planted symlink): never written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _check_name(name: str) -> str:
    """LXD's ``IsFileName``, and no NUL, not empty, not ``.``.

    Raises:
        BadRequest: naming the ``path`` argument.
    """
    if not name:
        raise BadRequest("missing path argument")
    if "/" in name or "\\" in name or ".." in name or "\0" in name or name == ".":
        raise BadRequest(f"Invalid template filename: {name!r}")
    return name


def _as_go_writes(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as LXD's YAML encoder writes it: a null map as ``{}`` and a
    null list as ``[]`` (so they read back empty, not null, as from LXD)."""
    templates = {path: {**rule, "when": rule["when"] or [],
                        "properties": rule["properties"] or {}}
                 for path, rule in (doc["templates"] or {}).items()}
    return {**doc, "properties": doc["properties"] or {}, "templates": templates}


class InstanceMetadata:
    """Instances' metadata and templates. Thread-safe."""

    def __init__(self, *, store: Store, paths: Paths, images: TemplateSource,
                 events: EventBus) -> None:
        self._store = store
        self._paths = paths
        self._images = images
        self._events = events
        self._lock = threading.Lock()

    # -- what a start renders ---------------------------------------------------
    def template_files(self, inst: Instance) -> tuple[bytes | None, Path | None]:
        """The metadata.yaml and templates/ that apply to ``inst``: its own,
        else its image's (each None if absent). Never raises."""
        return effective_files(self._paths.instance_dir(inst.name), self._images, inst)

    # -- the API ----------------------------------------------------------------
    def _inst(self, name: str, project: str) -> Instance:
        if "_" in name:
            raise NotFound(f"Instance not found: {name}")
        return self._store.get_instance(instance_key(project, name))

    def get(self, name: str, *, project: str = DEFAULT) -> dict[str, Any]:
        """LXD's ``ImageMetadata`` of the instance (empty fields without any).

        Raises:
            NotFound: no such instance.
            BadRequest: its metadata.yaml does not parse.
        """
        inst = self._inst(name, project)
        data, _ = self.template_files(inst)
        if data is None:
            return metadata_wire({})
        if len(data) > _LIMIT:
            raise BadRequest("The instance's metadata.yaml is too large")
        try:
            doc = yaml.load(data, Loader=_LOADER)
        except yaml.YAMLError as exc:
            raise BadRequest(f"Failed parsing metadata.yaml: {exc}") from None
        return metadata_wire(doc)

    def put(self, name: str, body: object, *, project: str = DEFAULT) -> None:
        """Replace the instance's metadata (LXD's ``PUT``). Idempotent.

        Raises:
            NotFound: no such instance.
            BadRequest: a malformed body or rule (nothing is written).
        """
        doc = metadata_wire(body)
        inst = self._inst(name, project)
        data = yaml.safe_dump(_as_go_writes(doc), default_flow_style=False,
                              sort_keys=True).encode()
        with self._lock:
            d = self._own(inst)
            _write_atomic(d / _METADATA, data)
        self._lifecycle("instance-metadata-updated", inst)

    def template_names(self, name: str, *, project: str = DEFAULT) -> list[str]:
        """The files in the instance's templates/ (sorted; directories left out, as LXD).

        Raises:
            NotFound: no such instance.
        """
        _, templates = self.template_files(self._inst(name, project))
        if templates is None:
            return []
        return sorted(e.name for e in os.scandir(templates) if not e.is_dir(follow_symlinks=False))

    def template_get(self, name: str, path: str, *, project: str = DEFAULT) -> bytes:
        """The template file ``path`` (a name in templates/).

        Raises:
            BadRequest: ``path`` empty or not a plain file name.
            NotFound: no such instance or template.
        """
        _check_name(path)
        _, templates = self.template_files(self._inst(name, project))
        try:
            if templates is None:
                raise FileNotFoundError
            with open(templates / path, "rb", opener=_nofollow) as f:
                data = f.read(_LIMIT + 1)
        except (FileNotFoundError, IsADirectoryError, OSError):
            raise NotFound(f"Template {path!r} not found") from None
        if len(data) > _LIMIT:
            raise BadRequest(f"Template {path!r} is too large")
        return data

    def template_put(self, name: str, path: str, data: bytes, *,
                     project: str = DEFAULT) -> None:
        """Create or replace template file ``path`` (LXD's ``POST``). Idempotent.

        Raises:
            BadRequest: a bad ``path``, or ``data`` over 1 MiB.
            NotFound: no such instance.
        """
        _check_name(path)
        if len(data) > _LIMIT:
            raise BadRequest("The template is too large (over 1 MiB)")
        inst = self._inst(name, project)
        with self._lock:
            templates = self._own(inst) / _TEMPLATES
            templates.mkdir(mode=0o700, exist_ok=True)
            target = templates / path
            if target.is_symlink() or target.is_dir():
                raise BadRequest(f"Template {path!r} is not a regular file")
            _write_atomic(target, data)
        self._lifecycle("instance-metadata-template-created", inst, path=path)

    def template_delete(self, name: str, path: str, *, project: str = DEFAULT) -> None:
        """Remove template file ``path``. Not idempotent.

        Raises:
            BadRequest: a bad ``path``.
            NotFound: no such instance or template.
        """
        _check_name(path)
        inst = self._inst(name, project)
        with self._lock:
            templates = self._own(inst) / _TEMPLATES
            target = templates / path
            if target.is_dir() and not target.is_symlink():
                raise NotFound(f"Template {path!r} not found")
            try:
                target.unlink()
            except FileNotFoundError:
                raise NotFound(f"Template {path!r} not found") from None
        self._lifecycle("instance-metadata-template-deleted", inst, path=path)

    # -- helpers ----------------------------------------------------------------
    def _own(self, inst: Instance) -> Path:
        """The instance's directory, with its own copy of the image's
        metadata and templates made if it has none (the caller holds the lock)."""
        d = self._paths.instance_dir(inst.name)
        if own_files(d) is not None:
            return d
        shutil.rmtree(d / _TEMPLATES, ignore_errors=True)  # an interrupted copy's
        data, templates = (self._images.template_files(inst.image) if inst.image
                           else (None, None))
        if templates is not None:
            _copy_templates(templates, d / _TEMPLATES)
        _write_atomic(d / _METADATA, data if data is not None else b"{}\n")
        return d

    def _lifecycle(self, action: str, inst: Instance, **context: Any) -> None:
        project = inst.project or DEFAULT
        self._events.lifecycle(action, instance_url(inst.name), project=project, **context)
