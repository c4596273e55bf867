#!/usr/bin/env python3
"""Build a tiny LXD image from the host's static busybox.

Usage: ``mkbusybox.py OUT.tar.gz [--plain]``

The default output is an LXD unified image tarball (``metadata.yaml`` and
``rootfs/``); ``--plain`` writes a bare rootfs tarball instead. The rootfs
holds ``/bin/busybox``, a symlink for every applet (from ``busybox
--list-full``), the usual top-level directories, users ``root``, ``app``
(1000) and ``nobody``, and ``/etc/hostname`` and ``/etc/hosts``.

The output is deterministic: every timestamp is the mtime of the busybox
binary and gzip's header carries no time, so the same busybox always gives
the same bytes (and the same image fingerprint). Stdlib only: tests import
this file by path.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

__all__ = ["build_busybox_image", "main"]

BUSYBOX = Path("/bin/busybox")

_DIRS = {
    # path: (mode, uid, gid)
    "bin": (0o755, 0, 0),
    "sbin": (0o755, 0, 0),
    "usr": (0o755, 0, 0),
    "usr/bin": (0o755, 0, 0),
    "usr/sbin": (0o755, 0, 0),
    "dev": (0o755, 0, 0),
    "proc": (0o555, 0, 0),
    "sys": (0o555, 0, 0),
    "tmp": (0o1777, 0, 0),
    "root": (0o700, 0, 0),
    "etc": (0o755, 0, 0),
    "home": (0o755, 0, 0),
    "home/app": (0o755, 1000, 1000),
    "run": (0o755, 0, 0),
    "var": (0o755, 0, 0),
    "var/log": (0o755, 0, 0),
    "var/tmp": (0o1777, 0, 0),
}

_PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

_GROUP = """\
root:x:0:
app:x:1000:
nogroup:x:65534:
"""

_HOSTS = """\
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
"""

# busybox init with no console to spawn: as pid 1 it reaps orphans, waits,
# and on SIGTERM (cove's default halt signal) runs the shutdown entry and exits.
_INITTAB = """\
::sysinit:/bin/true
::shutdown:/bin/true
"""

_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "ppc64el": "ppc64le"}


def _busybox_info() -> tuple[str, list[str]]:
    """(version, applet paths relative to /) of the host's busybox."""
    banner = subprocess.run([str(BUSYBOX)], capture_output=True, check=False).stdout
    first = banner.decode(errors="replace").splitlines()[0] if banner else ""
    # "BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary."
    words = first.split()
    version = words[1].lstrip("v") if len(words) > 1 and first.startswith("BusyBox") else "unknown"
    listing = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, check=True)
    applets = sorted({line.strip().lstrip("/") for line in listing.stdout.decode().splitlines()
                      if "/" in line.strip()})
    return version, applets


def _metadata(arch: str, created: int, version: str) -> bytes:
    # JSON strings are valid YAML scalars; no yaml module needed.
    props = {"os": "busybox", "release": version,
             "description": f"BusyBox {version} (static, from the host)"}
    lines = [f"architecture: {json.dumps(arch)}", f"creation_date: {created}", "properties:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in props.items()]
    lines.append("templates: {}")
    return ("\n".join(lines) + "\n").encode()


def _build_tar(plain: bool) -> bytes:
    version, applets = _busybox_info()
    mtime = int(BUSYBOX.stat().st_mtime)
    prefix = "" if plain else "rootfs/"
    buf = io.BytesIO()

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
                data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.uid, info.gid = uid, gid
            info.uname = info.gname = ""
            info.mtime = mtime
            info.linkname = link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        if not plain:
            arch = os.uname().machine
            add("metadata.yaml", tarfile.REGTYPE,
                data=_metadata(_ARCH.get(arch, arch), mtime, version))
            add("rootfs", tarfile.DIRTYPE, mode=0o755)
        parents = set(_DIRS)
        for name, (mode, uid, gid) in sorted(_DIRS.items()):
            add(prefix + name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid)
        add(prefix + "bin/busybox", tarfile.REGTYPE, mode=0o755, data=BUSYBOX.read_bytes())
        links = set(applets) | {"bin/sh"}
        links.discard("bin/busybox")
        for name in sorted(links):
            parent = name.rpartition("/")[0]
            if parent and parent not in parents:
                parents.add(parent)
                add(prefix + parent, tarfile.DIRTYPE, mode=0o755)
            add(prefix + name, tarfile.SYMTYPE, mode=0o777, link="/bin/busybox")
        etc = {"passwd": _PASSWD, "group": _GROUP, "hostname": "busybox\n", "hosts": _HOSTS,
               "inittab": _INITTAB}
        for name, text in etc.items():
            add(f"{prefix}etc/{name}", tarfile.REGTYPE, data=text.encode())
    return buf.getvalue()


def build_busybox_image(out: Path, plain: bool = False) -> Path:
    """Write the image tarball (gzip) to ``out`` and return ``out``.

    Raises:
        FileNotFoundError: the host has no ``/bin/busybox``.
        subprocess.CalledProcessError: busybox cannot list its applets.
    """
    out = Path(out)
    data = _build_tar(plain)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                compresslevel=6, mtime=0) as gz:
        gz.write(data)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output tarball (gzip)")
    parser.add_argument("--plain", action="store_true", help="a plain rootfs tarball")
    args = parser.parse_args(argv)
    print(build_busybox_image(args.out, plain=args.plain))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
