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

from cove.api import InstanceExecPost, InstancesPost
from cove.engine._exec_out import Reader
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.types import ExecSession, FileInfo
from cove.model.records import Alias, Image, Instance, Lease, Network
from cove.model.trust import Certificate

__all__ = [
    "AccessAPI",
    "EngineAPI",
    "ImagesAPI",
    "InstancesAPI",
    "NetworksAPI",
    "ProfilesAPI",
    "TrustAPI",
]


class InstancesAPI(Protocol):
    """What the server and the local driver call on ``engine.instances``."""

    def all(self) -> list[Instance]:
        """Every instance, with its expanded devices."""
        ...

    def get(self, name: str) -> Instance:
        """One instance, with its expanded devices. Raises: NotFound."""
        ...

    def state(self, name: str) -> dict[str, Any]:
        """LXD's ``InstanceState``: status, pid, counters, network. Raises: NotFound."""
        ...

    def create(self, req: InstancesPost, *, wait_for_lock: float = 0) -> Operation:
        """Make an instance (and start it if ``req.start``), as an operation. Not idempotent."""
        ...

    def change_state(
        self,
        name: str,
        action: str,
        *,
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
        config: dict[str, Any] | None = None,
        devices: dict[str, dict[str, str]] | None = None,
        profiles: list[str] | None = None,
        description: str | None = None,
        ephemeral: bool | None = None,
        patch: bool = False,
    ) -> None:
        """Replace (PUT) or merge (PATCH) the given fields; limits apply live."""
        ...

    def rename(self, name: str, new_name: str) -> Operation:
        """Rename a stopped instance, as an operation. Not idempotent."""
        ...

    def delete(self, name: str, *, force: bool = False, wait_for_lock: float = 0) -> Operation:
        """Delete an instance (``force``: stopping it first), as an operation. Not idempotent (deleting what is gone is the client's success)."""
        ...


class AccessAPI(Protocol):
    """What the server and the local driver call on ``engine.access``."""

    def exec(self, name: str, req: InstanceExecPost) -> ExecSession:
        """Start ``req.command`` in the running instance ``name``; the caller owns the session (and must ``close()`` it)."""
        ...

    def exec_detached(self, name: str, req: InstanceExecPost, *, record: bool) -> Operation:
        """Run ``req.command`` with no websockets, as an operation whose metadata gets ``return`` (and ``output``, the log paths, when ``record``). Not idempotent."""
        ...

    def file_get(self, name: str, path: str) -> FileInfo:
        """What is at ``path`` (symlinks not followed); a file's ``fd`` is the caller's to close."""
        ...

    def file_put(
        self,
        name: str,
        path: str,
        *,
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

    def file_delete(self, name: str, path: str) -> None:
        """Remove a file, symlink or empty directory. Not idempotent."""
        ...

    def console_log(self, name: str) -> os.PathLike[str]:
        """Path of the raw (k8s-file) console log; use ``read_console`` for text. Raises: NotFound."""
        ...

    def read_console(self, name: str, offset: int = 0) -> tuple[bytes, int]:
        """Plain output of the instance from raw byte ``offset`` on, and the new offset."""
        ...

    def log_names(self, name: str) -> list[str]:
        """``console.log``, then the recorded exec outputs. Raises: NotFound."""
        ...

    def log_reader(self, name: str, file: str) -> Reader:
        """A reader of one log (``console.log`` as plain text)."""
        ...

    def delete_log(self, name: str, file: str) -> None:
        """Remove a recorded exec output. Not idempotent."""
        ...


class ImagesAPI(Protocol):
    """What the server and the local driver call on ``engine.images``."""

    def all(self) -> list[Image]:
        """Every image, with its aliases."""
        ...

    def get(self, fingerprint: str) -> Image:
        """By full fingerprint or a unique prefix."""
        ...

    def resolve(self, ref: str) -> Image:
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
    ) -> None:
        """Merge (``patch``) or replace an image's properties and public flag. Idempotent."""
        ...

    def delete(self, fingerprint: str) -> Operation:
        """Remove an image (an operation); its layers go once no instance uses them."""
        ...

    def list_aliases(self) -> list[Alias]: ...
    def get_alias(self, name: str) -> Alias:
        """Raises: NotFound."""
        ...

    def add_alias(self, name: str, target: str, description: str = "") -> None:
        """Raises: BadRequest (name), NotFound (target), Conflict (exists)."""
        ...

    def update_alias(self, name: str, target: str, description: str = "") -> None:
        """Point ``name`` at ``target``. Idempotent. Raises: NotFound."""
        ...

    def rename_alias(self, name: str, new_name: str) -> None:
        """Raises: BadRequest (name), NotFound, Conflict (new name taken)."""
        ...

    def delete_alias(self, name: str) -> None:
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

    def devices(self, profile: str) -> dict[str, dict[str, str]]:
        """A profile's devices (``{}`` for an unknown one)."""
        ...

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """The devices ``inst`` runs with."""
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


class EngineAPI(Protocol):
    """A cove root's services, as ``Engine`` composes them."""

    root: Path

    @property
    def instances(self) -> InstancesAPI: ...
    @property
    def access(self) -> AccessAPI: ...
    @property
    def images(self) -> ImagesAPI: ...
    @property
    def networks(self) -> NetworksAPI: ...
    @property
    def profiles(self) -> ProfilesAPI: ...
    @property
    def trust(self) -> TrustAPI: ...
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
