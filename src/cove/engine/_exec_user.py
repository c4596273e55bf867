"""Who an exec runs as: a user and group, by name or number, resolved in the
instance's own ``/etc/passwd`` and ``/etc/group``. Shared by the exec of a
running instance (``_access``) and of a stopped one (``_exec_stopped``).

The files are hostile (the container wrote them): they are opened through
``storage.safefs.RootFS`` inside the instance's root, so a symlink can never
point at the host's files, read up to 4 MiB and parsed, never executed.
"""

from __future__ import annotations

import os

from cove.model.errors import CoveError
from cove.model.passwd import (
    PasswdEntry,
    parse_group,
    parse_passwd,
    resolve_group,
    resolve_user,
)
from cove.storage.safefs import RootFS

__all__ = ["read_text", "resolve_ids"]


def read_text(fs: RootFS, path: str) -> str:
    """``path`` inside ``fs`` as text; "" when it is missing or unreadable."""
    try:
        fd = fs.open_read(path)
    except CoveError:
        return ""
    with os.fdopen(fd, "rb") as f:
        return f.read(4 * 2**20).decode(errors="replace")


def resolve_ids(fs: RootFS, user: int | str | None,
                group: int | str | None) -> tuple[PasswdEntry, int]:
    """The passwd entry of ``user`` (None or "": root) and the gid to run
    with (``group``'s, else the user's primary group).

    Raises:
        BadRequest: a name missing from the instance's files, or a bad id.
    """
    entry = resolve_user(user if user not in (None, "") else 0,
                         parse_passwd(read_text(fs, "/etc/passwd")))
    gid = entry.gid
    if group not in (None, ""):
        gid = resolve_group(group, parse_group(read_text(fs, "/etc/group")))
    return entry, gid
