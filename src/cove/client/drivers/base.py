"""The Driver interface: what every driver offers, and how its calls run.

Design notes:

* A driver talks to one host (cove, LXD or Incus). What the public methods
  *mean* (convergence, undo, retries, waiting) is written once, as generator
  *flows* (``drivers._flows`` for instances, ``drivers._resources`` for
  images, aliases, networks, operations and certificates) that yield small
  *steps* (``drivers._steps``) and get their results back. A driver only
  turns steps into I/O: HTTP requests (``RestDriver``), ``lxc``/``cove``
  commands (``CliDriver``) or engine calls (``LocalDriver``). The asyncio
  driver runs the very same flows with ``await``, so sync and async can
  never drift apart: no algorithm exists twice.
* Convergent, not imperative (as the lxd-common gem): deleting what is gone,
  starting what runs, stopping what is stopped, creating what exists all
  succeed and do nothing. Real failures raise ``cove.model.errors`` classes
  with the server's text.
* One surface: every resource of the API is here with the same names on
  every driver, and returns the ``cove.api`` report classes (``container()``
  and ``container_state()`` keep returning the wire dicts they always did).
  The one call a command line cannot make, ``events()`` (a stream that the
  ``cove`` command has no way to print), is on ``EventDriver``, the base of
  the drivers that can; ``CliDriver`` does not have it, rather than failing.
"""

from __future__ import annotations

import hashlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cove.client._flow import drive
from cove.client.drivers import _backup_flows as backup_flows
from cove.client.drivers import _copy_flows as copy_flows
from cove.client.drivers import _host as host
from cove.client.drivers import _profiles as profile_flows
from cove.client.drivers import _publish_flows as publish_flows
from cove.client.drivers import _resources as resources
from cove.client.drivers import _snapshot_flows as snapshot_flows
from cove.client.drivers import _storage_flows as storage
from cove.client.drivers._event_stream import EventStream
from cove.client.drivers._flows import (
    PUT_FIELDS,
    WAIT_TARGETS,
    first_global_address,
    flows,
    image_source,
    ready_command,
    status_of,
)
from cove.client.drivers._steps import (
    Action,
    Create,
    Delete,
    Flow,
    GetInstance,
    GetState,
    HashFile,
    ListImages,
    Progress,
    ProgressCallback,
    RunCommand,
    Sleep,
    Step,
    Update,
)

if TYPE_CHECKING:
    from typing import Self

    from cove import api
    from cove.client.stack import Stack
    from cove.client.transports.base import Transport

__all__ = [
    "PUT_FIELDS",
    "WAIT_TARGETS",
    "Action",
    "Create",
    "Delete",
    "Driver",
    "EventDriver",
    "EventStream",
    "Flow",
    "GetInstance",
    "GetState",
    "ListImages",
    "Progress",
    "ProgressCallback",
    "RunCommand",
    "Sleep",
    "Step",
    "Update",
    "first_global_address",
    "flows",
    "image_source",
    "ready_command",
    "resources",
    "sha256_of",
    "status_of",
]

T = TypeVar("T")


