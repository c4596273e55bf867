"""File and folder copies on LXD's file API, as flows (see ``cove.client._flow``).

Design note: a flow yields ``Get`` (``GET .../files?path=``: a file's bytes,
a folder's names or a link's target, with type, mode and owner), ``Put``
(``POST .../files``: make a file, folder or link) and ``ListDir`` (a
folder's names, or None); it never does I/O on the container itself. The
sync transports (REST, cove's engine) and the asyncio one run the same
flows, so a folder is copied the same way by all of them. The local side
(this host's disk) is plain blocking file I/O here.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cove.model.errors import BadRequest, NotFound

if TYPE_CHECKING:
    from cove.client._wire import InstanceFile

__all__ = [
    "DEFAULT_PATH",
    "FileFlow",
    "Get",
    "ListDir",
    "Put",
    "download_file",
    "download_folder",
    "names_in",
    "program_exists",
    "read",
    "upload_file",
    "upload_folder",
    "write",
]

T = TypeVar("T")

#: Where a command is looked for when the caller sets no PATH (LXD's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"


@dataclass(frozen=True)
class Get:
    path: str


@dataclass(frozen=True)
class Put:
    path: str
    type: str  # file, directory or symlink
    data: bytes = b""
    target: str = ""
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None


@dataclass(frozen=True)
class ListDir:
    folder: str


FileFlow = Generator[Get | Put | ListDir, Any, T]


def read(path: str) -> FileFlow[bytes]:
    f: InstanceFile = yield Get(path)
    if f.type == "directory":
        raise BadRequest(f"{path} is a folder: use download_folder")
    return f.content


def write(path: str, data: bytes, uid: int | None, gid: int | None,
          mode: int | None) -> FileFlow[None]:
    yield Put(path, "file", data=data, uid=uid, gid=gid, mode=mode)


def names_in(folder: str) -> FileFlow[list[str] | None]:
    """A folder's names through ``Get`` (for transports whose ListDir is a Get)."""
    try:
        f: InstanceFile = yield Get(folder)
    except (NotFound, BadRequest):
        return None
    return list(f.entries or []) if f.type == "directory" else None


def program_exists(program: str, path_var: str | None) -> FileFlow[bool]:
    """Whether ``program`` is a file the container could run: by its path, or
    in a folder of ``PATH``. Exit status 127 means "not found" only if this
    says so (LXD itself reports every exit 127 as "Command not found")."""
    if "/" in program:
        if not program.startswith("/"):
            return True  # relative to a cwd we cannot see: let the code speak
        folder, base = posixpath.split(program)
        names = yield ListDir(folder or "/")
        return names is not None and base in names
    for folder in (path_var or DEFAULT_PATH).split(":"):
        if folder.startswith("/"):
            names = yield ListDir(folder)
            if names is not None and program in names:
                return True
    return False


def _exists(path: str) -> FileFlow[bool]:
    try:
        yield Get(path)
    except NotFound:
        return False
    return True


def _makedirs(path: str, uid: int | None, gid: int | None) -> FileFlow[None]:
    cur = ""
    missing = False
    for part in [p for p in path.split("/") if p]:
        cur += "/" + part
        if missing or not (yield from _exists(cur)):
            missing = True
            yield Put(cur, "directory", uid=uid, gid=gid, mode=0o755)


def _store(f: InstanceFile, path: str, local: Path) -> None:
    """Write one fetched file or link at ``local`` (replacing what is there)."""
    if f.type == "directory":
        raise BadRequest(f"{path} is a folder: use download_folder")
    if local.is_symlink() or local.exists():
        local.unlink()
    if f.type == "symlink":
        os.symlink(f.target, local)
        return
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(f.content)
        os.fchmod(out.fileno(), f.mode & 0o7777)


def download_file(path: str, local: Path) -> FileFlow[None]:
    _store((yield Get(path)), path, local)


def upload_file(local: Path, path: str, uid: int | None, gid: int | None,
                mode: int | None) -> FileFlow[None]:
    if local.is_symlink():
        yield Put(path, "symlink", target=os.readlink(local), uid=uid, gid=gid)
    else:
        yield Put(path, "file", data=local.read_bytes(), uid=uid, gid=gid, mode=mode)


def download_folder(path: str, local_dir: Path) -> FileFlow[None]:
    top: InstanceFile = yield Get(path)
    if top.type != "directory":
        raise BadRequest(f"{path} is not a folder: use download_file")
    yield from _fetch_tree(top, path, local_dir / posixpath.basename(path.rstrip("/")))


def _fetch_tree(d: InstanceFile, path: str, local: Path) -> FileFlow[None]:
    local.mkdir(exist_ok=True)
    for entry in d.entries or []:
        child_path = posixpath.join(path, entry)
        child: InstanceFile = yield Get(child_path)
        if child.type == "directory":
            yield from _fetch_tree(child, child_path, local / entry)
        else:
            _store(child, child_path, local / entry)
    os.chmod(local, d.mode & 0o7777)  # last: a read-only folder is filled first


def upload_folder(local: Path, path: str, uid: int | None, gid: int | None) -> FileFlow[None]:
    yield from _makedirs(path, uid, gid)
    yield from _send_tree(local, posixpath.join(path, local.name), uid, gid)


def _send_tree(local: Path, path: str, uid: int | None, gid: int | None) -> FileFlow[None]:
    yield Put(path, "directory", uid=uid, gid=gid, mode=stat.S_IMODE(local.stat().st_mode))
    for entry in sorted(os.scandir(local), key=lambda e: e.name):
        child = posixpath.join(path, entry.name)
        p = Path(entry.path)
        if entry.is_symlink():
            yield Put(child, "symlink", target=os.readlink(p), uid=uid, gid=gid)
        elif entry.is_dir():
            yield from _send_tree(p, child, uid, gid)
        elif entry.is_file():
            yield Put(child, "file", data=p.read_bytes(), uid=uid, gid=gid,
                      mode=stat.S_IMODE(entry.stat().st_mode))
        # sockets, fifos and devices are not copied (the file API cannot make them)
