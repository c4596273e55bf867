"""Responses: the LXD envelopes around wire objects, as aiohttp responses.

The wire objects themselves live in ``cove.api`` (shared with the client);
this module only wraps them for HTTP.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cove.api import (
    ZERO_TIME,
    alias,
    async_envelope,
    error_envelope,
    etag,
    filter_objects,
    image,
    instance,
    instance_full,
    network,
    network_lease,
    profile,
    rfc3339,
    sync_envelope,
)
from cove.engine import Operation

__all__ = [
    "REASON",
    "ZERO_TIME",
    "alias",
    "async_op",
    "error",
    "etag",
    "filter_objects",
    "image",
    "instance",
    "instance_full",
    "network",
    "network_lease",
    "profile",
    "rfc3339",
    "sync",
    "sync_text",
]


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def sync(metadata: Any, *, status: int = 200, headers: dict[str, str] | None = None
         ) -> web.Response:
    """LXD's synchronous success envelope."""
    return _json(sync_envelope(metadata), status, headers)


# the envelope's text up to its ``metadata`` (its last key): ``sync_text`` appends
_SYNC_HEAD = json.dumps(sync_envelope(None))[:-len("null}")]


def sync_text(metadata: str) -> web.Response:
    """``sync`` of metadata that is JSON text already (a listing's): the same
    bytes as ``sync`` of what it encodes."""
    return web.Response(body=f"{_SYNC_HEAD}{metadata}}}".encode(),
                        content_type="application/json", charset="utf-8")


def async_op(op: Operation) -> web.Response:
    """LXD's 202 for a background operation, with ``Location``."""
    body = async_envelope(op.to_dict())
    return _json(body, 202, {"Location": body["operation"]})


REASON = web.ResponseKey("cove.reason", str)  # the message of an error response


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """LXD's error envelope, ``error_code`` = HTTP status. The message is
    also kept on the response (``resp[REASON]``) for the failed-request log."""
    resp = _json(error_envelope(status, message), status, headers)
    resp[REASON] = message
    return resp
