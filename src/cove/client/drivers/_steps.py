"""The steps a driver flow yields: what it asks its driver to do, as data.

Design note: a step names one thing a host does (read an instance, start
it, import an image...) and says what it returns; it never says *how*. Each
driver performs steps its own way: ``drivers._rest_steps`` as LXD API
requests (sync and asyncio), ``CliDriver`` as ``lxc``/``cove`` commands,
``LocalDriver`` as engine calls. Results are the LXD wire objects as dicts
(the flows turn them into ``cove.api`` reports), so the three ways agree on
what comes back. A ``Get*`` step answers None for a missing object, so flows
decide convergence by looking, never by reading an error's words.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cove.client.drivers._steps_backups import BackupStep
from cove.client.drivers._steps_copies import CopyStep
from cove.client.drivers._steps_publish import PublishStep
from cove.client.drivers._steps_snapshots import SnapshotStep
from cove.client.drivers._steps_storage import StorageStep

if TYPE_CHECKING:
    from cove import api

__all__ = [
    "Action",
    "AddCertificate",
    "CancelOperation",
    "Create",
    "CreateAlias",
    "CreateNetwork",
    "CreateProfile",
    "Delete",
    "DeleteAlias",
    "DeleteCertificate",
    "DeleteImage",
    "DeleteNetwork",
    "DeleteProfile",
    "Flow",
    "GetAlias",
    "GetCertificate",
    "GetImage",
    "GetInstance",
    "GetMetrics",
    "GetNetwork",
    "GetNetworkLeases",
    "GetNetworkState",
    "GetOperation",
    "GetProfile",
    "GetResources",
    "GetState",
    "HashFile",
    "ImportImage",
    "ListAliases",
    "ListCertificates",
    "ListImages",
    "ListInstances",
    "ListNetworks",
    "ListOperations",
    "ListProfiles",
    "Progress",
    "ProgressCallback",
    "Rename",
    "RenameAlias",
    "RenameProfile",
    "RunCommand",
    "Sleep",
    "Step",
    "Update",
    "UpdateImage",
    "UpdateNetwork",
    "UpdateProfile",
    "WaitOperation",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One progress report of a long action.

    ``stage`` names the phase (``create``, ``start``, ``unpack``, ``upload``...),
    ``percent`` is 0-100 when the server knows it, ``text`` is the server's
    own wording (LXD: ``"Unpack: 45% (30MB/s)"``).
    """

    stage: str
    percent: int | None = None
    text: str = ""


ProgressCallback = Callable[[Progress], None]


# -- steps: what a flow asks its driver to do ------------------------------------------

@dataclass(frozen=True)
class GetInstance:
    """The LXD instance object, or None when there is no such instance."""

    name: str


@dataclass(frozen=True)
class GetState:
    """The LXD instance state object (raises NotFound)."""

    name: str


@dataclass(frozen=True)
class ListImages:
    """Every image on the host (LXD image objects)."""


@dataclass(frozen=True)
class Create:
    """Create the instance ``post`` describes (``POST /1.0/instances``) and
    wait for it; ``post.start`` is not set (flows start it on their own)."""

    post: api.InstancesPost
    progress: ProgressCallback | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.post.name


@dataclass(frozen=True)
class Update:
    """Change an instance: merge ``body`` (``patch``) or replace it (PUT)."""

    name: str
    body: dict[str, Any]
    patch: bool = True


@dataclass(frozen=True)
class Action:
    """A state change (start, stop, freeze, unfreeze) waited for.

    ``timeout`` is LXD's: seconds a clean stop may take, -1 for no limit.
    """

    name: str
    action: str
    force: bool = False
    timeout: int = -1
    progress: ProgressCallback | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Delete:
    """Delete a stopped instance and wait for it."""

    name: str


@dataclass(frozen=True)
class RunCommand:
    """Run ``command`` in a running instance, no stdin; the result is
    ``(exit code, stdout)`` (exit code 127 when the program is missing).

    Through exec rather than the file API on purpose: a running container's
    own mounts (cove's /run is a tmpfs) are seen only from inside it.
    """

    name: str
    command: tuple[str, ...]


@dataclass(frozen=True)
class Sleep:
    seconds: float



# -- steps every driver performs the same way (in ``Driver._perform``) -------------------

@dataclass(frozen=True)
class HashFile:
    """The SHA-256 of a local file, hex: an image's fingerprint (LXD's and
    cove's for a unified tarball), known before anything is uploaded."""

    path: str


# -- instances ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ListInstances:
    """Every instance (LXD instance objects)."""


@dataclass(frozen=True)
class Rename:
    """Rename a stopped instance and wait for it."""

    name: str
    new_name: str


# -- images and aliases --------------------------------------------------------------------

@dataclass(frozen=True)
class GetImage:
    """The LXD image object by fingerprint (a unique prefix will do), or None."""

    fingerprint: str


