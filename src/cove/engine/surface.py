"""The engine as the server and the local driver see it: one ``Protocol``
per service and ``EngineAPI`` for the whole.

Design note: coved's handlers and ``LocalDriver`` are typed against these,
not against ``Engine``, so a unit test can hand the server a fake engine
that the type checker holds to the same contract (never
``cast(Engine, fake)``). ``Engine`` and its services satisfy them
structurally (mypy checks it where coved and ``LocalDriver`` hand theirs on).
Internal calls between services use the smaller ports of ``ports``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from cove.api import InstanceExecPost, InstanceSource, InstancesPost
from cove.engine._exec_out import Reader
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.types import ConsoleSession, ExecSession, FileInfo, Listed
from cove.model.disks import Volume
from cove.model.profiles import Profile
from cove.model.projects import Project
from cove.model.records import Alias, Backup, Image, Instance, Lease, Network, Snapshot
from cove.model.trust import Certificate
from cove.storage.export import ExportPart

__all__ = [
    "AccessAPI",
    "AppsAPI",
    "BackupsAPI",
    "ConsoleAPI",
    "CopiesAPI",
    "EngineAPI",
    "ImagePullsAPI",
    "ImagesAPI",
    "InstancesAPI",
    "MetricsAPI",
    "NetworksAPI",
    "ProfilesAPI",
    "ProjectsAPI",
    "PublisherAPI",
    "ResourcesAPI",
    "SnapshotsAPI",
    "StorageAPI",
    "TrustAPI",
]


class InstancesAPI(Protocol):
    """What the server and the local driver call on ``engine.instances``."""

    def all(self, *, project: str | None = "default") -> list[Instance]:
        """Every instance of ``project`` (None: of every project), with its expanded devices; ``name`` is the key, ``project`` says whose."""
        ...

    def listed(self, project: str | None = "default") -> list[Listed]: ...  # all(): _listing
    def get(self, name: str, *, project: str = "default") -> Instance:
        """One instance, with its expanded devices. Raises: NotFound."""
        ...

    def state(self, name: str, *, project: str = "default") -> dict[str, Any]:
        """LXD's ``InstanceState``: status, pid, counters, network. Raises: NotFound."""
        ...

    def states(self, insts: list[Instance], *, network: bool = True,
               counters: bool = True) -> dict[str, dict[str, Any]]:
        """The states of rows ``all`` returned, by key, in one call; ``network`` False leaves it null (LXD's ``recursion=2;fields=``), ``counters`` False the cgroup counters 0."""
        ...

    def states_json(self, insts: list[Instance], *, network: bool = True) -> dict[str, str]: ...  # states() as cove.api.state_json text: _states
    def create(self, req: InstancesPost, *, project: str = "default",
               wait_for_lock: float = 0) -> Operation:
        """Make an instance (and start it if ``req.start``), as an operation. Not idempotent."""
        ...

    def change_state(
        self,
        name: str,
        action: str,
        *,
        project: str = "default",
        timeout: float = -1,
        force: bool = False,
        wait_for_lock: float = 0,
    ) -> Operation:
        """Start, stop, restart, freeze or unfreeze, as an operation. Not idempotent (the convergent forms are the client's)."""
        ...

    def update(
        self,
        name: str,
        *,
        project: str = "default",
        config: dict[str, Any] | None = None,
        devices: dict[str, dict[str, str]] | None = None,
        profiles: list[str] | None = None,
        description: str | None = None,
        ephemeral: bool | None = None,
        patch: bool = False,
    ) -> None:
        """Replace (PUT) or merge (PATCH) the given fields; limits apply live."""
        ...

    def rename(self, name: str, new_name: str, *, project: str = "default") -> Operation:
        """Rename a stopped instance, as an operation. Not idempotent."""
        ...

    def delete(self, name: str, *, project: str = "default", force: bool = False,
               wait_for_lock: float = 0) -> Operation:
        """Delete an instance (``force``: stopping it first), as an operation. Not idempotent (deleting what is gone is the client's success)."""
        ...


