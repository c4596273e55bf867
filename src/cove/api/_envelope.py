"""LXD's three response envelopes, as plain dicts."""

from __future__ import annotations

from cove.api._operations import ErrorResponse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["async_envelope", "error_envelope", "sync_envelope"]


def sync_envelope(metadata: Any) -> dict[str, Any]:
    """The synchronous success envelope."""
    return {"type": "sync", "status": "Success", "status_code": 200, "operation": "",
            "error_code": 0, "error": "", "metadata": metadata}


def async_envelope(operation: dict[str, Any]) -> dict[str, Any]:
    """The envelope of a 202: a background operation (its wire form) was created."""
    return {"type": "async", "status": "Operation created", "status_code": 100,
            "operation": f"/1.0/operations/{operation['id']}", "error_code": 0, "error": "",
            "metadata": operation}


def error_envelope(status: int, message: str) -> dict[str, Any]:
    """The error envelope; ``error_code`` is the HTTP status."""
    return ErrorResponse(error=message, error_code=status).to_wire()
