"""File access inside a container's root filesystem that can never leave it.

Security model
--------------
Everything under a container's root is written by the container (or by the
author of the image it came from) and is hostile. A path handed to
:class:`RootFS` names a file *as the container sees it*, so:

* Every lookup is done by the kernel with ``openat2(rootfd, path,
  RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``. ``RESOLVE_IN_ROOT`` makes the
  root fd act as ``/`` for the whole walk: absolute symlinks (``etc ->
  /etc``) restart at the root fd, ``..`` at the root stays at the root, and
  this holds for every symlink met along the way, including racing renames
  (the kernel answers ``EAGAIN``, retried). ``RESOLVE_NO_MAGICLINKS`` refuses
  ``/proc/<pid>/fd``-style links, which jump without regard to any root.
  No path string is ever resolved by Python or by the host's ``/``.
* Operations that change a directory entry (create, unlink, link, symlink,
  mkfifo, chown of a symlink) resolve only the *parent* that way and then act
  on the last component relative to the parent fd with ``O_NOFOLLOW`` or the
  ``*at`` call's no-follow form, so a symlink planted as the last component is
  never followed by accident.
* Nothing that is not a regular file or a directory is ever opened for I/O:
  files are first opened ``O_PATH`` (which never runs a driver's ``open``),
  checked with ``fstat``, and only then re-opened through ``/proc/self/fd``
  (the host's own procfs, for a fd we hold) for reading or writing. A device
  node planted in the container therefore cannot be read or written from the
  host, nor can a fifo block us.
* Recursive operations (:meth:`RootFS.remove`, :meth:`RootFS.walk`) hold a fd
  per directory level and open children with ``O_NOFOLLOW | O_DIRECTORY``, so
  they never follow a symlink out; removal also refuses to descend into a
  different filesystem (a mount point).
* Paths are first normalised lexically (``/a/b/../c`` is ``/a/c``; ``..`` at
  ``/`` stays at ``/``) so that "the last component" is well defined; the
  kernel then resolves what is left. Both steps stay inside the root, so
  neither can be used to escape.

The root directory itself (the path given to the constructor) is trusted: it
is chosen by cove, opened once, and every later lookup starts from that fd,
so renaming it away or replacing it with a symlink later changes nothing.

Errors are cove errors and name the container path, never the host path:
``NotFound`` (missing), ``BadRequest`` (wrong type, bad path, symlink loop,
non-empty directory), ``Conflict`` (already exists), ``Forbidden`` (the
kernel said EPERM/EACCES/EROFS), ``InternalError`` (anything else).

Every ``RootFS`` holds one fd on the root; close it with :meth:`RootFS.close`
or use it as a context manager.
"""

from __future__ import annotations

import errno
import os
import stat as st
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Self

from cove.host.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2
from cove.model.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
)
from cove.storage._fsutil import (
    FileStat,
    close_fd,
    display,
    empty_tree,
    error,
    file_type,
    proc_fd,
    split_path,
    to_filestat,
    write_all,
)

__all__ = ["FileStat", "RootFS", "split_path"]

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_CHUNK = 1 << 20
# The kernel's own limit for symlink hops in one lookup (MAXSYMLINKS).
_MAX_HOPS = 40
_NEW_FILE_MODE = 0o644