class AccessAPI(Protocol):
    """What the server and the local driver call on ``engine.access``."""

    def exec(self, name: str, req: InstanceExecPost, *, project: str = "default") -> ExecSession:
        """Start ``req.command`` in the running instance ``name``; the caller owns the session (and must ``close()`` it)."""
        ...

    def settle(self, name: str, *, project: str = "default") -> None:
        """Wait (a bounded time) for a start, stop or restart of ``name`` in flight to end."""
        ...

    def exec_detached(self, name: str, req: InstanceExecPost, *, project: str = "default",
                      record: bool) -> Operation:
        """Run ``req.command`` with no websockets, as an operation whose metadata gets ``return`` (and ``output``, the log paths, when ``record``). Not idempotent."""
        ...

    def file_get(self, name: str, path: str, *, project: str = "default") -> FileInfo:
        """What is at ``path`` (symlinks not followed); a file's ``fd`` is the caller's to close."""
        ...

    def file_put(
        self,
        name: str,
        path: str,
        *,
        project: str = "default",
        type: str = "file",
        data: BinaryIO | bytes | None = None,
        uid: int | None = None,
        gid: int | None = None,
        mode: int | None = None,
        write: str = "overwrite",
        target: str | None = None,
        make_parents: bool = False,
    ) -> None:
        """Write a file, make a directory or a symlink at ``path``; idempotent for directories, overwriting (or appending to) files."""
        ...

    def file_delete(self, name: str, path: str, *, project: str = "default") -> None:
        """Remove a file, symlink or empty directory. Not idempotent."""
        ...

    def console_log(self, name: str, *, project: str = "default") -> os.PathLike[str]:
        """Path of the raw (k8s-file) console log; use ``read_console`` for text. Raises: NotFound."""
        ...

    def read_console(self, name: str, offset: int = 0, *,
                     project: str = "default") -> tuple[bytes, int]:
        """Plain output of the instance from raw byte ``offset`` on, and the new offset."""
        ...

    def log_names(self, name: str, *, project: str = "default") -> list[str]:
        """``console.log``, then the recorded exec outputs. Raises: NotFound."""
        ...

    def log_reader(self, name: str, file: str, *, project: str = "default") -> Reader:
        """A reader of one log (``console.log`` as plain text)."""
        ...

    def delete_log(self, name: str, file: str, *, project: str = "default") -> None:
        """Remove a recorded exec output. Not idempotent."""
        ...


class ConsoleAPI(Protocol):
    """What the server calls on ``engine.console``."""

    def attach(self, name: str, width: int = 0, height: int = 0) -> ConsoleSession:
        """Attach to the console of the running instance ``name`` (one client at a time); the caller must ``close()`` the session. Raises: NotFound, BadRequest (not running, frozen, no console), Conflict (in use)."""
        ...

    def clear_log(self, name: str) -> None:
        """Empty the console log. Idempotent. Raises: NotFound."""
        ...


