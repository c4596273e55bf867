"""An LXD image with ``metadata.yaml`` templates, built from the busybox
image for the template tests (integration and conformance: the same bytes
go to coved and to a real LXD). Stdlib only."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

__all__ = ["RULES", "TEMPLATES", "templated_image"]

# As the images of LXD's image servers have them (distrobuilder's
# generators), plus a property, a create_only file that exists, a copy
# rule and a start rule.
RULES: dict[str, dict[str, object]] = {
    "/etc/hostname": {"when": ["create", "copy", "rename"], "create_only": False,
                      "template": "hostname.tpl", "properties": {}},
    "/etc/hosts": {"when": ["create", "copy"], "create_only": False,
                   "template": "hosts.tpl", "properties": {}},
    "/etc/motd": {"when": ["create"], "create_only": True, "template": "motd.tpl",
                  "properties": {"greeting": "hello"}},
    "/etc/group": {"when": ["create"], "create_only": True, "template": "motd.tpl"},
    "/var/lib/covetest/copied": {"when": ["copy"], "template": "copied.tpl"},
    "/var/lib/covetest/started": {"when": ["start"], "template": "started.tpl"},
}
TEMPLATES = {
    "hostname.tpl": "{{ container.name }}\n",
    "hosts.tpl": "127.0.1.1\t{{ container.name }}\n127.0.0.1\tlocalhost\n"
                 "::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    "motd.tpl": "welcome to {{ instance.name }}, {{ properties.greeting }}\n",
    "copied.tpl": "copied to {{ instance.name }} ({{ trigger }})\n",
    "started.tpl": '{{ trigger }} {{ config_get("user.foo", "_unset_") }}\n',
}


def templated_image(busybox_tar: Path, out: Path, rules: dict[str, dict[str, object]],
                    templates: dict[str, str], symlinks: dict[str, str] | None = None) -> Path:
    """The busybox unified image with ``rules`` as its metadata.yaml
    ``templates:`` (written as JSON, which is YAML), ``templates`` in
    ``templates/`` and ``symlinks`` (rootfs path -> target) added; at ``out``."""
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w:gz") as dst:
        meta_text = ""
        for m in src.getmembers():
            if m.name == "metadata.yaml":
                meta_text = src.extractfile(m).read().decode()  # type: ignore[union-attr]
                continue
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        # the busybox metadata ends with "templates: {}": replaced by ours
        meta = meta_text.replace("templates: {}", "templates: " + json.dumps(rules))
        assert json.dumps(rules) in meta
        d = tarfile.TarInfo("templates")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        dst.addfile(d)
        files = {"metadata.yaml": meta.encode(),
                 **{f"templates/{n}": t.encode() for n, t in templates.items()}}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            dst.addfile(info, io.BytesIO(data))
        for path, target in (symlinks or {}).items():
            info = tarfile.TarInfo(f"rootfs{path}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            dst.addfile(info)
    return out
