"""The errors cove raises, each bound to the HTTP status LXD would answer.

Design note: every layer raises these (never bare ``ValueError`` across a
layer boundary), the server renders them as LXD's error envelope with
``error_code`` = ``status``, and the REST client maps the status back to the
same class, so a caller sees one exception type whichever driver it used.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Conflict",
    "CoveError",
    "Forbidden",
    "InternalError",
    "NoSpace",
    "NotFound",
    "PreconditionFailed",
    "Timeout",
    "as_cove_error",
    "error_for_status",
]


class CoveError(Exception):
    """Base of every error cove raises on purpose. ``status`` is the HTTP code."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadRequest(CoveError):
    """The request itself is wrong: a bad name, key, value or path."""

    status = 400


class Forbidden(CoveError):
    """The caller is not allowed to do this."""

    status = 403


class NotFound(CoveError):
    """The named thing does not exist."""

    status = 404


class Conflict(CoveError):
    """The thing exists already, or another operation holds it."""

    status = 409


class PreconditionFailed(CoveError):
    """The request is well formed but the object is in the wrong state."""

    status = 412


class Timeout(CoveError):
    """A wait ran out of time."""

    status = 504


class InternalError(CoveError):
    """Something cove relies on failed (runtime, mount, database)."""

    status = 500


class NoSpace(CoveError):
    """The filesystem under cove's root is full (or over quota)."""

    status = 507


_BY_STATUS: dict[int, type[CoveError]] = {
    cls.status: cls
    for cls in (BadRequest, Forbidden, NotFound, Conflict, PreconditionFailed, Timeout,
                InternalError, NoSpace)
}

_NO_SPACE = "No space left on the device holding the cove root"


def as_cove_error(e: Exception) -> CoveError:
    """``e`` as the CoveError a client should see: a full disk (ENOSPC,
    EDQUOT, or SQLite's "database or disk is full") is ``NoSpace``; anything
    else unexpected is an ``InternalError`` of one line."""
    if isinstance(e, CoveError):
        return e
    if (isinstance(e, OSError) and e.errno in (28, 122)) or "database or disk is full" in str(e):
        return NoSpace(_NO_SPACE)  # errno 28 ENOSPC, 122 EDQUOT (Linux)
    text = str(e).strip().splitlines()
    return InternalError(f"{type(e).__name__}: {text[0]}" if text else type(e).__name__)


def error_for_status(status: int, message: str) -> CoveError:
    """Build the error class that matches an HTTP status (500 when unknown)."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = BadRequest if 400 <= status < 500 else InternalError
    return cls(message)