class ImagesAPI(Protocol):
    """What the server and the local driver call on ``engine.images``."""

    def all(self, *, project: str = "default") -> list[Image]:
        """Every image of ``project`` (or of whose it uses: features.images), with its aliases."""
        ...

    def get(self, fingerprint: str, *, project: str = "default") -> Image:
        """By full fingerprint or a unique prefix."""
        ...

    def resolve(self, ref: str, *, project: str = "default") -> Image:
        """An alias, else a fingerprint or its prefix."""
        ...

    def import_file(
        self,
        path: Path,
        *,
        filename: str = "",
        public: bool = False,
        aliases: list[str] | None = None,
        meta_path: Path | None = None,
        properties: dict[str, str] | None = None,
        project: str = "default",
    ) -> Operation:
        """Import the tarball at ``path`` (split format: ``meta_path`` + rootfs ``path``)."""
        ...

    def update(
        self,
        fingerprint: str,
        *,
        properties: dict[str, str] | None = None,
        public: bool | None = None,
        patch: bool = True,
        project: str = "default",
        auto_update: bool | None = None,
    ) -> None:
        """Merge (``patch``) or replace an image's properties, public and
        auto_update flags. Idempotent. Raises: BadRequest (auto-update of an
        image with no source), NotFound."""
        ...

    def delete(self, fingerprint: str, *, project: str = "default") -> Operation:
        """Remove an image from ``project``; with the last project holding it, its row
        goes, and its layers once no instance uses them."""
        ...

    def list_aliases(self, *, project: str = "default") -> list[Alias]: ...
    def get_alias(self, name: str, *, project: str = "default") -> Alias:
        """Raises: NotFound."""
        ...

    def add_alias(self, name: str, target: str, description: str = "", *,
                  project: str = "default") -> None:
        """Raises: BadRequest (name), NotFound (target), Conflict (exists)."""
        ...

    def update_alias(self, name: str, target: str, description: str = "", *,
                     project: str = "default") -> None:
        """Point ``name`` at ``target``. Idempotent. Raises: NotFound."""
        ...

    def rename_alias(self, name: str, new_name: str, *, project: str = "default") -> None:
        """Raises: BadRequest (name), NotFound, Conflict (new name taken)."""
        ...

    def delete_alias(self, name: str, *, project: str = "default") -> None:
        """Raises: NotFound."""
        ...


class NetworksAPI(Protocol):
    """What the server and the local driver call on ``engine.networks``."""

    def all(self) -> list[Network]: ...
    def get(self, name: str) -> Network:
        """Raises: NotFound."""
        ...

    def used_by(self, name: str) -> list[str]:
        """LXD's ``used_by``: the default profile and every instance with a NIC on it."""
        ...

    def leases(self, name: str) -> list[Lease]:
        """The addresses instances hold on network ``name``. Raises: NotFound."""
        ...

    def state(self, name: str) -> dict[str, Any]:
        """LXD's ``NetworkState``: addresses, counters, MTU, state. Raises: NotFound."""
        ...

    def create(
        self,
        name: str,
        *,
        config: dict[str, Any] | None = None,
        description: str = "",
        type: str = "bridge",
    ) -> Network:
        """Make a network (sync, as LXD); ``auto`` addresses are resolved and stored. Not idempotent."""
        ...

    def update(
        self,
        name: str,
        *,
        config: dict[str, Any] | None = None,
        description: str | None = None,
        patch: bool = False,
    ) -> None:
        """Replace (PUT) or merge (PATCH) a network's config; idempotent. What may change while instances use it is the type's rule."""
        ...

    def delete(self, name: str) -> None:
        """Remove a network and everything of it on the host. Not idempotent."""
        ...


class ProfilesAPI(Protocol):
    """What the server and the local driver call on ``engine.profiles``."""

    def owner(self, project: str) -> str:
        """The project whose profiles ``project`` uses. Raises: NotFound."""
        ...

    def all(self, project: str = "default") -> list[Profile]:
        """The profiles of ``project`` by name. Never raises."""
        ...

    def get(self, name: str, project: str = "default") -> Profile:
        """Raises: NotFound."""
        ...

    def used_by(self, name: str, project: str = "default") -> list[str]:
        """The URLs of the instances that list ``name``."""
        ...

    def create(self, name: str, *, config: dict[str, Any] | None = None,
               devices: dict[str, Any] | None = None, description: str = "",
               project: str = "default") -> Profile:
        """Make a profile. Raises BadRequest, Conflict. Not idempotent."""
        ...

    def update(self, name: str, *, config: dict[str, Any] | None = None,
               devices: dict[str, Any] | None = None, description: str | None = None,
               patch: bool = False, project: str = "default") -> None:
        """Replace (PUT) or merge (PATCH) a profile and apply it to the
        instances that use it. Raises NotFound, BadRequest, Conflict. Idempotent."""
        ...

    def rename(self, name: str, new_name: str, project: str = "default") -> None:
        """Raises Forbidden (default), BadRequest, NotFound, Conflict. Not idempotent."""
        ...

    def delete(self, name: str, project: str = "default") -> None:
        """Raises Forbidden (default), NotFound, BadRequest (in use). Not idempotent."""
        ...

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """The devices ``inst`` runs with."""
        ...


