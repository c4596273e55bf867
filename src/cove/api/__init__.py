"""The LXD wire schema, shared by server, client and CLI: objects
(instance, image, alias, profile), the filter language and the envelopes."""

from cove.api._envelope import async_envelope, error_envelope, sync_envelope
from cove.api._filter import filter_objects
from cove.api._objects import (
    ZERO_TIME,
    alias,
    etag,
    image,
    instance,
    instance_full,
    network,
    network_lease,
    profile,
    rfc3339,
)

__all__ = [
    "ZERO_TIME",
    "alias",
    "async_envelope",
    "error_envelope",
    "etag",
    "filter_objects",
    "image",
    "instance",
    "instance_full",
    "network",
    "network_lease",
    "profile",
    "rfc3339",
    "sync_envelope",
]
