"""An image of the store as an OCI layout, for ``cove image push``: its
layer chain (an OCI image's layers, an imported image's rootfs, a published
instance's upper layer on its parent's) as gzip'd tar blobs, and a config
that keeps what the image runs (an OCI image's own config; else the
image's command and environment)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cove.engine._images import Images
from cove.engine.operations import Operation
from cove.storage.oci_export import layer_blob, write_image
from cove.storage.registry import Descriptor, Layout, host_platform

__all__ = ["export_layout"]


def _config(images: Images, fingerprint: str) -> dict[str, Any]:
    """The image's OCI config when it came from one, else one made from its row."""
    try:
        raw = json.loads((images.layers.path(fingerprint) / "config.json").read_bytes())
        if isinstance(raw, dict):
            return raw
    except (OSError, ValueError):
        pass
    img = images.find(fingerprint)
    run: dict[str, Any] = {}
    if img is not None and img.cmd:
        run["Cmd"] = list(img.cmd)
    if img is not None and img.env:
        run["Env"] = [f"{k}={v}" for k, v in img.env.items()]
    return {"architecture": host_platform()[0], "os": "linux", "config": run}


def export_layout(images: Images, fingerprint: str, dest: Path, op: Operation) -> Descriptor:
    """Write the image ``fingerprint`` into the OCI layout ``dest``; the
    manifest's descriptor. Progress: ``Packing layers`` per layer.

    Raises:
        NotFound: the image or one of its layers is not in the store.
    """
    store = images.layers.layers
    chain = store.chain(fingerprint)
    layout = Layout(dest)
    layout.ensure()
    blobs = []
    for i, layer_id in enumerate(chain, 1):
        op.progress("Packing layers", (i - 1) * 100 // len(chain), f"layer {i}/{len(chain)}")
        blobs.append(layer_blob(store.path(layer_id), layout))
    return write_image(layout, blobs, _config(images, fingerprint))
