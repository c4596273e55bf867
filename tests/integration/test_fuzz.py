"""A property-based fuzzer against a real coved: every endpoint coved describes
in its own ``/1.0/openapi.json`` (made from its router, so a new endpoint is
fuzzed the day it exists),
with hostile path parameters, query strings, LXD headers and bodies (random
bytes, or JSON built from LXD's field names). It fails on any 5xx, any error
outside LXD's envelope, any request that hangs, and anything left on the
host afterwards.

Bounded for CI: ``COVE_FUZZ_EXAMPLES`` requests (default 800: about 15 s of requests
on 2 busy cores, plus 2 s of drawing them), each with a 30 s limit, and no new
request after ``COVE_FUZZ_SECONDS`` (default 120; the count sent is printed).
Names the fuzzer can make are ``covetest-fz...`` or invalid.
Server config is left out (``core.https_address`` would open a listener on
every address).
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from covetest import Coved, assert_no_leaks, new_name

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

EXAMPLES = int(os.environ.get("COVE_FUZZ_EXAMPLES", "800"))
SECONDS = float(os.environ.get("COVE_FUZZ_SECONDS", "120"))

# Endpoints answered with something other than LXD's JSON envelope on success.
_RAW_OK = ("/files", "/logs/", "/export", "/console", "/metrics", "/openapi.json")
# Left out: server config (see the module note), and the event stream and
# websockets, which block by design until the client goes.
_SKIP = {("PUT", "/1.0"), ("PATCH", "/1.0"), ("GET", "/1.0/events")}

_FIELDS = ["name", "source", "type", "alias", "fingerprint", "config", "devices", "profiles",
           "description", "ephemeral", "start", "command", "environment", "interactive",
           "wait-for-websocket", "record-output", "width", "height", "user", "group", "cwd",
           "action", "timeout", "force", "stateful", "restore", "target", "properties",
           "public", "aliases", "certificate", "password", "trust_token", "project", "mode",
           "path", "pool", "size", "listen", "connect", "nat", "ipv4.address", "dns.domain",
           "limits.memory", "limits.cpu", "security.privileged", "boot.autostart"]


def _routes(d: Coved) -> list[tuple[str, str]]:
    """(method, path template) of everything coved describes in its own
    OpenAPI document (which is made from its router)."""
    doc = d.api.request("GET", "/1.0/openapi.json").json
    found = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    return sorted(found - _SKIP)


def _templates(names: list[str], fresh: str, fresh2: str) -> list[dict[str, Any]]:
    """Valid bodies of the common calls: mutated, they reach past the first check.
    ``fresh``, ``fresh2``: drawn names no instance has yet."""
    return [
        {"name": f"covetest-fz{fresh}", "source": {"type": "image", "alias": "busybox"},
         "config": {}, "devices": {}, "profiles": ["default"], "start": False},
        {"command": ["sh", "-c", "echo hi; exit 3"], "environment": {"A": "b"},
         "wait-for-websocket": False, "interactive": False, "record-output": True},
        {"action": "stop", "timeout": 1, "force": True},
        {"action": "start"},
        {"config": {"limits.memory": "64MiB", "user.x": "y"}, "devices": {}},
        {"name": names[0]},
        {"name": f"covetest-fz{fresh2}", "target": "f" * 64, "description": ""},
        {"name": f"covetestfz{fresh}", "type": "bridge",
         "config": {"ipv4.address": "none", "ipv6.address": "none"}},
        {"devices": {"p": {"type": "proxy", "listen": "tcp:127.0.0.1:1",
                           "connect": "tcp:127.0.0.1:80"}}},
        {"devices": {"d": {"type": "disk", "source": "/etc", "path": "/mnt"}}},
    ]


def _fresh() -> Any:
    """The random part of a new ``covetest-fz`` name, drawn (so a failing
    example replays with its names)."""
    return st.text(alphabet="0123456789abcdef", min_size=4, max_size=4)


def _mutated(names: list[str], json_st: Any) -> Any:
    def mutate(pair: tuple[dict[str, Any], list[tuple[str, Any]], list[str]]) -> dict[str, Any]:
        base, sets, drops = pair
        out = dict(base)
        for k, v in sets:
            out[k] = v
        for k in drops:
            out.pop(k, None)
        return out
    count = len(_templates(names, "", ""))
    template = st.builds(lambda i, a, b: _templates(names, a, b)[i],
                         st.integers(0, count - 1), _fresh(), _fresh())
    keys = st.sampled_from(_FIELDS)
    return st.tuples(template, st.lists(st.tuples(keys, json_st), max_size=2),
                     st.lists(keys, max_size=2)).map(mutate)


def _json(names: list[str]) -> Any:
    leaves = (st.none() | st.booleans() | st.integers(-2**63, 2**64)
              | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
              | st.sampled_from(names + ["busybox", "default", "image", "none", "start",
                                         "stop", "nic", "disk", "proxy", "..", "/etc",
                                         "tcp:127.0.0.1:1", "\x00", "a" * 300]))
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=12), inner, max_size=6),
        max_leaves=12)


def _requests(routes: list[tuple[str, str]], names: list[str]) -> Any:
    """Requests (method, path, body, headers). Every strategy is built here,
    once: built inside each draw, hypothesis spent most of the test validating
    them (45 s of 800 examples, under load, against 15 s of requests)."""
    params = {"name": names + ["..", "a/b", "%00", "x" * 300, ""],
              "fingerprint": ["", "ab", "../../etc", names[-1]], "id": ["x", "..", "0" * 36],
              "file": ["..", "exec_x.stdout", "a" * 300], "ip": ["::1", "x"]}
    fresh_name = _fresh().map(lambda s: f"covetest-fz{s}")
    values: dict[str, Any] = {}
    for key, choices in params.items():
        real = st.sampled_from(names if key == "name" else choices[-1:])
        others = st.sampled_from(choices)
        if key == "name":
            others = others | fresh_name
        values[key] = real | real | others | st.text(max_size=20)
    queries = st.dictionaries(
        st.sampled_from(["recursion", "project", "wait", "timeout", "filter", "path",
                         "all-projects", "force", "secret", "type"]),
        st.sampled_from(["0", "1", "2", "-1", "nan", "inf", "1e308", "default", "/etc/passwd",
                         "name eq x", "true", ""]) | st.text(max_size=10), max_size=3)
    header_sets = st.dictionaries(
        st.sampled_from(["X-LXD-uid", "X-LXD-gid", "X-LXD-mode", "X-LXD-type", "X-LXD-write",
                         "X-LXD-filename", "X-LXD-public", "X-LXD-properties", "Content-Type",
                         "If-Match"]),
        st.sampled_from(["0", "-5", "99999999999", "0644", "file", "directory", "symlink",
                         "append", "overwrite", "application/json", "multipart/form-data",
                         "application/octet-stream", "a=b&c", "\u00e9"]), max_size=3)
    json_st = _json(names)
    json_bodies = _mutated(names, json_st) | json_st
    kinds = st.sampled_from(["none", "json", "json", "bytes"])
    byte_bodies = st.binary(max_size=600)
    route_st = st.sampled_from(routes)

    @st.composite  # type: ignore[misc]
    def draw_one(draw: Callable[..., Any]) -> tuple[str, str, bytes | None, dict[str, str]]:
        method, template = draw(route_st)
        path = template
        for key in ("name", "fingerprint", "id", "file", "ip"):
            if "{" + key + "}" in path:
                value = draw(values[key])
                path = path.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
        query = draw(queries)
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = draw(header_sets)
        kind = draw(kinds)
        body: bytes | None = None
        if kind == "json":
            body = json.dumps(draw(json_bodies)).encode()
            headers.setdefault("Content-Type", "application/json")
        elif kind == "bytes":
            body = draw(byte_bodies)
        return method, path, body, {k: v.encode("utf-8").decode("latin-1")
                                    for k, v in headers.items()}

    return draw_one()


class _Conn(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self._path)
        self.sock = s


def _check(method: str, path: str, status: int, ctype: str, raw: bytes) -> None:
    what = f"{method} {path} -> {status}: {raw[:200]!r}"
    assert status < 500, what
    if status < 400 and any(m in path for m in _RAW_OK):
        return
    if "application/json" not in ctype:
        raise AssertionError(f"answer outside LXD's envelope: {what}")
    doc = json.loads(raw)
    assert isinstance(doc, dict) and doc.get("type") in ("sync", "async", "error"), what
    if status >= 400:
        assert doc["type"] == "error" and doc["error_code"] == status and doc["error"], what


def test_fuzz_the_api(make_coved: Callable[..., Coved], busybox_tar: Path) -> None:
    from hypothesis import HealthCheck, given, settings

    d = make_coved("fuzz")
    d.api.import_image(busybox_tar, "busybox")
    names = [new_name("fz"), new_name("fz")]
    d.api.create(names[0])
    d.api.launch(names[1])
    names.append(d.api.sync("GET", "/1.0/images")[0].rsplit("/", 1)[-1])  # the image's fp
    routes = _routes(d)
    assert len(routes) > 40, routes
    seen: dict[int, int] = {}
    stop_at = time.monotonic() + SECONDS  # the setup above is not in the budget
    slowest: list[tuple[float, str]] = [(0.0, "")]
    failed: list[BaseException] = []  # once one failed, the budget is off (shrinking replays)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              print_blob=True, suppress_health_check=list(HealthCheck))
    @given(req=_requests(routes, names))  # type: ignore[misc]
    def one(req: tuple[str, str, bytes | None, dict[str, str]]) -> None:
        method, path, body, headers = req
        if not failed and time.monotonic() > stop_at:
            return  # the time budget is spent: the rest are drawn, not sent
        t0 = time.monotonic()
        try:
            conn = _Conn(str(d.socket))
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                raw = r.read()
            finally:
                conn.close()
            seen[r.status] = seen.get(r.status, 0) + 1
            slowest[0] = max(slowest[0], (time.monotonic() - t0, f"{method} {path[:80]}"))
            _check(method, path, r.status, r.getheader("Content-Type") or "", raw)
        except BaseException as e:
            failed.append(e)
            raise

    began = time.monotonic()
    one()
    print(f"fuzz: {sum(seen.values())} of {EXAMPLES} requests in {time.monotonic() - began:.1f} s, "
          f"statuses {dict(sorted(seen.items()))}, slowest {slowest[0][0]:.1f} s: "
          f"{slowest[0][1]}")
    assert d.answers()
    # what the fuzzer made is named covetest-fz*: remove it all, then nothing may be left
    # an image download from a server the fuzzer named, an exec waiting for
    # websockets that never come: cancel what can be cancelled, then wait
    # (uncancelled, such a download cost 60 s of some runs)
    left = d.api.sync("GET", "/1.0/operations?recursion=1").get("running", []) or []
    for op in left:
        if op.get("may_cancel"):
            d.api.request("DELETE", f"/1.0/operations/{op['id']}")
    for op in left:
        d.api.wait(op["id"], timeout=60)
    print(f"fuzz: {len(left)} operations left running "
          f"({sorted({op['description'] for op in left})}), cancelled and waited for")
    for name in d.api.names():
        d.api.remove(name)
    assert_no_leaks(d.root, None)
