"""Records to LXD wire objects, and the three response envelopes.

Design note: these are the shapes pylxd and the Go client (``lxc``) decode.
Go is strict about types (a string where it wants a bool fails the whole
command), so every field has the type LXD gives it, and fields a client
reads unconditionally are always present (``expanded_devices``,
``profiles``, ``aliases``...).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cove.engine import Operation
from cove.model.errors import BadRequest
from cove.model.records import Alias, Image, Instance

__all__ = [
    "ZERO_TIME",
    "alias",
    "async_op",
    "error",
    "etag",
    "filter_objects",
    "image",
    "instance",
    "instance_full",
    "profile",
    "rfc3339",
    "sync",
]

# Go's zero time, which LXD sends for "never".
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(t: float) -> str:
    """Unix time as RFC 3339 in UTC, with microseconds when there are some."""
    secs, micros = divmod(round(t * 1_000_000), 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{micros:06d}Z" if micros else base + "Z"


def instance(inst: Instance) -> dict[str, Any]:
    """The LXD ``Instance`` object."""
    return {
        "name": inst.name,
        "description": inst.description,
        "status": inst.status.value,
        "status_code": inst.status.code,
        "type": "container",
        "architecture": inst.architecture,
        "config": dict(inst.config),
        "devices": {k: dict(v) for k, v in inst.devices.items()},
        # cove's only profile is the empty "default", so nothing is added.
        "expanded_config": dict(inst.config),
        "expanded_devices": {k: dict(v) for k, v in inst.devices.items()},
        "ephemeral": inst.ephemeral,
        "stateful": False,
        "profiles": list(inst.profiles),
        "project": "default",
        "created_at": rfc3339(inst.created_at),
        "last_used_at": rfc3339(inst.last_used_at),
        "location": "none",
    }


def instance_full(inst: Instance, state: dict[str, Any] | None) -> dict[str, Any]:
    """The LXD ``InstanceFull`` object (``recursion=2`` lists, ``recursion=1`` GET)."""
    out = instance(inst)
    out["state"] = state
    out["snapshots"] = []
    out["backups"] = []
    return out


def image(img: Image) -> dict[str, Any]:
    """The LXD ``Image`` object."""
    return {
        "fingerprint": img.fingerprint,
        "filename": img.filename,
        "size": img.size,
        "architecture": img.architecture,
        "type": "container",
        "public": img.public,
        "properties": dict(img.properties),
        "aliases": [{"name": a.name, "description": a.description} for a in img.aliases],
        "auto_update": False,
        "cached": False,
        "profiles": ["default"],
        "project": "default",
        "created_at": rfc3339(img.created_at),
        "uploaded_at": rfc3339(img.uploaded_at),
        "last_used_at": rfc3339(img.last_used_at) if img.last_used_at else ZERO_TIME,
        "expires_at": ZERO_TIME,
    }


def alias(a: Alias) -> dict[str, Any]:
    """The LXD ``ImageAliasesEntry`` object."""
    return {"name": a.name, "description": a.description, "target": a.target,
            "type": "container"}


def profile(name: str, used_by: list[str]) -> dict[str, Any]:
    """A profile; cove has only the empty ``default`` one."""
    return {"name": name, "description": "Default cove profile", "config": {},
            "devices": {}, "used_by": used_by, "project": "default"}


def etag(obj: dict[str, Any], keys: tuple[str, ...] = (
        "architecture", "config", "devices", "ephemeral", "profiles", "description")) -> str:
    """A hash of the writable fields, sent as ``ETag`` and checked on ``If-Match``."""
    data = json.dumps([obj.get(k) for k in keys], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


# -- LXD's ?filter= (api_filtering) ----------------------------------------------

@dataclass
class _Clause:
    logical: str  # how it joins what came before: "and" or "or"
    negate: bool
    field: str
    op: str
    value: str


def _parse_filter(text: str) -> list[_Clause]:
    """LXD's filter grammar: ``[not] FIELD eq|ne VALUE [and|or ...]``, left to
    right, values may be double-quoted."""
    parts = text.split()
    clauses: list[_Clause] = []
    i, logical = 0, "and"
    while i < len(parts):
        negate = parts[i].lower() == "not"
        i += negate
        if i + 2 >= len(parts):
            raise BadRequest(f"Invalid filter {text!r}: a clause is FIELD eq|ne VALUE")
        field, op, value = parts[i], parts[i + 1].lower(), parts[i + 2]
        if op not in ("eq", "ne"):
            raise BadRequest(f"Invalid filter {text!r}: unknown operator {op!r} "
                             "(expected eq or ne)")
        i += 3
        if value.startswith('"'):
            words = [value[1:]]
            while not words[-1].endswith('"'):
                if i >= len(parts):
                    raise BadRequest(f"Invalid filter {text!r}: unterminated quote")
                words.append(parts[i])
                i += 1
            value = " ".join(words)[:-1]
        clauses.append(_Clause(logical, negate, field, op, value))
        if i < len(parts):
            logical = parts[i].lower()
            if logical not in ("and", "or") or i + 1 >= len(parts):
                raise BadRequest(f"Invalid filter {text!r}: clauses join with 'and' or 'or'")
            i += 1
    return clauses


def _value_of(obj: Any, field: str) -> Any:
    if not isinstance(obj, dict):
        return None
    if obj and all(isinstance(v, str) for v in obj.values()):
        return obj.get(field)  # a string map (config): the rest is one key
    key, _, rest = field.partition(".")
    value = obj.get(key)
    return _value_of(value, rest) if rest else value


def _clause_matches(obj: dict[str, Any], c: _Clause) -> bool:
    value = _value_of(obj, c.field)
    if isinstance(value, str):
        pattern = c.value if ("^" in c.value or "$" in c.value) else f"^{c.value}$"
        try:
            hit = re.search(pattern, value, re.IGNORECASE) is not None
        except re.error:
            hit = value.lower() == c.value.lower()
    elif isinstance(value, bool):
        hit = c.value.lower() == str(value).lower()
    elif isinstance(value, (int, float)):
        hit = c.value == str(value)
    else:
        hit = False
    if c.op == "ne":
        hit = not hit
    return hit != c.negate


def filter_objects(objs: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The wire objects that match LXD filter ``text`` (all when it is empty).

    Raises:
        BadRequest: the filter does not parse.
    """
    clauses = _parse_filter(text)
    if not clauses:
        return objs
    out = []
    for obj in objs:
        match = True
        for c in clauses:
            hit = _clause_matches(obj, c)
            match = (match and hit) if c.logical == "and" else (match or hit)
        if match:
            out.append(obj)
    return out


# -- envelopes -------------------------------------------------------------------

def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def sync(metadata: Any, *, status: int = 200, headers: dict[str, str] | None = None
         ) -> web.Response:
    """LXD's synchronous success envelope."""
    return _json({"type": "sync", "status": "Success", "status_code": 200, "operation": "",
                  "error_code": 0, "error": "", "metadata": metadata}, status, headers)


def async_op(op: Operation) -> web.Response:
    """LXD's 202 for a background operation, with ``Location``."""
    url = f"/1.0/operations/{op.id}"
    return _json({"type": "async", "status": "Operation created", "status_code": 100,
                  "operation": url, "error_code": 0, "error": "",
                  "metadata": op.to_dict()}, 202, {"Location": url})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """LXD's error envelope, ``error_code`` = HTTP status."""
    return _json({"type": "error", "error": message, "error_code": status, "status": "",
                  "status_code": 0, "operation": "", "metadata": None}, status, headers)
