"""The LXD wire schema, shared by server, client and CLI.

Design note: one class per LXD object, named after LXD's Go ``shared/api``
types. Requests (``InstancesPost``, ``InstanceExecPost``...) go in, reports
(``Instance``, ``Operation``...) come out; each has ``parse`` (strict, for
coved: a wrong field is a ``BadRequest`` naming it), ``from_wire``
(tolerant, for clients reading cove, LXD 5.0 or Incus) and ``to_wire``
(LXD's JSON). These modules are standard library only, since the CLI
imports them. Every name is loaded on first use (PEP 562 ``__getattr__``):
a caller imports only the modules it touches, and the renderers from cove's
model records (``instance(inst)``, ``image(img)``...), which need the records
(dataclasses), stay off the CLI's import path.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cove.api._backups import (
        InstanceBackup,
        InstanceBackupPost,
        InstanceBackupsPost,
        backup,
    )
    from cove.api._console import InstanceConsolePost
    from cove.api._copies import InstanceRebuildPost
    from cove.api._envelope import async_envelope, error_envelope, sync_envelope
    from cove.api._filter import filter_objects
    from cove.api._images import (
        Image,
        ImageAlias,
        ImageAliasesEntry,
        ImageAliasesEntryPost,
        ImageAliasesEntryPut,
        ImageAliasesPost,
        ImagePut,
    )
    from cove.api._instances import (
        ZERO_TIME,
        Instance,
        InstanceExecPost,
        InstancePost,
        InstancePut,
        InstanceSource,
        InstancesPost,
        InstanceState,
        InstanceStatePut,
    )
    from cove.api._list_json import (
        LOOPBACK_STATE,
        instance_full_json,
        instance_full_json_of,
        instance_json,
        network_json,
        state_json,
        state_json_of,
    )
    from cove.api._metrics import (
        METRIC_FAMILIES,
        MetricSet,
        format_value,
        parse_metrics,
        render_families,
    )
    from cove.api._networks import (
        Certificate,
        CertificatesPost,
        Network,
        NetworkLease,
        NetworkPut,
        NetworksPost,
        NetworkState,
        Profile,
    )
    from cove.api._objects import (
        alias,
        alias_object,
        certificate,
        certificate_object,
        etag,
        image,
        image_object,
        instance,
        instance_full,
        instance_object,
        network,
        network_lease,
        network_lease_object,
        network_object,
        profile,
        profile_object,
        rfc3339,
    )
    from cove.api._operations import ErrorResponse, Event, Operation
    from cove.api._profiles import ProfilePost, ProfilePut, ProfilesPost
    from cove.api._projects import Project, ProjectPost, ProjectPut, ProjectsPost, ProjectState
    from cove.api._publish import PUBLISH_SOURCES, ImagesPostPublish
    from cove.api._snapshots import (
        InstanceSnapshot,
        InstanceSnapshotPost,
        InstanceSnapshotPut,
        InstanceSnapshotsPost,
        parse_time,
        snapshot,
    )
    from cove.api._storage import (
        ResourcesStoragePool,
        StoragePool,
        StorageVolume,
        StorageVolumePost,
        StorageVolumePut,
        StorageVolumesPost,
        storage_volume,
    )

__all__ = [
    "LOOPBACK_STATE",
    "METRIC_FAMILIES",
    "PUBLISH_SOURCES",
    "ZERO_TIME",
    "Certificate",
    "CertificatesPost",
    "ErrorResponse",
    "Event",
    "Image",
    "ImageAlias",
    "ImageAliasesEntry",
    "ImageAliasesEntryPost",
    "ImageAliasesEntryPut",
    "ImageAliasesPost",
    "ImagePut",
    "ImagesPostPublish",
    "Instance",
    "InstanceBackup",
    "InstanceBackupPost",
    "InstanceBackupsPost",
    "InstanceConsolePost",
    "InstanceExecPost",
    "InstancePost",
    "InstancePut",
    "InstanceRebuildPost",
    "InstanceSnapshot",
    "InstanceSnapshotPost",
    "InstanceSnapshotPut",
    "InstanceSnapshotsPost",
    "InstanceSource",
    "InstanceState",
    "InstanceStatePut",
    "InstancesPost",
    "MetricSet",
    "Network",
    "NetworkLease",
    "NetworkPut",
    "NetworkState",
    "NetworksPost",
    "Operation",
    "Profile",
    "ProfilePost",
    "ProfilePut",
    "ProfilesPost",
    "Project",
    "ProjectPost",
    "ProjectPut",
    "ProjectState",
    "ProjectsPost",
    "ResourcesStoragePool",
    "StoragePool",
    "StorageVolume",
    "StorageVolumePost",
    "StorageVolumePut",
    "StorageVolumesPost",
    "alias",
    "alias_object",
    "async_envelope",
    "backup",
    "certificate",
    "certificate_object",
    "error_envelope",
    "etag",
    "filter_objects",
    "format_value",
    "image",
    "image_object",
    "instance",
    "instance_full",
    "instance_full_json",
    "instance_full_json_of",
    "instance_json",
    "instance_object",
    "network",
    "network_json",
    "network_lease",
    "network_lease_object",
    "network_object",
    "parse_metrics",
    "parse_time",
    "profile",
    "profile_object",
    "render_families",
    "rfc3339",
    "snapshot",
    "state_json",
    "state_json_of",
    "storage_volume",
    "sync_envelope",
]

# Where each name lives; a module is imported when one of its names is first
# used, so a caller pays only for what it touches (the CLI's create pays for
# ``_instances``, never for ``_objects``, which imports the model records).
_MODULES = {
    "_backups": ("InstanceBackup", "InstanceBackupPost", "InstanceBackupsPost", "backup"),
    "_console": ("InstanceConsolePost",),
    "_copies": ("InstanceRebuildPost",),
    "_envelope": ("async_envelope", "error_envelope", "sync_envelope"),
    "_filter": ("filter_objects",),
    "_images": ("Image", "ImageAlias", "ImageAliasesEntry", "ImageAliasesEntryPost",
                "ImageAliasesEntryPut", "ImageAliasesPost", "ImagePut"),
    "_instances": ("ZERO_TIME", "Instance", "InstanceExecPost", "InstancePost", "InstancePut",
                   "InstanceSource", "InstanceState", "InstanceStatePut", "InstancesPost"),
    "_list_json": ("LOOPBACK_STATE", "instance_full_json", "instance_full_json_of",
                   "instance_json", "network_json", "state_json", "state_json_of"),
    "_metrics": ("METRIC_FAMILIES", "MetricSet", "format_value", "parse_metrics",
                 "render_families"),
    "_networks": ("Certificate", "CertificatesPost", "Network", "NetworkLease", "NetworkPut",
                  "NetworkState", "NetworksPost", "Profile"),
    "_objects": ("alias", "alias_object", "certificate", "certificate_object", "etag", "image",
                 "image_object", "instance", "instance_full", "instance_object", "network",
                 "network_lease", "network_lease_object", "network_object", "profile",
                 "profile_object", "rfc3339"),
    "_operations": ("ErrorResponse", "Event", "Operation"),
    "_profiles": ("ProfilePost", "ProfilePut", "ProfilesPost"),
    "_publish": ("PUBLISH_SOURCES", "ImagesPostPublish"),
    "_projects": ("Project", "ProjectPost", "ProjectPut", "ProjectState", "ProjectsPost"),
    "_snapshots": ("InstanceSnapshot", "InstanceSnapshotPost", "InstanceSnapshotPut",
                   "InstanceSnapshotsPost", "parse_time", "snapshot"),
    "_storage": ("ResourcesStoragePool", "StoragePool", "StorageVolume", "StorageVolumePost",
                 "StorageVolumePut", "StorageVolumesPost", "storage_volume"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'cove.api' has no attribute {name!r}")
    # __import__, not importlib.import_module: importlib (and warnings) cost
    # the cove command ~0.5 ms for this one call
    value = getattr(__import__(f"cove.api.{module}", fromlist=[name]), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
