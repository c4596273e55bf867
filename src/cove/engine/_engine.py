"""Engine: the one object that owns a cove root (COVE_DIR).

Design note: the server and the local driver call these same methods; no
behaviour lives only in an HTTP handler. Quick calls are synchronous; long
ones return an already-started ``Operation``. The concerns are split by file
(``_instances`` lifecycle, ``_access`` exec/files/logs, ``_images``,
``_reconcile``) and joined here.

Layout of a root::

    cove.db                 state (SQLite, WAL)
    images/<fp>/rootfs      image layers (read-only lower dirs)
    instances/<name>/       upper/, work/, rootfs/ (overlay mount), config.json,
                            console.log (conmon's k8s-file log)
    run/                    runtime state (runc/, exits/, pids/); may vanish
    tmp/                    uploads in flight
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cove import __version__
from cove.engine._access import AccessMixin
from cove.engine._images import ImagesMixin
from cove.engine._instances import InstancesMixin
from cove.engine._network import NetworkMixin
from cove.engine._reconcile import ReconcileMixin
from cove.engine._trust import TrustMixin
from cove.engine._watch import ExitWatcher
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.host import proc
from cove.model.errors import BadRequest
from cove.network import NetworkHost
from cove.runtime import RUNTIMES, Runc
from cove.storage.images import ImageStore
from cove.store import Store

__all__ = ["Engine"]

DEFAULT_ROOT = Path("/var/lib/cove")


class Engine(InstancesMixin, AccessMixin, ImagesMixin, ReconcileMixin, NetworkMixin,
             TrustMixin):
    """Owns ``root``. Thread-safe.

    Long actions return an already-started ``Operation`` (``op.wait()``,
    ``op.raise_for_error()``, ``op.result``); validation errors are raised
    before any operation exists, so a bad request makes nothing.
    """

    def __init__(self, root: Path, *, runtime: Runc | None = None) -> None:
        proc.become_subreaper()
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        for sub in ("images", "instances", "tmp", "run"):
            (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        self.store = Store(self.root / "cove.db")
        self.images = ImageStore(self.root / "images")
        if runtime is None:
            name = os.environ.get("COVE_RUNTIME", "runc")
            if name not in RUNTIMES:
                raise BadRequest(f"Unknown runtime {name!r}: one of {', '.join(RUNTIMES)}")
            runtime = RUNTIMES[name](self.root / "run")
        self.runtime = runtime
        self.events = EventBus()
        self.operations = Operations(on_change=self._op_changed)
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        self.cgroup_parent = "cove" if self.root == DEFAULT_ROOT else f"cove-{digest}"
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # name -> init pid of instances coved knows to be running
        self._running: dict[str, int] = {}
        self.net = NetworkHost(self.root)
        self._net_started = False
        self._stopped_events: dict[str, threading.Event] = {}
        self._mutexes: dict[str, threading.RLock] = {}
        self._mutexes_lock = threading.Lock()
        self._mount_refs: dict[str, int] = {}
        self._restarting: set[str] = set()
        self._watcher = ExitWatcher(self._on_exit)
        self._closed = False

    def _op_changed(self, op: Operation) -> None:
        self.events.publish("operation", op.to_dict())

    @contextmanager
    def _mutex(self, name: str) -> Iterator[None]:
        """Short internal lock for an instance's runtime bookkeeping (not an
        operation lock: the exit watcher takes it too)."""
        with self._mutexes_lock:
            m = self._mutexes.setdefault(name, threading.RLock())
        with m:
            yield

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
            "storage": "overlay",
            "storage_version": "",
            "storage_supported_drivers": [{"Name": "overlay", "Version": "", "Remote": False}],
        }

    def close(self) -> None:
        """Stop watching; containers keep running (conmon holds them)."""
        if self._closed:
            return
        self._closed = True
        self._watcher.close()
        self._net_close()  # bridges and dnsmasqs go when nothing runs
        self.store.close()

    def _now(self) -> float:
        return time.time()