def sha256_of(path: str) -> str:
    """The SHA-256 of a local file, hex (an image tarball's fingerprint)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Driver(ABC):
    """One host: cove, LXD or Incus, reached over REST, a CLI, or in-process.

    Every method is convergent (see the module notes) and raises the
    ``cove.model.errors`` classes: ``BadRequest`` for a bad name or option
    (before anything is made), ``NotFound`` for a missing container,
    image, alias, network, operation or certificate, ``Conflict`` when
    another operation holds the container past ``flows.busy_wait`` or a
    name is taken by something else, ``Forbidden`` for an untrusted client,
    ``Timeout`` for a wait that ran out, ``InternalError`` for the server's
    own failures; ``cove.client.ConnectionFailed`` when the host cannot be
    reached.
    """

    # -- what each driver implements -------------------------------------------
    @abstractmethod
    def _do(self, step: Step) -> Any:
        """Perform one step (see the step classes for what each returns)."""

    @abstractmethod
    def transport_for(self, name: str) -> Transport:
        """A transport into container ``name`` (it need not be routable)."""

    def close(self) -> None:
        """Let go of connections (the driver may not be used afterwards)."""

    # -- steps every driver performs the same way -------------------------------
    def _perform(self, step: Step) -> Any:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, HashFile):
            return sha256_of(step.path)
        return self._do(step)

    def _command_in(self, step: RunCommand) -> tuple[int, bytes]:
        """Run ``step.command`` through the container's transport; a missing
        program reads as exit 127, as from a shell."""
        from cove.client._exec import CommandNotFound

        try:
            r = self.transport_for(step.name).execute(list(step.command))
        except CommandNotFound:
            return 127, b""
        return r.exit_code, r.stdout

    def _run(self, flow: Flow[T]) -> T:
        return drive(flow, self._perform)

    # -- instances ------------------------------------------------------------------
    def create_container(self, name: str, *, alias: str | None = None,
                         fingerprint: str | None = None,
                         properties: Mapping[str, str] | None = None,
                         server: str | None = None, protocol: str | None = None,
                         profiles: Sequence[str] | None = None,
                         config: Mapping[str, Any] | None = None,
                         devices: Mapping[str, Mapping[str, str]] | None = None,
                         autostart: bool = True,
                         progress: ProgressCallback | None = None) -> str:
        """Make container ``name`` from an image unless it exists; start it if
        ``autostart``. Returns the name.

        One of ``alias``, ``fingerprint`` (a prefix will do) or ``properties``
        names the image; ``server``/``protocol`` pull it from another host.
        ``profiles`` default to the host's (``['default']``). An existing
        container is left as it is (only started when ``autostart``).

        Raises:
            BadRequest: a bad name, option, config key or value.
            NotFound: no such image (or profile).
        """
        return self._run(flows.create_container(
            name, alias=alias, fingerprint=fingerprint, properties=properties, server=server,
            protocol=protocol, profiles=profiles, config=config, devices=devices,
            autostart=autostart, progress=progress))

    def update_container(self, name: str, *, config: Mapping[str, Any] | None = None,
                         devices: Mapping[str, Mapping[str, str] | None] | None = None,
                         profiles: Sequence[str] | None = None) -> None:
        """Apply the given config keys, devices and profiles (others are kept).

        A ``None`` value removes a config key or a device.

        Raises:
            NotFound: no such container.
            BadRequest: a bad key or value (nothing is changed).
        """
        self._run(flows.update(name, config=config, devices=devices, profiles=profiles))

    def start_container(self, name: str, *, progress: ProgressCallback | None = None) -> None:
        """Make ``name`` run (a frozen one is thawed). Running already: nothing."""
        self._run(flows.start(name, progress=progress))

    def stop_container(self, name: str, *, force: bool = False, timeout: float = 0,
                       retry_interval: float | None = None,
                       retry_count: int | None = None) -> None:
        """Make ``name`` stopped. Stopped already: nothing.

        Without ``force`` the container's init is asked to shut down (LXD
        sends SIGPWR, cove its ``cove.halt`` signal) and the call waits:
        ``timeout`` seconds in all (0: as long as it takes), asking again
        every ``retry_interval`` seconds up to ``retry_count`` more times.
        ``force`` kills it at once.

        Raises:
            Timeout: it did not stop cleanly in time (it is left running).
            NotFound: no such container.
        """
        self._run(flows.stop(name, force=force, timeout=timeout,
                             retry_interval=retry_interval, retry_count=retry_count))

    def delete_container(self, name: str) -> None:
        """Delete ``name``, killing it first if it runs. Gone already: nothing."""
        self._run(flows.delete(name))

    def container_status(self, name: str) -> str:
        """``'running'``, ``'stopped'``, ``'frozen'`` or ``'error'``.

        Raises:
            NotFound: no such container.
        """
        return self._run(flows.status(name))

    def container(self, name: str) -> dict[str, Any]:
        """The container's LXD object: ``config``, ``devices``, ``profiles``,
        ``status``, ``expanded_config``... (a fresh copy on every call)."""
        return self._run(flows.get(name))

    def container_state(self, name: str) -> dict[str, Any]:
        """The LXD state object: ``status``, ``network`` (addresses),
        ``memory``, ``processes``, ``pid``, ``cpu``."""
        return self._run(flows.state(name))

    def wait_for(self, name: str, what: str, timeout: float = 60) -> Any:
        """Wait until ``name`` has what was asked for, and return it.

        ``'ip'``: a global address (returned); ``'cloud_init'``: cloud-init
        finished (``/run/cloud-init/result.json`` exists; its errors raise);
        ``'ready'``: it runs and its ``cove.ready`` command (or
        ``user.cove.ready``) exits 0, returns True.

        Raises:
            Timeout: not within ``timeout`` seconds (the message says why).
            NotFound: no such container.
        """
        return self._run(flows.wait_for(name, what, timeout))


    def containers(self) -> list[api.Instance]:
        """Every container on the host."""
        return self._run(resources.containers())

    def rename_container(self, name: str, new_name: str) -> None:
        """Rename the stopped container ``name`` to ``new_name``.

        Convergent: ``name`` gone and ``new_name`` there is taken as done.

        Raises:
            NotFound: neither exists.
            BadRequest: a bad name, or the container runs (stop it first).
            Conflict: ``new_name`` is taken by another container.
        """
        self._run(flows.rename(name, new_name))

    # -- images and aliases ---------------------------------------------------------
    def images(self) -> list[api.Image]:
        """Every image on the host."""
        return self._run(resources.images())

    def image(self, fingerprint: str) -> api.Image:
        """The image with this fingerprint (a unique prefix will do).

        Raises:
            NotFound: no such image.
        """
        return self._run(resources.image(fingerprint))

    def import_image(self, path: str | os.PathLike[str], *, aliases: Sequence[str] = (),
                     progress: ProgressCallback | None = None) -> api.Image:
        """Upload the image tarball at local ``path`` and name it ``aliases``;
        returns the image.

        Convergent: an image with the same fingerprint (the file's SHA-256)
        is not uploaded again; the aliases it lacks are added. ``progress``
        gets the upload's and the host's reports.

        Raises:
            NotFound: no such local file.
            BadRequest: a bad alias name, or a tarball the host refuses.
            Conflict: an alias names another image (checked before uploading).
        """
        return self._run(resources.import_image(path, aliases=aliases, progress=progress))

    def update_image(self, fingerprint: str, *, properties: Mapping[str, Any] | None = None,
                     public: bool | None = None) -> None:
        """Merge ``properties`` into the image's and set ``public``; None keeps.

        Raises:
            NotFound: no such image.
        """
        self._run(resources.update_image(fingerprint, properties=properties, public=public))

    def delete_image(self, fingerprint: str) -> None:
        """Delete the image. Gone already: nothing.

        Raises:
            BadRequest: cove refuses an image its instances use (LXD does not).
        """
        self._run(resources.delete_image(fingerprint))

    def aliases(self) -> list[api.ImageAliasesEntry]:
        """Every image alias on the host."""
        return self._run(resources.aliases())

    def alias(self, name: str) -> api.ImageAliasesEntry:
        """The alias ``name``.

        Raises:
            NotFound: no such alias.
        """
        return self._run(resources.alias(name))

    def create_alias(self, name: str, target: str, description: str = "") -> api.ImageAliasesEntry:
        """Name image ``target`` (a fingerprint or a unique prefix) ``name``;
        returns the alias. Naming it so already: nothing.

        Raises:
            NotFound: no such image.
            Conflict: ``name`` names another image.
        """
        return self._run(resources.create_alias(name, target, description))

    def rename_alias(self, name: str, new_name: str) -> None:
        """Rename an alias. ``name`` gone and ``new_name`` there: nothing.

        Raises:
            NotFound: neither exists.
        """
        self._run(resources.rename_alias(name, new_name))

    def delete_alias(self, name: str) -> None:
        """Delete an alias (not its image). Gone already: nothing."""
        self._run(resources.delete_alias(name))

    # -- networks ---------------------------------------------------------------------
    def networks(self) -> list[api.Network]:
        """Every network the host lists (LXD lists unmanaged interfaces too,
        ``managed`` False; cove only its own)."""
        return self._run(resources.networks())

    def network(self, name: str) -> api.Network:
        """The network ``name``.

        Raises:
            NotFound: no such network.
        """
        return self._run(resources.network(name))

    def network_state(self, name: str) -> api.NetworkState:
        """The network's runtime state: addresses, counters, MTU, link state.

        Raises:
            NotFound: no such network.
        """
        return self._run(resources.network_state(name))

    def network_leases(self, name: str) -> list[api.NetworkLease]:
        """The addresses the network has handed out.

        Raises:
            NotFound: no such network.
        """
        return self._run(resources.network_leases(name))

    def create_network(self, name: str, *, config: Mapping[str, Any] | None = None,
                       description: str = "", type: str = "bridge") -> api.Network:
        """Make network ``name`` unless it exists; returns it. An existing
        one of the same type is left as it is.

        Raises:
            BadRequest: a bad name, key or value (nothing is made).
            Conflict: it exists with another type.
        """
        return self._run(resources.create_network(name, config=config,
                                                  description=description, type=type))

    def update_network(self, name: str, *, config: Mapping[str, Any] | None = None,
                       description: str | None = None) -> None:
        """Set the given config keys (a None value removes one; others are
        kept) and, unless None, the description.

        Raises:
            NotFound: no such network.
            BadRequest: a bad key or value (nothing is changed).
        """
        self._run(resources.update_network(name, config=config, description=description))

    def delete_network(self, name: str) -> None:
        """Delete the network. Gone already: nothing.

        Raises:
            BadRequest: an instance or a profile still uses it.
        """
        self._run(resources.delete_network(name))

    # -- profiles -------------------------------------------------------------------------
    def profiles(self) -> list[api.Profile]:
        """Every profile, with ``used_by``."""
        return self._run(profile_flows.profiles())

    def profile(self, name: str) -> api.Profile:
        """The profile ``name``.

        Raises:
            NotFound: no such profile.
        """
        return self._run(profile_flows.profile(name))

    def create_profile(self, name: str, *, config: Mapping[str, Any] | None = None,
                       devices: Mapping[str, Any] | None = None,
                       description: str = "") -> api.Profile:
        """Make profile ``name`` unless it exists (an existing one is left as
        it is); returns it.

        Raises:
            BadRequest: a bad name, key or device (nothing is made).
        """
        return self._run(profile_flows.create_profile(name, config=config, devices=devices,
                                                      description=description))

    def update_profile(self, name: str, *, config: Mapping[str, Any] | None = None,
                       devices: Mapping[str, Any] | None = None,
                       description: str | None = None) -> None:
        """Set the given config keys and devices (a None value removes one; a
        device is replaced whole; the rest is kept) and, unless None, the
        description. Instances that use the profile follow (live where the
        key is live).

        Raises:
            NotFound: no such profile.
            BadRequest: a bad key or device, or a change that would make an
                instance that uses it invalid (nothing is changed).
        """
        self._run(profile_flows.update_profile(name, config=config, devices=devices,
                                               description=description))

    def rename_profile(self, name: str, new_name: str) -> None:
        """Rename a profile (instances follow). Done already: nothing.

        Raises:
            NotFound: no such profile.  Conflict: ``new_name`` is taken.
            BadRequest/Forbidden: ``default`` cannot be renamed.
        """
        self._run(profile_flows.rename_profile(name, new_name))

    def delete_profile(self, name: str) -> None:
        """Delete a profile. Gone already: nothing.

        Raises:
            BadRequest: an instance uses it.  Forbidden: it is ``default``.
        """
        self._run(profile_flows.delete_profile(name))
    # -- publish and export ---------------------------------------------------------------
    def publish(self, source: str, *, aliases: Sequence[str] = (),
                properties: Mapping[str, str] | None = None,
                public: bool = False) -> api.Image:
        """Publish instance ``source`` (or snapshot ``NAME/SNAP``) as an
        image named ``aliases``; returns the image. Not convergent: each
        call makes a new image.

        Raises:
            NotFound: no such instance or snapshot.
            BadRequest: a bad name.  Conflict: an alias exists already
                (checked before publishing).
        """
        return self._run(publish_flows.publish(source, aliases=aliases,
                                               properties=properties, public=public))

    def export_image(self, ref: str, directory: str | os.PathLike[str]) -> list[str]:
        """Write image ``ref`` (alias or fingerprint) as LXD's image
        file(s) into the local ``directory``; returns their paths (one for a
        unified image, ``meta-FP...`` and ``FP...`` for a split one).

        Raises:
            NotFound: no such image or local directory.
        """
        return self._run(publish_flows.export_image(ref, directory))

    # -- snapshots ----------------------------------------------------------------------
    def snapshots(self, name: str) -> list[api.InstanceSnapshot]:
        """The instance's snapshots, oldest first. Raises: NotFound."""
        return self._run(snapshot_flows.snapshots(name))

    def snapshot(self, name: str, snap: str) -> api.InstanceSnapshot:
        """Raises: NotFound (the instance or the snapshot)."""
        return self._run(snapshot_flows.snapshot(name, snap))

    def create_snapshot(self, name: str, snap: str) -> api.InstanceSnapshot:
        """Take snapshot ``snap`` unless it exists (then it is left as it is).

        Raises: NotFound (the instance), BadRequest (a bad name).
        """
        return self._run(snapshot_flows.create_snapshot(name, snap))

    def restore_snapshot(self, name: str, snap: str) -> None:
        """Put the instance back to ``snap`` (a running one is stopped and
        started again). Not idempotent. Raises: NotFound."""
        self._run(snapshot_flows.restore_snapshot(name, snap))

    def rename_snapshot(self, name: str, snap: str, new_name: str) -> None:
        """``snap`` gone and ``new_name`` there: nothing. Raises: NotFound."""
        self._run(snapshot_flows.rename_snapshot(name, snap, new_name))

    def delete_snapshot(self, name: str, snap: str) -> None:
        """Gone already: nothing. Raises: NotFound (the instance)."""
        self._run(snapshot_flows.delete_snapshot(name, snap))

    # -- copies and rebuilds ---------------------------------------------------------
    def copy(self, source: str, name: str, *, instance_only: bool = False,
             profiles: list[str] | None = None,
             config: Mapping[str, str] | None = None) -> api.Instance:
        """Copy ``source`` (an instance, or ``INSTANCE/SNAPSHOT``) to a new
        stopped instance ``name``, with the source's snapshots unless
        ``instance_only``; ``profiles`` None keeps the source's, ``config``
        is laid over the source's.

        Convergent: an instance ``name`` that exists is left as it is.

        Raises: NotFound (the source), BadRequest (a bad name or key).
        """
        return self._run(copy_flows.copy_instance(source, name, instance_only=instance_only,
                                                  profiles=profiles, config=config))

    def rebuild(self, name: str, image: str = "") -> None:
        """Give the stopped instance ``name`` a new root filesystem from
        ``image`` (alias or fingerprint; "": an empty one); its config,
        devices and snapshots stay. Not idempotent.

        Raises: NotFound, BadRequest (it runs: stop it first).
        """
        self._run(copy_flows.rebuild_instance(name, image))
    # -- backups ------------------------------------------------------------------------
    def backups(self, name: str) -> list[api.InstanceBackup]:
        """The instance's backups kept on the host. Raises: NotFound."""
        return self._run(backup_flows.backups(name))

    def backup(self, name: str, backup: str) -> api.InstanceBackup:
        """Raises: NotFound (the instance or the backup)."""
        return self._run(backup_flows.backup(name, backup))

    def create_backup(self, name: str, backup: str, *,
                      instance_only: bool = False) -> api.InstanceBackup:
        """Make backup ``backup`` unless it exists (then it is left as it is).
        Raises: NotFound (the instance), BadRequest (a bad name)."""
        return self._run(backup_flows.create_backup(name, backup, instance_only=instance_only))

    def delete_backup(self, name: str, backup: str) -> None:
        """Gone already: nothing. Raises: NotFound (the instance)."""
        self._run(backup_flows.delete_backup(name, backup))

    def export_instance(self, name: str, path: str, *, instance_only: bool = False) -> None:
        """``lxc export``: the instance (and its snapshots) as LXD's backup
        tarball at ``path``, a file here. Not idempotent (a new backup each
        time). Raises: NotFound."""
        self._run(backup_flows.export_instance(name, path, instance_only=instance_only))

    def import_instance(self, path: str, name: str) -> None:
        """``lxc import``: a new instance ``name`` from the backup tarball at
        ``path``. Raises: Conflict (the name is taken), BadRequest (not a backup)."""
        self._run(backup_flows.import_instance(path, name))

    # -- storage ------------------------------------------------------------------------
    def storage_pools(self) -> list[api.StoragePool]:
        """Every storage pool (cove has one, ``default``)."""
        return self._run(storage.storage_pools())

    def volumes(self, pool: str) -> list[api.StorageVolume]:
        """The custom volumes of ``pool``.

        Raises:
            NotFound: no such pool.
        """
        return self._run(storage.volumes(pool))

    def volume(self, pool: str, name: str) -> api.StorageVolume:
        """The custom volume ``name`` of ``pool``.

        Raises:
            NotFound: no such pool or volume.
        """
        return self._run(storage.volume(pool, name))

    def create_volume(self, pool: str, name: str, *, config: Mapping[str, Any] | None = None,
                      description: str = "") -> api.StorageVolume:
        """Make custom volume ``name`` unless it exists (then it is left as it
        is); returns it.

        Raises:
            NotFound: no such pool.  BadRequest: a bad name, key or value.
        """
        return self._run(storage.create_volume(pool, name, config=config,
                                               description=description))

    def update_volume(self, pool: str, name: str, *, config: Mapping[str, Any] | None = None,
                      description: str | None = None) -> None:
        """Set the given config keys (a None value removes one) and, unless
        None, the description.

        Raises:
            NotFound: no such pool or volume.  BadRequest: a bad key or value.
        """
        self._run(storage.update_volume(pool, name, config=config, description=description))

    def rename_volume(self, pool: str, name: str, new_name: str) -> None:
        """Rename a volume (instances' devices follow). ``name`` gone and
        ``new_name`` there: nothing.

        Raises:
            NotFound: neither exists.  BadRequest: a running instance uses it.
        """
        self._run(storage.rename_volume(pool, name, new_name))

    def delete_volume(self, pool: str, name: str) -> None:
        """Delete a volume and its data. Gone already: nothing.

        Raises:
            BadRequest: an instance uses it.
        """
        self._run(storage.delete_volume(pool, name))

    def attach_disk(self, name: str, device: str, disk: Mapping[str, Any]) -> None:
        """Give instance ``name`` the disk device ``device`` (``disk``: its
        keys, e.g. ``{"source": "/srv/data", "path": "/data"}`` or ``{"pool":
        "default", "source": "vol1", "path": "/data"}``). The same device
        there already: nothing. A running instance gets it mounted at once.

        Raises:
            NotFound: no such instance or volume.
            Conflict: a device of that name with other keys.
            BadRequest: a bad key or value.
        """
        self._run(storage.attach_disk(name, device, disk))

    def detach_disk(self, name: str, device: str) -> None:
        """Remove device ``device`` of instance ``name``. Gone already: nothing.

        Raises:
            NotFound: no such instance.
        """
        self._run(storage.detach_disk(name, device))

    # -- operations -----------------------------------------------------------------------
    def operations(self) -> list[api.Operation]:
        """The operations the host keeps: running ones, and ended ones for a
        while (LXD 5 s, cove 5 min)."""
        return self._run(resources.operations())

    def operation(self, id: str) -> api.Operation:
        """The operation ``id``.

        Raises:
            NotFound: no such operation (or it ended long ago).
        """
        return self._run(resources.operation(id))

    def wait_operation(self, id: str, timeout: float | None = None) -> api.Operation:
        """Wait until operation ``id`` ends (``timeout`` seconds, None: no
        limit; hosts count whole seconds) and return it.

        Raises:
            Timeout: it still runs.
            NotFound: no such operation.
            CoveError: it failed (the class of its error where the host says).
        """
        return self._run(resources.wait_operation(id, timeout))

    def cancel_operation(self, id: str) -> None:
        """Cancel operation ``id``. Ended or gone already: nothing.

        Raises:
            CoveError: it runs and cannot be cancelled (the host's refusal).
        """
        self._run(resources.cancel_operation(id))

    # -- trusted certificates ---------------------------------------------------------------
    def certificates(self) -> list[api.Certificate]:
        """The client certificates the host trusts."""
        return self._run(resources.certificates())

    def certificate(self, fingerprint: str) -> api.Certificate:
        """A trusted certificate by fingerprint (a unique prefix will do).

        Raises:
            NotFound: no such certificate.
        """
        return self._run(resources.certificate(fingerprint))

    def add_certificate(self, pem: str, *, name: str = "") -> api.Certificate:
        """Trust the client certificate ``pem``; returns it. Trusted already:
        nothing (its name is kept).

        Raises:
            BadRequest: ``pem`` is no certificate.
        """
        return self._run(resources.add_certificate(pem, name=name))

    def delete_certificate(self, fingerprint: str) -> None:
        """Stop trusting a certificate. Gone already: nothing."""
        self._run(resources.delete_certificate(fingerprint))

    # -- the host ------------------------------------------------------------------------------
    def resources(self) -> dict[str, Any]:
        """The host's CPUs, memory, network cards and disks (LXD's ``Resources``)."""
        return self._run(host.resources())

    def metrics(self, project: str | None = None) -> str:
        """LXD's metrics of the running instances and the daemon, Prometheus
        text (``cove.api.parse_metrics`` reads it); ``project``: its instances only."""
        return self._run(host.metrics(project))

    # -- stacks (Compose files; see ``cove.client.stack``) --------------------------
    def stack(self, source: str | os.PathLike[str] | Mapping[str, Any] | None = None, *,
              name: str | None = None, env: Mapping[str, str] | None = None) -> Stack:
        """A stack on this host from a Compose file's path or a dict (checked
        at once: BadRequest names the key and line), or by ``name`` alone
        (for ``down`` and ``ps``). Nothing is sent until ``up``/``down``/``ps``."""
        from cove.client.stack import Stack

        return Stack(self, source, name=name, env=env)

    def stacks(self) -> dict[str, dict[str, int]]:
        """Every stack on the host: its instances counted by status."""
        from cove.client.stack import names

        return self._run(names())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventDriver(Driver):
    """A driver that can also stream the host's events (all but ``CliDriver``)."""

    @abstractmethod
    def events(self, types: Sequence[str] = ("lifecycle", "operation")) -> EventStream:
        """Subscribe to the host's events of ``types`` (``lifecycle``,
        ``operation``, ``logging``). The subscription is open when this
        returns, so what happens afterwards is seen; close the stream when
        done.

        Raises:
            BadRequest: an unknown type.
        """
