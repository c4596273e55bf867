"""Requests of the storage API (``/1.0/storage-pools``), built from the same
``cove.api`` classes coved parses, for the sync client, the async one and
the drivers (as ``_wire`` does for the rest).

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove import api
from cove.client._wire import Request, q

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "create_volume",
    "delete_volume",
    "rename_volume",
    "storage_pool",
    "storage_pools",
    "update_volume",
    "volume",
    "volumes",
]


def storage_pools(recursion: int = 1) -> Request:
    return Request("GET", f"/1.0/storage-pools?recursion={int(recursion)}")


def storage_pool(pool: str, sub: str = "") -> Request:
    """``GET /1.0/storage-pools/POOL`` (``sub``: ``resources``)."""
    return Request("GET", f"/1.0/storage-pools/{q(pool)}" + (f"/{sub}" if sub else ""))


def _volume_path(pool: str, name: str) -> str:
    return f"/1.0/storage-pools/{q(pool)}/volumes/custom/{q(name)}"


def volumes(pool: str, recursion: int = 1) -> Request:
    """The custom volumes of ``pool``."""
    return Request("GET", f"/1.0/storage-pools/{q(pool)}/volumes/custom"
                          f"?recursion={int(recursion)}")


def volume(pool: str, name: str) -> Request:
    return Request("GET", _volume_path(pool, name))


def create_volume(pool: str, name: str, config: Mapping[str, str] | None = None, *,
                  description: str = "") -> Request:
    post = api.StorageVolumesPost(name=name, type="custom", description=description,
                                  config=config)
    return Request("POST", f"/1.0/storage-pools/{q(pool)}/volumes/custom", post.to_wire())


def update_volume(pool: str, name: str, *, config: Mapping[str, str] | None = None,
                  description: str | None = None, patch: bool = True) -> Request:
    """``PATCH`` (merge) or ``PUT`` (replace) a volume's config and description."""
    put = api.StorageVolumePut(config=config, description=description)
    return Request("PATCH" if patch else "PUT", _volume_path(pool, name), put.to_wire())


def rename_volume(pool: str, name: str, new_name: str) -> Request:
    return Request("POST", _volume_path(pool, name),
                   api.StorageVolumePost(name=new_name, pool=pool).to_wire())


def delete_volume(pool: str, name: str) -> Request:
    return Request("DELETE", _volume_path(pool, name))