class ProjectsAPI(Protocol):
    """What the server and the local driver call on ``engine.projects``."""

    def all(self) -> list[Project]:
        """Every project, ``default`` first."""
        ...

    def get(self, name: str) -> Project:
        """Raises: NotFound ("Project not found")."""
        ...

    def check(self, name: str) -> str:
        """``name`` if the project exists. Raises: NotFound."""
        ...

    def used_by(self, name: str) -> list[str]:
        """LXD's ``used_by`` of a project. Raises: NotFound."""
        ...

    def state(self, name: str) -> dict[str, Any]:
        """LXD's ``ProjectState`` (each resource's ``limit`` and ``usage``). Raises: NotFound."""
        ...

    def images_project(self, name: str) -> str:
        """Whose images project ``name`` uses (``features.images``)."""
        ...

    def profiles_project(self, name: str) -> str:
        """Whose profiles project ``name`` uses (``features.profiles``)."""
        ...

    def create(self, name: str, *, config: dict[str, Any] | None = None,
               description: str = "") -> Project:
        """Make a project (sync); unset features get LXD's defaults. Not idempotent."""
        ...

    def update(self, name: str, *, config: dict[str, Any] | None = None,
               description: str | None = None, patch: bool = False) -> None:
        """Replace (PUT) or merge (PATCH) config and description. Idempotent."""
        ...

    def rename(self, name: str, new_name: str) -> Operation:
        """Rename an empty project, as an operation. Not idempotent."""
        ...

    def delete(self, name: str) -> None:
        """Remove an empty project. Not idempotent."""


class StorageAPI(Protocol):
    """What the server and the local driver call on ``engine.storage``."""

    def pool_names(self) -> list[str]: ...
    def pool(self, name: str) -> dict[str, Any]:
        """LXD's ``StoragePool`` without ``used_by``. Raises: NotFound."""
        ...

    def pool_used_by(self, name: str) -> list[str]:
        """Raises: NotFound."""
        ...

    def pool_resources(self, name: str) -> dict[str, Any]:
        """LXD's ``ResourcesStoragePool``. Raises: NotFound."""
        ...

    def volumes(self, pool: str, *, project: str = "default") -> list[Volume]:
        """Raises: NotFound (pool)."""
        ...

    def volume(self, pool: str, name: str, *, type: str = "custom",
               project: str = "default") -> Volume:
        """Raises: NotFound, BadRequest (type)."""
        ...

    def instance_volumes(self, pool: str, *, project: str = "default") -> list[Instance]:
        """The instances whose root filesystems are on ``pool``. Raises: NotFound."""
        ...

    def volume_used_by(self, pool: str, name: str, *, project: str = "default") -> list[str]:
        """Raises: NotFound."""
        ...

    def create_volume(self, pool: str, name: str, *, type: str = "custom",
                      description: str = "", config: dict[str, Any] | None = None,
                      content_type: str = "filesystem", project: str = "default") -> Volume:
        """Not idempotent. Raises: NotFound (pool), BadRequest, Conflict."""
        ...

    def update_volume(self, pool: str, name: str, *, type: str = "custom",
                      description: str | None = None, config: dict[str, Any] | None = None,
                      patch: bool = False, project: str = "default") -> Volume:
        """Raises: NotFound, BadRequest."""
        ...

    def rename_volume(self, pool: str, name: str, new_name: str, *, type: str = "custom",
                      project: str = "default") -> Volume:
        """Raises: NotFound, BadRequest (in use by a running instance), Conflict."""
        ...

    def delete_volume(self, pool: str, name: str, *, type: str = "custom",
                      project: str = "default") -> None:
        """Not idempotent. Raises: NotFound, BadRequest (in use)."""
        ...


