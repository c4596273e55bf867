"""Parse a container's /etc/passwd and /etc/group (pure; the caller reads
the files through the container's root, never the host's)."""

from __future__ import annotations

from dataclasses import dataclass

from cove.model.errors import BadRequest

__all__ = ["PasswdEntry", "parse_group", "parse_passwd", "resolve_group", "resolve_user"]


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


def parse_passwd(text: str) -> list[PasswdEntry]:
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 7 or line.startswith("#"):
            continue
        try:
            out.append(PasswdEntry(parts[0], int(parts[2]), int(parts[3]), parts[5] or "/"))
        except ValueError:
            continue
    return out


def parse_group(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            out.setdefault(parts[0], int(parts[2]))
        except ValueError:
            continue
    return out


def resolve_user(user: int | str, passwd: list[PasswdEntry]) -> PasswdEntry:
    """Find a user by name or number. A number not in passwd is still valid
    (gid = uid, home = /), as with ``runc exec --user N``."""
    if isinstance(user, int) or (isinstance(user, str) and user.isdigit()):
        uid = int(user)
        if uid < 0 or uid > 2**32 - 2:
            raise BadRequest(f"Invalid user id {uid}")
        for e in passwd:
            if e.uid == uid:
                return e
        return PasswdEntry(str(uid), uid, uid, "/")
    for e in passwd:
        if e.name == user:
            return e
    raise BadRequest(f"User {user!r} not found in the instance's /etc/passwd")


def resolve_group(group: int | str, groups: dict[str, int]) -> int:
    if isinstance(group, int) or (isinstance(group, str) and group.isdigit()):
        gid = int(group)
        if gid < 0 or gid > 2**32 - 2:
            raise BadRequest(f"Invalid group id {gid}")
        return gid
    if group in groups:
        return groups[group]
    raise BadRequest(f"Group {group!r} not found in the instance's /etc/group")
