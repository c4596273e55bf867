"""``GET /1.0/openapi.json``: coved's API described from what it really is.

Design note: nothing here is written by hand per endpoint, so the document
cannot drift from the code. The paths and methods are coved's own router;
a request body is the ``cove.api`` wire class its handler parses (the
handlers' convention is ``api.<Class>.parse(...)``, found in the handler's
source); a body's schema is that class's ``to_wire()`` of an example built
from its constructor's annotations (every field set, so every wire key
appears with its JSON type). Responses are LXD's three envelopes. The
fuzzer (``tests/integration/test_fuzz.py``) walks the same router.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web

from cove import __version__, api

__all__ = ["document"]

_PARSE = re.compile(r"\bapi\.([A-Z]\w+)\.parse\(")
_PARAM = re.compile(r"\{(\w+)\}")
_CALL = re.compile(r"\b(_\w+)\(request\b")
_LEAF: dict[str, Any] = {"str": "x", "bool": True, "int": 1, "float": 1.5, "Any": "x"}


def _example_of(annotation: str, depth: int = 0) -> Any:
    """A value of the type an annotation string names (``Mapping[str, str] |
    None``, ``list[str]``, ``InstanceSource | None``...)."""
    first = next((t.strip() for t in annotation.split("|") if t.strip() != "None"), "str")
    if first.startswith("list["):
        return [_example_of(first[5:-1], depth + 1)]
    if first.startswith(("Mapping[", "dict[")):
        inner = first[first.index("[") + 1:-1].split(",", 1)[1]
        return {"key": _example_of(inner, depth + 1)}
    if first in _LEAF:
        return _LEAF[first]
    cls = getattr(api, first, None)
    if isinstance(cls, type) and depth < 4:
        return _example(cls, depth + 1).to_wire()
    return "x"


def _example(cls: type, depth: int = 0) -> Any:
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    kwargs = {name: _example_of(str(p.annotation), depth) for name, p in params.items()
              if name != "self" and p.kind is p.KEYWORD_ONLY}
    sub = {k: v for k, v in kwargs.items() if isinstance(v, dict) and k in ("source",)}
    for key in sub:  # a nested wire object is passed as the object, not its dict
        ann = str(params[key].annotation).split("|")[0].strip()
        kwargs[key] = _example(getattr(api, ann), depth + 1)
    return cls(**kwargs)


def _schema(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array", "items": _schema(value[0]) if value else {}}
    if isinstance(value, dict):
        if list(value) == ["key"]:  # a map: any key, values of one type
            return {"type": "object", "additionalProperties": _schema(value["key"])}
        return {"type": "object", "properties": {k: _schema(v) for k, v in value.items()}}
    return {}


def wire_schema(cls: type) -> dict[str, Any]:
    """The JSON schema of a ``cove.api`` class, from its own ``to_wire``."""
    return _schema(_example(cls).to_wire())


def _envelopes() -> dict[str, Any]:
    error = _schema(api.ErrorResponse(error="x", error_code=400).to_wire())
    return {
        "Sync": {"type": "object", "properties": {
            "type": {"type": "string", "enum": ["sync"]}, "status": {"type": "string"},
            "status_code": {"type": "integer"}, "metadata": {}}},
        "Async": {"type": "object", "properties": {
            "type": {"type": "string", "enum": ["async"]}, "operation": {"type": "string"},
            "status_code": {"type": "integer"},
            "metadata": _schema(api.Operation().to_wire())}},
        "Error": error,
    }


def _request_class(handler: Any, depth: int = 0) -> str | None:
    """The wire class ``handler`` parses its body with, looking one call deep
    (``_put`` -> ``_update(request, patch=False)``)."""
    while hasattr(handler, "func"):  # functools.partial(_update, patch=True)
        handler = handler.func
    try:
        source = inspect.getsource(handler)
    except (OSError, TypeError):
        return None
    found = _PARSE.search(source)
    if found:
        return found.group(1)
    if depth == 0:
        for callee in _CALL.findall(source):
            inner = getattr(handler, "__globals__", {}).get(callee)
            if inner is not None and (name := _request_class(inner, 1)):
                return name
    return None


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``app``'s routes."""
    paths: dict[str, dict[str, Any]] = {}
    schemas = _envelopes()
    for route in app.router.routes():
        if route.resource is None or route.method in ("HEAD", "*"):
            continue
        path = route.resource.canonical
        op: dict[str, Any] = {
            "parameters": [{"name": p, "in": "path", "required": True,
                            "schema": {"type": "string"}} for p in _PARAM.findall(path)]
            + [{"name": "project", "in": "query", "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "sync", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Sync"}}}},
                "202": {"description": "async (an operation)", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Async"}}}},
                "default": {"description": "error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}},
        }
        name = _request_class(route.handler)
        if name is not None and isinstance(getattr(api, name, None), type):
            schemas.setdefault(name, wire_schema(getattr(api, name)))
            op["requestBody"] = {"content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{name}"}}}}
        paths.setdefault(path, {})[route.method.lower()] = op
    return {"openapi": "3.0.3",
            "info": {"title": "cove (the LXD REST API)", "version": __version__},
            "paths": dict(sorted(paths.items())),
            "components": {"schemas": schemas}}