@dataclass(frozen=True)
class ImportImage:
    """Upload the image tarball at ``path`` (whose SHA-256 is ``fingerprint``)
    and wait until the host has it. Returns None."""

    path: str
    fingerprint: str
    public: bool = False
    progress: ProgressCallback | None = field(default=None, compare=False)


@dataclass(frozen=True)
class UpdateImage:
    """Merge ``properties`` into the image's and set ``public`` (None: keep)."""

    fingerprint: str
    properties: dict[str, str] | None = None
    public: bool | None = None


@dataclass(frozen=True)
class DeleteImage:
    """Delete the image (full fingerprint) and wait for it."""

    fingerprint: str


@dataclass(frozen=True)
class ListAliases:
    """Every image alias (LXD ``ImageAliasesEntry`` objects)."""


@dataclass(frozen=True)
class GetAlias:
    """The alias object, or None."""

    name: str


@dataclass(frozen=True)
class CreateAlias:
    """Name image ``target`` (a full fingerprint) ``name``."""

    name: str
    target: str
    description: str = ""


@dataclass(frozen=True)
class RenameAlias:
    name: str
    new_name: str


@dataclass(frozen=True)
class DeleteAlias:
    name: str


# -- networks ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListNetworks:
    """Every network the host lists (LXD also lists unmanaged interfaces)."""


@dataclass(frozen=True)
class GetNetwork:
    """The network object, or None."""

    name: str


@dataclass(frozen=True)
class GetNetworkState:
    """The LXD ``NetworkState`` object (raises NotFound)."""

    name: str


@dataclass(frozen=True)
class GetNetworkLeases:
    """The network's leases, a list (raises NotFound)."""

    name: str


@dataclass(frozen=True)
class CreateNetwork:
    name: str
    config: dict[str, str]
    description: str = ""
    type: str = "bridge"


@dataclass(frozen=True)
class UpdateNetwork:
    """Merge ``config`` and set ``description`` (``patch``), or replace both (PUT)."""

    name: str
    config: dict[str, str]
    description: str | None = None
    patch: bool = True


@dataclass(frozen=True)
class DeleteNetwork:
    name: str


# -- operations ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListOperations:
    """Every operation the host keeps (LXD operation objects, one list)."""


@dataclass(frozen=True)
class GetOperation:
    """The operation object, or None."""

    id: str


@dataclass(frozen=True)
class WaitOperation:
    """The operation object once it ended, or as it is after ``timeout``
    seconds (None: no limit); raises NotFound."""

    id: str
    timeout: float | None = None


@dataclass(frozen=True)
class CancelOperation:
    id: str


# -- trusted certificates ----------------------------------------------------------------------

@dataclass(frozen=True)
class ListCertificates:
    """Every trusted certificate (LXD certificate objects)."""


@dataclass(frozen=True)
class GetCertificate:
    """The certificate object by fingerprint (a unique prefix will do), or None."""

    fingerprint: str


@dataclass(frozen=True)
class AddCertificate:
    """Trust the client certificate ``pem``."""

    pem: str
    name: str = ""


@dataclass(frozen=True)
class DeleteCertificate:
    fingerprint: str


# -- profiles ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListProfiles:
    """Every profile (LXD ``Profile`` objects, one list)."""


@dataclass(frozen=True)
class GetProfile:
    """The profile object, or None."""

    name: str


@dataclass(frozen=True)
class CreateProfile:
    name: str
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    description: str = ""


@dataclass(frozen=True)
class UpdateProfile:
    """Merge the given fields (``patch``: PATCH) or replace the profile (PUT);
    None: a field not sent."""

    name: str
    config: dict[str, str] | None = None
    devices: dict[str, dict[str, str]] | None = None
    description: str | None = None
    patch: bool = True


@dataclass(frozen=True)
class RenameProfile:
    name: str
    new_name: str


@dataclass(frozen=True)
class DeleteProfile:
    name: str
# -- the host ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GetResources:
    """The host's hardware: LXD's ``Resources`` object (a dict)."""


@dataclass(frozen=True)
class GetMetrics:
    """LXD's metrics, the Prometheus text (``project``: that project's instances only)."""

    project: str | None = None


Step = (GetInstance | GetState | ListImages | Create | Update | Action | Delete | RunCommand
        | Sleep | HashFile | ListInstances | Rename | GetImage | ImportImage | UpdateImage
        | DeleteImage | ListAliases | GetAlias | CreateAlias | RenameAlias | DeleteAlias
        | ListNetworks | GetNetwork | GetNetworkState | GetNetworkLeases | CreateNetwork
        | UpdateNetwork | DeleteNetwork | ListOperations | GetOperation | WaitOperation
        | CancelOperation | ListCertificates | GetCertificate | AddCertificate
        | DeleteCertificate | ListProfiles | GetProfile | CreateProfile | UpdateProfile
        | RenameProfile | DeleteProfile
        | GetResources | GetMetrics | StorageStep | SnapshotStep | CopyStep | PublishStep
        | BackupStep)
Flow = Generator[Step, Any, T]