class RootFS:
    """A container root filesystem, opened once, accessed only from inside.

    Args:
        root: host path of the root directory. It is trusted (chosen by
            cove) and opened immediately; everything else is relative to it.

    Raises:
        NotFound: ``root`` does not exist.
        BadRequest: ``root`` is not a directory.
    """

    def __init__(self, root: str | Path) -> None:
        self._label = str(root)
        try:
            self._fd: int = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"root filesystem {root} does not exist") from None
        except NotADirectoryError:
            raise BadRequest(f"root filesystem {root} is not a directory") from None
        except OSError as exc:
            raise InternalError(f"cannot open root filesystem {root}: {exc.strerror}") from None

    @classmethod
    def _adopt(cls, fd: int, label: str) -> RootFS:
        self = cls.__new__(cls)
        self._fd = fd
        self._label = label
        return self

    # -- lifetime -------------------------------------------------------

    def close(self) -> None:
        """Release the root fd. Idempotent."""
        if self._fd >= 0:
            close_fd(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # A safety net only: callers should close() or use ``with``. An fd
        # left open keeps a lazily unmounted rootfs alive.
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RootFS({self._label!r})"

    @property
    def fd(self) -> int:
        """The ``O_PATH`` fd on the root (owned by this object; do not close)."""
        if self._fd < 0:
            raise InternalError(f"{self!r} is closed")
        return self._fd

    # -- resolution primitives -----------------------------------------

    def _open(self, parts: list[str], flags: int) -> int:
        """Open a normalised path inside the root; the caller closes the fd."""
        rel = "/".join(parts) or "."
        try:
            return openat2(self.fd, rel, flags, 0, _RESOLVE)
        except OSError as exc:
            raise error(exc, parts) from None

    def _parent(self, parts: list[str]) -> tuple[int, str]:
        """Open the parent of a path (``O_PATH``) and return it with the last name."""
        if not parts:
            raise BadRequest("path must name an entry below /")
        return self._open(parts[:-1], os.O_PATH | os.O_DIRECTORY), parts[-1]

    def subdir(self, path: str) -> RootFS:
        """Return a new ``RootFS`` rooted at a directory inside this one.

        The directory is resolved inside this root and must be a real
        directory (not a symlink to one). The new object has its own fd.

        Raises:
            NotFound, BadRequest: missing, or not a plain directory.
        """
        parts = split_path(path)
        if not parts:
            fd = os.dup(self.fd)
        else:
            pfd, name = self._parent(parts)
            try:
                fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=pfd)
            except OSError as exc:
                raise error(exc, parts) from None
            finally:
                close_fd(pfd)
        return RootFS._adopt(fd, f"{self._label}{display(parts)}")

    def resolve(self, path: str) -> str:
        """``path`` with every symlink resolved inside the root, as the
        container sees it (``/data -> /etc`` gives ``/etc`` of the root).

        The kernel walks the path (``RESOLVE_IN_ROOT``) and names the inode
        it reached; the answer is that name relative to the root's own. A
        mount destination given to the runtime this way holds no symlink left
        to follow, so nothing but the kernel's walk decides where it lands.

        Raises:
            NotFound: a component is missing.
            InternalError: the kernel named a place outside the root (never
                expected: it would mean the root was moved while open).
        """
        parts = split_path(path)
        fd = self._open(parts, os.O_PATH)
        try:
            where = os.readlink(proc_fd(fd))
            top = os.readlink(proc_fd(self.fd))
        finally:
            close_fd(fd)
        if where == top:
            return "/"
        if not where.startswith(top.rstrip("/") + "/"):
            raise InternalError(f"{display(parts)} resolved outside {self._label}")
        return where[len(top.rstrip("/")):]

    # -- reading --------------------------------------------------------

    def stat(self, path: str, follow: bool = True) -> FileStat:
        """Describe a path; with ``follow=False`` a final symlink is not followed.

        Raises:
            BadRequest: the path is not absolute.
            NotFound: it does not exist (or is a dangling symlink when following).
        """
        parts = split_path(path)
        fd = self._open(parts, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
        try:
            return to_filestat(os.fstat(fd))
        finally:
            close_fd(fd)

    def exists(self, path: str, follow: bool = True) -> bool:
        """Whether ``path`` exists (a dangling symlink exists only without ``follow``)."""
        try:
            self.stat(path, follow=follow)
        except NotFound:
            return False
        return True

    def open_read(self, path: str) -> int:
        """Open a regular file for reading and return the fd (the caller closes it).

        The file is located ``O_PATH`` first and only re-opened once ``fstat``
        says it is a regular file, so a device node is never opened.

        Raises:
            NotFound: missing.
            BadRequest: not a regular file (directory, device, fifo, socket).
        """
        parts = split_path(path)
        pfd = self._open(parts, os.O_PATH)
        try:
            mode = os.fstat(pfd).st_mode
            if not st.S_ISREG(mode):
                raise BadRequest(f"{display(parts)}: not a regular file "
                                 f"({file_type(mode)})")
            try:
                return os.open(proc_fd(pfd), os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
            except OSError as exc:
                raise error(exc, parts) from None
        finally:
            close_fd(pfd)

    def read_bytes(self, path: str, limit: int = 1 << 20) -> bytes:
        """Read a whole regular file of at most ``limit`` bytes.

        Raises:
            NotFound, BadRequest: as :meth:`open_read`; BadRequest also when
                the file is larger than ``limit``.
        """
        fd = self.open_read(path)
        try:
            if os.fstat(fd).st_size > limit:
                raise BadRequest(f"{path}: larger than {limit} bytes")
            chunks: list[bytes] = []
            total = 0
            while chunk := os.read(fd, _CHUNK):
                total += len(chunk)
                if total > limit:
                    raise BadRequest(f"{path}: larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            close_fd(fd)

    def listdir(self, path: str) -> list[str]:
        """Names in a directory (sorted, without ``.`` and ``..``), following symlinks in root.

        Raises:
            NotFound: missing. BadRequest: not a directory.
        """
        parts = split_path(path)
        fd = self._open(parts, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return sorted(os.listdir(fd))
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            close_fd(fd)

    def readlink(self, path: str) -> str:
        """The text of a symlink (the final component is not followed).

        Raises:
            NotFound: missing. BadRequest: not a symlink.
        """
        parts = split_path(path)
        pfd, name = self._parent(parts)
        try:
            return os.readlink(name, dir_fd=pfd)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise BadRequest(f"{display(parts)}: not a symlink") from None
            raise error(exc, parts) from None
        finally:
            close_fd(pfd)

    def walk(self, path: str = "/") -> Iterator[tuple[str, FileStat]]:
        """Yield every entry below a directory as ``(relpath, FileStat)``.

        Pre-order (a directory comes before its contents), names sorted,
        ``relpath`` relative to ``path`` without a leading slash; ``path``
        itself is not yielded. Symlinks are reported, never followed (only
        ``path`` itself is resolved, inside the root). Entries that vanish
        while walking are skipped. One fd is held per directory level.

        Raises:
            NotFound, BadRequest: ``path`` is missing or not a directory.
        """
        for rel, s in self._walk_raw(path):
            yield rel, to_filestat(s)

    def _walk_raw(self, path: str) -> Iterator[tuple[str, os.stat_result]]:
        parts = split_path(path)
        top = self._open(parts, os.O_RDONLY | os.O_DIRECTORY)
        # An explicit stack rather than recursion: a container can nest
        # directories deeper than Python's recursion limit.
        stack: list[tuple[int, str, Iterator[str]]] = [(top, "", iter(()))]
        try:
            stack[0] = (top, "", iter(sorted(os.listdir(top))))
            while stack:
                fd, rel, names = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    close_fd(fd)
                    continue
                try:
                    s = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                relpath = f"{rel}/{name}" if rel else name
                yield relpath, s
                if st.S_ISDIR(s.st_mode):
                    try:
                        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                        | os.O_CLOEXEC, dir_fd=fd)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    except OSError as exc:
                        if exc.errno == errno.ELOOP:  # swapped for a symlink meanwhile
                            continue
                        raise
                    stack.append((child, relpath, iter(sorted(os.listdir(child)))))
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            for fd, _, _ in stack:
                close_fd(fd)

    # -- writing --------------------------------------------------------

    def write_file(self, path: str, data: bytes | BinaryIO, *, uid: int | None = None,
                   gid: int | None = None, mode: int | None = None, append: bool = False,
                   make_parents: bool = False) -> None:
        """Create or overwrite a regular file.

        The parent is resolved inside the root; the last component is looked
        at without following it. If it is a symlink it is followed *inside
        the root* (repeatedly, up to 40 hops) exactly like a plain ``open``
        would, so a dangling symlink creates its target. An existing file is
        truncated (or appended to) in place, so its hardlinks see the change;
        a file created by this call is removed again if writing fails.

        New files get ``mode`` (default 0644) and ``uid``/``gid`` (default
        0); existing files keep owner and mode unless given. ``make_parents``
        creates missing parents (mode 0755, owned by ``uid``/``gid``).

        Args:
            data: the content, or a binary stream read in 1 MiB chunks.

        Raises:
            BadRequest: not absolute; the target is a directory, device, fifo
                or socket; a symlink loop.
            NotFound: the parent is missing (and ``make_parents`` is false).
        """
        parts = split_path(path)
        if make_parents and len(parts) > 1:
            self._mkdir_parents(parts[:-1], uid=uid, gid=gid, mode=0o755)
        fd, pfd, name, created = self._open_for_write(parts, append)
        done = False
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                write_all(fd, data, parts)
            else:
                # Errors raised by data.read() are the source's and pass
                # through unchanged; only our own writes are mapped.
                while chunk := data.read(_CHUNK):
                    write_all(fd, chunk, parts)
            try:
                if created:
                    os.fchown(fd, uid if uid is not None else 0, gid if gid is not None else 0)
                    # chmod after chown: chown clears setuid/setgid bits.
                    os.fchmod(fd, mode if mode is not None else _NEW_FILE_MODE)
                else:
                    if uid is not None or gid is not None:
                        os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
                    if mode is not None:
                        os.fchmod(fd, mode)
            except OSError as exc:
                raise error(exc, parts) from None
            done = True
        finally:
            if created and not done:
                try:
                    os.unlink(name, dir_fd=pfd)
                except OSError:
                    pass
            close_fd(fd)
            close_fd(pfd)

    def _open_for_write(self, parts: list[str], append: bool) -> tuple[int, int, str, bool]:
        """Return ``(fd, parent_fd, name, created)``; the caller closes both fds."""
        flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
        hops = 0
        while True:
            pfd, name = self._parent(parts)
            try:
                try:
                    pathfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                except FileNotFoundError:
                    try:
                        # O_EXCL|O_NOFOLLOW: if something appeared meanwhile we
                        # look again rather than write through it.
                        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                     | os.O_NOCTTY | os.O_CLOEXEC, 0o600, dir_fd=pfd)
                    except FileExistsError:
                        close_fd(pfd)
                        continue
                    return fd, pfd, name, True
                try:
                    mode = os.fstat(pathfd).st_mode
                    if st.S_ISLNK(mode):
                        try:
                            target = os.readlink(name, dir_fd=pfd)
                        except OSError as exc:
                            if exc.errno in (errno.EINVAL, errno.ENOENT):  # changed meanwhile
                                close_fd(pfd)
                                continue
                            raise
                        hops += 1
                        if hops > _MAX_HOPS:
                            raise BadRequest(f"{display(parts)}: too many levels of "
                                             "symbolic links")
                        base = "" if target.startswith("/") else display(parts[:-1])
                        parts = split_path(f"/{base}/{target}")
                        close_fd(pfd)
                        continue
                    if st.S_ISDIR(mode):
                        raise BadRequest(f"{display(parts)}: is a directory")
                    if not st.S_ISREG(mode):
                        raise BadRequest(f"{display(parts)}: not a regular file "
                                         f"({file_type(mode)})")
                    fd = os.open(proc_fd(pathfd), flags)
                    return fd, pfd, name, False
                finally:
                    close_fd(pathfd)
            except OSError as exc:
                close_fd(pfd)
                raise error(exc, parts) from None
            except BaseException:
                close_fd(pfd)
                raise

    def mkdir(self, path: str, *, uid: int | None = None, gid: int | None = None,
              mode: int = 0o755, parents: bool = False, exist_ok: bool = False) -> None:
        """Create a directory owned by ``uid``/``gid`` (default 0) with ``mode``.

        With ``parents``, missing parents are created too (same owner, mode
        0755) and an existing directory is fine. An existing directory is
        left as it is (owner and mode unchanged) when ``exist_ok``/``parents``.

        Raises:
            Conflict: it exists (and neither ``exist_ok`` nor ``parents``), or
                something that is not a directory is in the way.
            NotFound: a parent is missing and ``parents`` is false.
        """
        parts = split_path(path)
        if not parts:
            if exist_ok or parents:
                return
            raise Conflict("/: already exists")
        if parents:
            self._mkdir_parents(parts[:-1], uid=uid, gid=gid, mode=0o755)
        self._mkdir_one(parts, uid=uid, gid=gid, mode=mode, exist_ok=exist_ok or parents)

    def _mkdir_parents(self, parts: list[str], *, uid: int | None, gid: int | None,
                       mode: int) -> None:
        # Each prefix is resolved from the root again (not relative to the
        # previous fd): a symlinked component must restart at *our* root.
        for i in range(1, len(parts) + 1):
            self._mkdir_one(parts[:i], uid=uid, gid=gid, mode=mode, exist_ok=True)

    def _mkdir_one(self, parts: list[str], *, uid: int | None, gid: int | None, mode: int,
                   exist_ok: bool) -> None:
        if exist_ok:
            try:
                fd = self._open(parts, os.O_PATH | os.O_DIRECTORY)
            except (NotFound, BadRequest):
                pass  # mkdirat below tells "missing" from "in the way"
            else:
                close_fd(fd)
                return
        pfd, name = self._parent(parts)
        try:
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except FileExistsError:
                if exist_ok and self._is_dir(parts):
                    return
                what = "exists and is not a directory" if exist_ok else "already exists"
                raise Conflict(f"{display(parts)}: {what}") from None
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=pfd)
            try:
                os.fchown(fd, uid if uid is not None else 0, gid if gid is not None else 0)
                os.fchmod(fd, mode)
            finally:
                close_fd(fd)
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            close_fd(pfd)

    def _is_dir(self, parts: list[str]) -> bool:
        try:
            fd = self._open(parts, os.O_PATH | os.O_DIRECTORY)
        except (NotFound, BadRequest):
            return False
        close_fd(fd)
        return True

    def symlink(self, path: str, target: str, *, uid: int | None = None,
                gid: int | None = None) -> None:
        """Create a symlink at ``path`` whose text is ``target``, stored as given.

        Where the target points is the container's business: it is only ever
        resolved inside a root.

        Raises:
            Conflict: ``path`` exists. NotFound: its parent is missing.
            BadRequest: empty target or one containing NUL.
        """
        parts = split_path(path)
        if not target or "\0" in target:
            raise BadRequest("symlink target must be a non-empty string without NUL")
        pfd, name = self._parent(parts)
        try:
            os.symlink(target, name, dir_fd=pfd)
            if uid is not None or gid is not None:
                os.chown(name, -1 if uid is None else uid, -1 if gid is None else gid,
                         dir_fd=pfd, follow_symlinks=False)
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            close_fd(pfd)

    def link(self, path: str, existing: str, *, source: RootFS | None = None) -> None:
        """Create a hard link ``path`` to the entry at ``existing``.

        Both are resolved inside a root (``existing`` inside ``source``,
        default this one) and ``existing``'s last component is not followed
        (a link to a symlink links the symlink, as ``ln`` does), so the new
        name can only ever share an inode that is already inside the root.

        Raises:
            NotFound: ``existing`` or ``path``'s parent is missing.
            Conflict: ``path`` exists. Forbidden: ``existing`` is a directory.
            BadRequest: the two are on different filesystems.
        """
        parts = split_path(path)
        src_parts = split_path(existing)
        spfd, sname = (source or self)._parent(src_parts)
        try:
            pfd, name = self._parent(parts)
            try:
                os.link(sname, name, src_dir_fd=spfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"{display(src_parts)}: no such file or directory") from None
            except OSError as exc:
                raise error(exc, parts) from None
            finally:
                close_fd(pfd)
        finally:
            close_fd(spfd)

    def mkfifo(self, path: str, *, uid: int | None = None, gid: int | None = None,
               mode: int = 0o644) -> None:
        """Create a named pipe (owner default 0:0).

        Raises:
            Conflict: ``path`` exists. NotFound: its parent is missing.
        """
        parts = split_path(path)
        pfd, name = self._parent(parts)
        try:
            os.mkfifo(name, 0o600, dir_fd=pfd)
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            close_fd(pfd)
        self.set_attrs(path, uid=uid if uid is not None else 0,
                       gid=gid if gid is not None else 0, mode=mode)

    def whiteout(self, path: str) -> None:
        """Create an overlay whiteout (a 0/0 character device, owner 0:0) at
        ``path``; its parent is resolved inside the root like every write.

        Raises:
            Conflict: ``path`` exists. NotFound: its parent is missing.
        """
        parts = split_path(path)
        pfd, name = self._parent(parts)
        try:
            os.mknod(name, st.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            close_fd(pfd)

    def set_attrs(self, path: str, *, uid: int | None = None, gid: int | None = None,
                  mode: int | None = None, mtime: float | None = None) -> None:
        """Change owner, permission bits and/or mtime without following a final symlink.

        ``mode`` is ignored for a symlink (Linux has no symlink modes); owner
        is changed before mode so that setuid/setgid bits survive.

        Raises:
            NotFound: missing.
        """
        parts = split_path(path)
        if not parts:
            fd = os.dup(self.fd)
            pfd, name = -1, ""
        else:
            pfd, name = self._parent(parts)
            fd = -1
        try:
            if fd < 0:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            is_link = st.S_ISLNK(os.fstat(fd).st_mode)
            if uid is not None or gid is not None:
                u, g = -1 if uid is None else uid, -1 if gid is None else gid
                if pfd >= 0:
                    os.chown(name, u, g, dir_fd=pfd, follow_symlinks=False)
                else:
                    os.chown(proc_fd(fd), u, g)
            if mode is not None and not is_link:
                os.chmod(proc_fd(fd), mode)
            if mtime is not None:
                ns = int(mtime * 1_000_000_000)
                if pfd >= 0:
                    os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)
                else:
                    os.utime(proc_fd(fd), ns=(ns, ns))
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            if fd >= 0:
                close_fd(fd)
            if pfd >= 0:
                close_fd(pfd)

    def set_xattr(self, path: str, name: str, value: bytes) -> None:
        """Set an extended attribute on a file or directory (not via a final symlink).

        Raises:
            NotFound: missing. BadRequest: a symlink, or an invalid name.
            Forbidden: the filesystem or kernel refuses it.
        """
        parts = split_path(path)
        fd = self._open(parts, os.O_PATH | os.O_NOFOLLOW)
        try:
            if st.S_ISLNK(os.fstat(fd).st_mode):
                raise BadRequest(f"{display(parts)}: cannot set xattrs on a symlink")
            os.setxattr(proc_fd(fd), name, value)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise Forbidden(f"{display(parts)}: xattr {name} not supported") from None
            raise error(exc, parts) from None
        finally:
            close_fd(fd)

    def rename(self, path: str, new_path: str) -> None:
        """Rename an entry within the root (neither last component is followed).

        Raises:
            NotFound: ``path`` is missing. BadRequest: renaming the root.
        """
        parts, new_parts = split_path(path), split_path(new_path)
        spfd, sname = self._parent(parts)
        try:
            dpfd, dname = self._parent(new_parts)
            try:
                os.rename(sname, dname, src_dir_fd=spfd, dst_dir_fd=dpfd)
            except OSError as exc:
                raise error(exc, parts) from None
            finally:
                close_fd(dpfd)
        finally:
            close_fd(spfd)

    # -- removing -------------------------------------------------------

    def remove(self, path: str, recursive: bool = False) -> None:
        """Remove a file, symlink (not its target), or directory.

        A non-empty directory needs ``recursive``. Recursive removal works
        through directory fds opened with ``O_NOFOLLOW``: symlinks inside are
        unlinked, never followed, and it stops with BadRequest at a mount
        point rather than empty another filesystem.

        Raises:
            BadRequest: the path is ``/``; a non-empty directory without
                ``recursive``; a mount point inside the tree.
            NotFound: missing.
        """
        parts = split_path(path)
        if not parts:
            raise BadRequest("refusing to remove the root directory")
        pfd, name = self._parent(parts)
        try:
            s = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not st.S_ISDIR(s.st_mode):
                os.unlink(name, dir_fd=pfd)
                return
            try:
                os.rmdir(name, dir_fd=pfd)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not recursive:
                    raise
            dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=pfd)
            empty_tree(dfd, s.st_dev, parts)
            os.rmdir(name, dir_fd=pfd)
        except OSError as exc:
            raise error(exc, parts) from None
        finally:
            close_fd(pfd)
