"""Storage: image unpacking, overlay mounts, and safe file access inside
container root filesystems. See ``safefs`` for the security model and
``images`` for the safe-extraction rules."""

from cove.storage.images import (
    ImageStore,
    ImportedImage,
    Progress,
    host_architecture,
    normalize_architecture,
)
from cove.storage.overlay import is_mounted, mount_overlay, mounts_under, umount
from cove.storage.safefs import FileStat, RootFS, split_path

__all__ = [
    "FileStat",
    "ImageStore",
    "ImportedImage",
    "Progress",
    "RootFS",
    "host_architecture",
    "is_mounted",
    "mount_overlay",
    "mounts_under",
    "normalize_architecture",
    "split_path",
    "umount",
]
