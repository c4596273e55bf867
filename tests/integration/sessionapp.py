"""The app image of the session tests: busybox whose init serves HTTP on
8888 (``httpd``), with the environment it started with in ``/env.txt``."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

INITTAB = b"""\
::sysinit:/bin/sh -c 'mkdir -p /www && env > /www/env.txt && echo app > /www/index.html'
::sysinit:/bin/sh -c 'exec httpd -p 8888 -h /www'
::shutdown:/bin/true
"""


def build_app_image(busybox_tar: Path, out: Path) -> Path:
    """``busybox_tar`` (a unified tarball) with the app's inittab."""
    buf = io.BytesIO()
    with tarfile.open(busybox_tar, "r:gz") as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            if member.name == "rootfs/etc/inittab":
                member.size = len(INITTAB)
                dst.addfile(member, io.BytesIO(INITTAB))
            elif member.name == "metadata.yaml":
                data = src.extractfile(member).read()  # type: ignore[union-attr]
                data = data.replace(b"BusyBox", b"BusyBox app", 1)  # another fingerprint
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                mtime=0) as gz:
        gz.write(buf.getvalue())
    return out
