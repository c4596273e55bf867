"""Name rules for instances, images aliases and snapshots (LXD's rules)."""

from __future__ import annotations

import re

from cove.model.errors import BadRequest

__all__ = ["validate_alias_name", "validate_instance_name", "validate_snapshot_name"]

_HOSTNAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")


def validate_instance_name(name: object) -> str:
    """Return ``name`` if it is a valid instance name, else raise BadRequest.

    LXD's rule: a hostname label, 1 to 63 characters of letters, digits and
    ``-``, starting with a letter and not ending with ``-``.
    """
    if not isinstance(name, str) or not name:
        raise BadRequest("Instance name must be a non-empty string")
    if len(name) > 63:
        raise BadRequest(f"Invalid instance name {name!r}: longer than 63 characters")
    if not _HOSTNAME.match(name) or name.endswith("-"):
        raise BadRequest(
            f"Invalid instance name {name!r}: use letters, digits and '-', "
            "start with a letter and do not end with '-'"
        )
    return name


def validate_alias_name(name: object) -> str:
    """Return ``name`` if it is a valid image alias, else raise BadRequest."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise BadRequest("Image alias must be a string of 1 to 255 characters")
    if "/" in name or name.strip() != name or any(ord(c) < 32 for c in name):
        raise BadRequest(f"Invalid image alias {name!r}: no '/', control characters or edge spaces")
    return name


def validate_snapshot_name(name: object) -> str:
    """Return ``name`` if it is a valid snapshot name, else raise BadRequest.

    LXD's rule (``instance.ValidName`` for snapshots): not empty, no ``/``,
    not ``.`` or ``..``, no edge spaces and no control characters; cove also
    caps it at 255 characters (it names nothing on disk, but is stored).
    """
    if not isinstance(name, str) or not name:
        raise BadRequest("Snapshot name must be a non-empty string")
    if len(name) > 255:
        raise BadRequest(f"Invalid snapshot name {name[:32]!r}...: longer than 255 characters")
    if "/" in name or name in (".", "..") or name.strip() != name \
            or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest(f"Invalid snapshot name {name!r}: no '/', '.', '..', "
                         "control characters or edge spaces")
    return name
