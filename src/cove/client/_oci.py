"""Uploading an OCI image layout directory to coved (``cove image import DIR``).

The directory is packed into an uncompressed tar (its blobs are compressed
already) and sent as ``POST /1.0/images`` with ``X-Cove-Image-Format:
oci-layout`` (and ``X-Cove-OCI-Ref`` for ``--ref``): coved unpacks it as
hostile input and imports the image (``engine.oci``). LXD has no such upload.
"""

from __future__ import annotations

import os
import tarfile
import tempfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from cove.client._rest import Client, Operation

__all__ = ["is_oci_layout", "pack_layout", "upload_layout"]


def is_oci_layout(path: str) -> bool:
    """Whether ``path`` is a directory holding an OCI image layout."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "oci-layout"))


def pack_layout(path: str) -> BinaryIO:
    """``oci-layout``, ``index.json`` and ``blobs/`` of ``path`` as a tar in
    a temporary file (rewound; the caller closes it). Symlinks are packed as
    symlinks (coved never follows them out of the layout)."""
    out = tempfile.TemporaryFile(prefix="cove-oci-")  # noqa: SIM115 - returned open
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in ("oci-layout", "index.json", "blobs"):
            full = os.path.join(path, top)
            if os.path.lexists(full):
                tar.add(full, arcname=top, recursive=True)
    out.seek(0)
    return out


def upload_layout(client: Client, body: BinaryIO, *, ref: str | None = None,
                  public: bool = False, filename: str = "",
                  progress: Callable[[int, int | None], None] | None = None) -> Operation:
    """Send a packed layout; returns the import's operation (not waited for)."""
    headers = {"Content-Type": "application/octet-stream", "X-LXD-filename": filename,
               "X-LXD-public": "1" if public else "0", "X-Cove-Image-Format": "oci-layout"}
    if ref:
        headers["X-Cove-OCI-Ref"] = ref
    return client._op("POST", "/1.0/images", body, headers, progress=progress)