class ImagePullsAPI(Protocol):
    """Images from simplestreams and LXD image servers (``engine.image_pulls``)."""

    def pull(self, src: InstanceSource, *, aliases: list[str] | None = None,
             public: bool = False, auto_update: bool = False,
             project: str = "default") -> Operation:
        """``POST /1.0/images`` from a remote server; the result the Image.
        Raises: BadRequest (the source), Conflict (an alias), NotFound (project)."""
        ...

    def create_instance(self, req: InstancesPost, *, project: str = "default") -> Operation:
        """``POST /1.0/instances`` with a remote image: pulled (cached), then made.
        Raises: BadRequest (name, source), NotFound (project)."""
        ...


class PublisherAPI(Protocol):
    """Publishing instances as images and exporting images (``engine.publisher``)."""

    def publish(self, source_type: str, name: str, *, aliases: list[str] | None = None,
                properties: dict[str, str] | None = None, public: bool = False,
                filename: str = "", project: str = "default") -> Operation:
        """An image of an instance or ``INSTANCE/SNAP``; metadata ``fingerprint``, ``size``."""
        ...

    def export(self, fingerprint: str, *, project: str = "default") -> list[ExportPart]:
        """The files ``GET /1.0/images/FP/export`` sends (one, or two when split)."""
        ...


class SnapshotsAPI(Protocol):
    """What the server and the local driver call on ``engine.snapshots``."""

    def all(self, name: str, *, project: str = "default") -> list[Snapshot]:
        """The instance's snapshots, oldest first. Raises: NotFound."""
        ...

    def by_instance(self, keys: list[str]) -> dict[str, list[Snapshot]]:
        """The snapshots of the instances keyed ``keys``, oldest first, in one read."""
        ...

    def get(self, name: str, snapshot: str, *, project: str = "default") -> Snapshot:
        """Raises: NotFound (the instance or the snapshot)."""
        ...

    def create(self, name: str, snapshot: str | None = None, *, project: str = "default",
               stateful: bool = False, expires_at: float | None = None,
               description: str = "") -> Operation:
        """Take one (``snapshot`` None: ``snapshots.pattern``). Not idempotent.
        Raises: BadRequest, NotFound, Conflict."""
        ...

    def update(self, name: str, snapshot: str, *, project: str = "default",
               description: str | None = None, expires_at: float | None = None) -> Snapshot:
        """Its description and expiry. Idempotent. Raises: NotFound."""
        ...

    def rename(self, name: str, snapshot: str, new_name: str, *,
               project: str = "default") -> Operation:
        """Raises: BadRequest, NotFound, Conflict."""
        ...

    def delete(self, name: str, snapshot: str, *, project: str = "default") -> Operation:
        """Not idempotent. Raises: NotFound, Conflict (busy)."""
        ...

    def restore(self, name: str, snapshot: str, *, project: str = "default",
                stateful: bool = False) -> Operation:
        """Back to the snapshot (a running instance is stopped and started
        again). Raises: BadRequest, NotFound, Conflict."""
        ...


class CopiesAPI(Protocol):
    """What the server and the local driver call on ``engine.copies``."""

    def copy(self, req: InstancesPost, *, project: str = "default") -> Operation:
        """A new instance from ``req.source.source`` (an instance or
        ``INSTANCE/SNAPSHOT``). Not idempotent. Raises: BadRequest,
        NotFound, Conflict."""
        ...

    def rebuild(self, name: str, source: InstanceSource, *,
                project: str = "default") -> Operation:
        """A stopped instance's new, empty upper layer on another image (or
        none). Not idempotent. Raises: BadRequest, NotFound, Conflict."""
