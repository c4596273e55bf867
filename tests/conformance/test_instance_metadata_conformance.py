"""An instance's metadata and template files (``/1.0/instances/NAME/metadata``
and ``.../metadata/templates?path=``) on coved and on a real LXD, from the
same image bytes: the ``ImageMetadata`` read back, the template list, a
template created, read, replaced and deleted, a metadata PUT, and the
next start rendering the instance's edited copy, held to the same answers."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

from templated_image import RULES, TEMPLATES, templated_image

from cove.client import Client


def _ok(op: Any) -> None:
    op.wait(120)
    op.raise_for_error()


def _json(c: Client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    r = c.raw(method, path, body)
    return r.status, json.loads(r.body).get("metadata") if r.body else None


def test_instance_metadata_and_templates(rest_endpoint: tuple[str, dict[str, Any]],
                                         busybox_tar: Path, tmp_path: Path) -> None:
    endpoint, _ = rest_endpoint
    tar = templated_image(busybox_tar, tmp_path / "meta.tar.gz", RULES, TEMPLATES)
    tag = secrets.token_hex(3)
    alias, name = f"covetest-metaimg-{tag}", f"covetest-meta-{tag}"
    base = f"/1.0/instances/{name}/metadata"
    c = Client(endpoint)
    fp = ""
    try:
        fp = c.import_image(str(tar), aliases=[alias])
        _ok(c.create_instance(name, {"type": "image", "alias": alias}))
        status, meta = _json(c, "GET", base)
        assert status == 200
        # as Go's decoder leaves them: absent lists and maps null
        assert meta["templates"]["/etc/group"] == {"when": ["create"], "create_only": True,
                                                   "template": "motd.tpl", "properties": None}
        assert meta["templates"]["/etc/motd"]["properties"] == {"greeting": "hello"}
        assert set(meta["templates"]) == set(RULES)
        assert _json(c, "GET", base + "/templates") == (200, sorted(TEMPLATES))

        q = "/templates?path=" + urllib.parse.quote("extra.tpl")
        assert c.raw("POST", base + q, b"extra {{ trigger }}\n").status == 200
        got = c.raw("GET", base + q)
        assert (got.status, got.body) == (200, b"extra {{ trigger }}\n")
        assert c.raw("POST", base + "/templates?path=hostname.tpl",
                     b"edited-{{ instance.name }}\n").status == 200
        assert c.raw("DELETE", base + "/templates?path=copied.tpl").status == 200
        assert c.raw("DELETE", base + "/templates?path=copied.tpl").status == 404
        assert c.raw("GET", base + "/templates?path=copied.tpl").status == 404
        assert "copied.tpl" not in _json(c, "GET", base + "/templates")[1]
        assert c.raw("POST", base + "/templates?path=a%2Fb", b"x").status >= 400
        assert c.raw("POST", base + "/templates", b"x").status == 400  # missing path

        rules = {k: v for k, v in meta["templates"].items() if k != "/var/lib/covetest/copied"}
        rules["/etc/covetest-extra"] = {"when": ["create"], "create_only": False,
                                        "template": "extra.tpl", "properties": None}
        assert _json(c, "PUT", base, {**meta, "templates": rules})[0] == 200
        # written back as Go's encoder writes them: null maps read back empty
        assert _json(c, "GET", base)[1]["templates"] == {
            k: {**v, "properties": v["properties"] or {}} for k, v in rules.items()}

        # PATCH: the body's fields over the current ones, maps gaining entries
        assert _json(c, "PATCH", base, {"properties": {"covetest": "yes"}})[0] == 200
        props = _json(c, "GET", base)[1]["properties"]
        assert props["covetest"] == "yes" and set(meta["properties"] or {}) <= set(props)
        assert set(_json(c, "GET", base)[1]["templates"]) == set(rules)

        _ok(c.change_state(name, "start"))
        assert c.file_get(name, "/etc/hostname").content == f"edited-{name}\n".encode()
        assert c.file_get(name, "/etc/covetest-extra").content == b"extra create\n"
    finally:
        try:
            if c.instance(name)["status"] != "Stopped":
                c.change_state(name, "stop", force=True).wait(60)
            c.delete_instance(name).wait(60)
        except Exception:  # noqa: BLE001, S110 - not there (or a test failure shown)
            pass
        if fp:
            c.delete_image(fp).wait(60)
        c.close()
