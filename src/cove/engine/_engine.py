"""Engine: the composition root of one cove root (COVE_DIR).

Design note: the engine is a set of services, each an object with its own
state and lock, each handed only the collaborators it needs (through the
small ``Protocol``s of ``cove.engine.ports`` where a fake is useful):

* ``instances`` — the lifecycle (create, start, stop, update, rename, delete);
* ``access`` — exec, files, the console log and recorded exec outputs;
* ``images`` — images and aliases;
* ``networks`` — networks, with a registry of network types, and
  ``profiles`` — profiles and the expansion of an instance's config and devices;
* ``snapshots`` — instance snapshots (``_snapshots``);
* ``copies`` — copies of instances and snapshots, rebuilds (``_copies``);
* ``apps`` — the app-stack keys: dependencies, readiness, health, restarts (``_deps``);
* ``backups`` — instance backups and importing them (``_backups``);
* ``storage`` — the default pool, custom volumes, disk devices' mounts;
* ``trust`` — the server's certificate and config, trusted clients;
* ``metrics`` and ``resources`` — ``/1.0/metrics`` and ``/1.0/resources``;
* ``operations`` and ``events`` — long actions and the event bus.

This class only builds and wires them, and runs startup and shutdown. The
server and the local driver call the same service methods; no behaviour
lives only in an HTTP handler. Quick calls are synchronous; long ones
return an already-started ``Operation``; validation errors are raised
before any operation exists, so a bad request makes nothing.

Layout of a root::

    cove.db                 state (SQLite, WAL)
    images/<fp>/rootfs      image layers (read-only lower dirs)
    instances/<name>/       upper/, work/, rootfs/ (overlay mount), config.json,
                            console.log (conmon's k8s-file log), logs/ (exec outputs),
                            snapshots/<id>/upper (``_snapshots``), backups/<id>
                            (tarballs, ``_backups``), empty/ (the lower layer of an
                            instance imported from a backup)
    run/                    runtime state (runc/, exits/, pids/); may vanish
    tmp/                    uploads in flight
    downloads/              partial downloads from image servers, resumed (``_image_pull``)
    storage/custom/<vol>/   custom storage volumes (``_storage``)
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

from cove import __version__
from cove.engine._access import Access
from cove.engine._backups import Backups
from cove.engine._console import Console
from cove.engine._copies import Copies
from cove.engine._deps import AppStack
from cove.engine._exec_stopped import StoppedExec
from cove.engine._image_pull import ImagePulls
from cove.engine._images import Images
from cove.engine._inst_metadata import InstanceMetadata
from cove.engine._instances import Instances
from cove.engine._metrics import Metrics
from cove.engine._net_base import NetContext
from cove.engine._networks import Networks
from cove.engine._nics import InstanceNetworks
from cove.engine._oci_import import OciImages
from cove.engine._probes import Prober
from cove.engine._profiles import DefaultNetwork, Profiles
from cove.engine._projects import Projects
from cove.engine._proxies import Forwarders
from cove.engine._publish import Publisher
from cove.engine._reconcile import Reconciler
from cove.engine._registry_pull import RegistryPulls
from cove.engine._resources import Resources
from cove.engine._rootfs import Rootfs
from cove.engine._runs import Paths, RunTable
from cove.engine._snapshot_schedule import SnapshotScheduler
from cove.engine._snapshots import Snapshots
from cove.engine._storage import Storage
from cove.engine._trust import Trust
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.host import proc
from cove.model.config import parse_size
from cove.model.errors import BadRequest, NotFound
from cove.model.trust import MAX_UNPACK_KEY
from cove.network import NetworkHost
from cove.runtime import RUNTIMES, Runc
from cove.storage.images import ImageStore
from cove.store import Store

__all__ = ["Engine"]


class Engine:
    """Owns ``root`` (see module note). Thread-safe."""

    def __init__(self, root: Path, *, runtime: Runc | None = None) -> None:
        proc.become_subreaper()
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        for sub in ("images", "instances", "tmp", "run"):
            (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        if runtime is None:
            name = os.environ.get("COVE_RUNTIME", "runc")
            if name not in RUNTIMES:
                raise BadRequest(f"Unknown runtime {name!r}: one of {', '.join(RUNTIMES)}")
            runtime = RUNTIMES[name](self.root / "run")
        self.runtime = runtime
        self.store = Store(self.root / "cove.db")
        self.events = EventBus()
        self.operations = Operations(on_change=self._operation_event)
        clock = time.time
        self.projects = Projects(self.store, self.operations, self.events)
        paths = Paths(self.root)
        runs = RunTable()
        self.images = Images(self.store, ImageStore(self.root / "images"), self.operations,
                             self.events, clock, max_unpack=self._max_unpack,
                             image_project=self.projects.images_project)
        self.oci = OciImages(self.images, self.operations, clock)  # OCI layouts, registries
        default_network = DefaultNetwork(self.store)
        self.profiles = Profiles(self.store, default_network, self.events)
        self.networks = Networks(
            NetContext(store=self.store, host=NetworkHost(self.root), paths=paths,
                       clock=clock),
            self.events, default_network, self.profiles, runs.running)
        self._rootfs = rootfs = Rootfs(paths, runs, self.store, self.images)
        self.storage = Storage(self.root, self.store, self.profiles, self.events, clock)
        self._runs = runs
        self._nics = InstanceNetworks(self.networks, self.profiles,
                                      Forwarders(self.root, runs))
        self.instances = Instances(
            store=self.store, runtime=runtime, paths=paths, runs=runs, rootfs=rootfs,
            images=self.images, profiles=self.profiles,
            network=self._nics,
            operations=self.operations, events=self.events, clock=clock,
            nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[1], projects=self.projects,
            disks=self.storage)
        self.profiles.bind(self.instances)
        self.metadata = InstanceMetadata(store=self.store, paths=paths, images=self.images,
                                         events=self.events)
        self.profiles.bind_projects(self.projects.profiles_project)
        self.projects.bind(self.profiles)
        self.storage.bind_projects(self.projects.volumes_project)
        stopped_exec = StoppedExec(store=self.store, runtime=runtime, paths=paths,
                                   rootfs=rootfs, operations=self.operations,
                                   specs=self.instances, network=self._nics)
        self.access = Access(store=self.store, runtime=runtime, paths=paths, rootfs=rootfs,
                             operations=self.operations, profiles=self.profiles,
                             stopped=stopped_exec)
        # the app-stack keys (cove.depends, cove.ready, cove.health, cove.restart)
        self.apps = AppStack(store=self.store, instances=self.instances,
                             operations=self.operations, events=self.events, clock=clock,
                             prober=Prober(self.access, self._network_state))
        self.instances.hooks = self.apps
        self.snapshots = Snapshots(store=self.store, paths=paths, runs=runs, runtime=runtime,
                                   instances=self.instances, operations=self.operations,
                                   events=self.events, clock=clock)
        self.copies = Copies(store=self.store, paths=paths, runs=runs, runtime=runtime,
                             instances=self.instances, images=self.images,
                             profiles=self.profiles, operations=self.operations,
                             events=self.events, clock=clock, projects=self.projects)
        self.publisher = Publisher(store=self.store, paths=paths, runs=runs, runtime=runtime,
                                   instances=self.instances, images=self.images,
                                   operations=self.operations, clock=clock)
        self.backups = Backups(store=self.store, paths=paths, runs=runs, runtime=runtime,
                               instances=self.instances, images=self.images,
                               profiles=self.profiles,
                               validate_devices=self.instances.validate_devices,
                               operations=self.operations, events=self.events, clock=clock,
                               projects=self.projects)
        self._snapshot_schedule = SnapshotScheduler(self.store, self.snapshots,
                                                    self.instances.expanded_config, clock)
        self.console = Console(store=self.store, runtime=runtime, paths=paths)
        self.trust = Trust(self.root, self.store, self.events, clock)
        self.image_pulls = ImagePulls(self.store, self.images, self.operations,
                                      tmp=self.root / "tmp", clock=clock,
                                      server_config=self.trust.server_config,
                                      client_cert=self._client_cert,
                                      create=self.instances.create)
        self.registry_pulls = RegistryPulls(self.images, self.oci, self.operations,
                                            root=self.root, tmp=self.root / "tmp",
                                            create=self.instances.create,
                                            record_source=self.image_pulls.record)
        self.metrics = Metrics(store=self.store, runs=runs, paths=paths,
                               operations=self.operations, clock=clock)
        self.resources = Resources()
        self._reconciler = Reconciler(store=self.store, runtime=runtime, paths=paths,
                                      runs=runs, instances=self.instances,
                                      images=self.images, networks=self.networks)
        self._closed = False

    def _network_state(self, key: str) -> dict[str, Any] | None:
        """LXD's ``state.network`` of the running instance keyed ``key``."""
        try:
            inst = self.store.get_instance(key)
        except NotFound:
            return None
        return self._nics.state(inst) if key in self._runs.pids else None

    def _client_cert(self) -> tuple[Path, Path]:
        """What coved presents to another LXD it pulls from: its server
        certificate (made at first use), as LXD does."""
        self.trust.server_certificate()
        return self.trust.server_cert_paths

    def _max_unpack(self) -> int | None:
        """The server setting ``cove.images.max_size`` in bytes, None unset."""
        value = self.trust.server_config().get(MAX_UNPACK_KEY)
        return parse_size(value, MAX_UNPACK_KEY) if value else None

    def _operation_event(self, op: Operation) -> None:
        if self.events.wanted("operation"):  # without a listener, skip building it
            self.events.publish("operation", op.to_dict(), project=op.project)

    def startup(self) -> None:
        """Reconcile the host with the database and autostart (see
        ``_reconcile``). Call once, before serving."""
        self.storage.sweep()  # first: an autostarted instance may mount a volume
        self.snapshots.sweep()  # before autostart: a half-done restore is finished
        self.copies.sweep()  # and a half-done rebuild done again
        self.backups.sweep()  # before the reconciler: staging mounts go first
        self._reconciler.run()
        self._nics.resume(self._runs.running())  # forwarders adopted, restarted or stopped
        self._snapshot_schedule.start()  # after autostart: @startup sees them running
        self.apps.resume()  # health checks; ordered starts a killed coved left
        self.backups.start()  # expired backups are removed (LXD's backups expiry task)
        self.image_pulls.sweep()  # partial downloads nobody resumed
        self.image_pulls.start()  # cached images expire, auto-update ones refresh
        self.registry_pulls.sweep()  # images gone, pulls never finished

    def server_environment(self) -> dict[str, Any]:
        """The ``environment`` part of ``GET /1.0``."""
        uname = os.uname()
        return {
            "addresses": [],
            "architectures": [platform.machine()],
            "certificate": "",
            "certificate_fingerprint": "",
            "driver": "runc",
            "driver_version": "",
            "firewall": "nftables",
            "kernel": uname.sysname,
            "kernel_architecture": uname.machine,
            "kernel_features": {},
            "kernel_version": uname.release,
            "lxc_features": {},
            "os_name": "cove",
            "os_version": __version__,
            "project": "default",
            "server": "cove",
            "server_clustered": False,
            "server_event_mode": "full-mesh",
            "server_name": uname.nodename,
            "server_pid": os.getpid(),
            "server_version": __version__,
            "storage": "dir",
            "storage_version": "",
            "storage_supported_drivers": [{"Name": "dir", "Version": "1", "Remote": False}],
        }

    def close(self) -> None:
        """Stop watching; containers keep running (conmon holds them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._snapshot_schedule.close()
        self.apps.close()
        self.backups.close()
        self.image_pulls.close()
        self.instances.close()
        self.networks.close()  # bridges and dnsmasqs go when nothing runs
        self._rootfs.close()
        self.runtime.close()  # retires its shared monitor; containers keep theirs
        self.store.close()