class BackupsAPI(Protocol):
    """What the server and the local driver call on ``engine.backups``."""

    def all(self, name: str, *, project: str = "default") -> list[Backup]:
        """The instance's backups, oldest first. Raises: NotFound."""
        ...

    def get(self, name: str, backup: str, *, project: str = "default") -> Backup:
        """Raises: NotFound (the instance or the backup)."""
        ...

    def open(self, name: str, backup: str, *, project: str = "default") -> BinaryIO:
        """The tarball, open for reading (the caller closes it). Raises: NotFound."""
        ...

    def create(self, name: str, backup: str = "", *, project: str = "default",
               expires_at: float = 0.0, instance_only: bool = False,
               optimized_storage: bool = False, compression: str = "",
               since: str = "") -> Operation:
        """Make one (``backup`` "": ``backupN``; ``since``: an increment). Not idempotent.
        Raises: BadRequest, NotFound, Conflict."""
        ...

    def rename(self, name: str, backup: str, new_name: str, *,
               project: str = "default") -> Operation:
        """Raises: BadRequest, NotFound, Conflict."""
        ...

    def delete(self, name: str, backup: str, *, project: str = "default") -> Operation:
        """Not idempotent. Raises: NotFound, Conflict (busy)."""
        ...

    def import_file(self, path: Path, *, name: str = "", pool: str = "",
                    project: str = "default") -> Operation:
        """A new instance from the backup tarball at ``path`` (taken over).
        Raises: BadRequest, NotFound (pool), Conflict (the name is taken)."""
        ...


class TrustAPI(Protocol):
    """What the server and the local driver call on ``engine.trust``."""

    @property
    def server_cert_paths(self) -> tuple[Path, Path]: ...
    def server_certificate(self) -> str:
        """The server certificate (PEM), made on first use. Idempotent."""
        ...

    def server_fingerprint(self) -> str:
        """SHA-256 of the server certificate, hex."""
        ...

    def server_config(self) -> dict[str, str]:
        """The saved server config (``core.https_address``...)."""
        ...

    def check_server_config(self, config: object, *, patch: bool) -> dict[str, str]:
        """The config a PUT (``patch`` False) or PATCH would leave, checked. An empty value removes a key. Nothing is saved."""
        ...

    def save_server_config(self, config: dict[str, str]) -> None:
        """Store ``config`` whole. Idempotent."""
        ...

    def list_certificates(self) -> list[Certificate]:
        """Every trusted certificate."""
        ...

    def get_certificate(self, fingerprint: str) -> Certificate:
        """By fingerprint or a unique prefix of it."""
        ...

    def add_certificate(
        self, certificate: str | bytes, *, name: str = "", type: str = "client"
    ) -> Certificate:
        """Trust ``certificate`` (PEM or base64 DER)."""
        ...

    def delete_certificate(self, fingerprint: str) -> None:
        """Stop trusting a certificate (by fingerprint or unique prefix)."""
        ...

    def is_trusted(self, fingerprint: str) -> bool:
        """Whether a client certificate (by fingerprint) is in the trust store."""
        ...

    def certificate_type(self, fingerprint: str) -> str | None:
        """The type (``client``, ``metrics``) of a trusted certificate; None if untrusted."""
        ...


class MetricsAPI(Protocol):
    """What the server calls on ``engine.metrics``."""

    def text(self, *, project: str | None = None) -> str:
        """LXD's metrics in the Prometheus text exposition (every project, or one)."""
        ...


class ResourcesAPI(Protocol):
    """What the server calls on ``engine.resources``."""

    def get(self) -> dict[str, Any]:
        """LXD's ``Resources`` of the host (CPU, memory, NICs, disks, system)."""
        ...


class InstanceMetadataAPI(Protocol):
    """An instance's metadata.yaml and templates (``engine._inst_metadata``)."""

    def get(self, name: str, *, project: str = "default") -> dict[str, Any]:
        """LXD's ``ImageMetadata`` of the instance. Raises: NotFound, BadRequest."""
        ...

    def put(self, name: str, body: object, *, project: str = "default") -> None:
        """Replace it. Raises: NotFound, BadRequest (nothing written)."""
        ...

    def template_names(self, name: str, *, project: str = "default") -> list[str]:
        """The files of its templates/. Raises: NotFound."""
        ...

    def template_get(self, name: str, path: str, *, project: str = "default") -> bytes:
        """One template file. Raises: BadRequest (a bad name), NotFound."""
        ...

    def template_put(self, name: str, path: str, data: bytes, *,
                     project: str = "default") -> None:
        """Create or replace one. Raises: BadRequest, NotFound."""
        ...

    def template_delete(self, name: str, path: str, *, project: str = "default") -> None:
        """Remove one. Raises: BadRequest, NotFound."""
        ...


class AppsAPI(Protocol):
    """The app-stack keys (``engine._deps``): what a client can ask of them."""

    def start_once(self, name: str, command: list[str], *, project: str = "default",
                   wait_for_lock: float = 0) -> Operation:
        """Start ``name`` (dependencies first) running ``command`` instead of
        its own, this once. Raises: BadRequest, NotFound, Conflict."""
        ...


class OciImagesAPI(Protocol):
    """What the server, the local driver and the registry client call on ``engine.oci``."""

    def import_archive(self, path: Path, ref: str | None = None, *, public: bool = False,
                       aliases: list[str] | None = None, filename: str = "",
                       project: str = "default") -> Operation:
        """Import an OCI layout sent as a tar archive (consumed); the result is the Image."""
        ...

    def import_oci_layout(self, layout: Path, ref: str | None, *, op: Operation,
                          project: str = "default", aliases: list[str] | None = None,
                          source_label: str = "", public: bool = False) -> str:
        """Import the image ``ref`` of a layout directory in ``op``; its fingerprint."""
        ...


class RegistryPullsAPI(Protocol):
    """OCI registries (``source.protocol: oci``): pulls, launches, pushes."""

    def pull(self, src: InstanceSource, *, aliases: list[str] | None = None,
             public: bool = False, project: str = "default") -> Operation:
        """``POST /1.0/images`` from a registry; the result is the Image."""
        ...

    def create_instance(self, req: InstancesPost, *, project: str = "default") -> Operation:
        """``POST /1.0/instances`` whose image is on a registry."""
        ...

    def push(self, fingerprint: str, dest: InstanceSource, *,
             project: str = "default") -> Operation:
        """Push an image to ``dest``'s registry and tag; the result is the manifest digest."""
        ...


class EngineAPI(Protocol):
    """A cove root's services, as ``Engine`` composes them."""

    root: Path

    @property
    def instances(self) -> InstancesAPI: ...
    @property
    def access(self) -> AccessAPI: ...
    @property
    def console(self) -> ConsoleAPI: ...
    @property
    def images(self) -> ImagesAPI: ...
    @property
    def networks(self) -> NetworksAPI: ...
    @property
    def profiles(self) -> ProfilesAPI: ...
    @property
    def storage(self) -> StorageAPI: ...
    @property
    def snapshots(self) -> SnapshotsAPI: ...
    @property
    def copies(self) -> CopiesAPI: ...
    @property
    def publisher(self) -> PublisherAPI: ...
    @property
    def image_pulls(self) -> ImagePullsAPI: ...
    @property
    def oci(self) -> OciImagesAPI: ...
    @property
    def registry_pulls(self) -> RegistryPullsAPI: ...
    @property
    def backups(self) -> BackupsAPI: ...
    @property
    def trust(self) -> TrustAPI: ...
    @property
    def metrics(self) -> MetricsAPI: ...
    @property
    def resources(self) -> ResourcesAPI: ...
    @property
    def projects(self) -> ProjectsAPI: ...
    @property
    def apps(self) -> AppsAPI: ...
    @property
    def metadata(self) -> InstanceMetadataAPI: ...
    @property
    def operations(self) -> Operations: ...
    @property
    def events(self) -> EventBus: ...

    def server_environment(self) -> dict[str, Any]:
        """The ``environment`` part of ``GET /1.0``."""
        ...

    def startup(self) -> None:
        """Reconcile and autostart; once, before serving."""
        ...

    def close(self) -> None:
        """Let go of the root (containers keep running). Idempotent."""
        ...
