"""What every part of the engine may rely on: the attributes ``Engine``
sets up, and the methods one concern's file calls in another's.

The concern files (``_instances``, ``_access``, ``_images``, ``_reconcile``)
are mixins of ``Engine``; each inherits ``EngineCore`` so the type checker
knows, in each file, what the others provide.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cove.engine._network import NetPlan
    from cove.engine._watch import ExitWatcher
    from cove.engine.events import EventBus
    from cove.engine.operations import Operation, Operations
    from cove.model.records import Image, Instance
    from cove.model.states import Status
    from cove.network import NetworkHost
    from cove.runtime.runc import Runc
    from cove.storage.images import ImageStore
    from cove.store import Store

__all__ = ["EngineCore"]


class EngineCore:
    root: Path
    store: Store
    images: ImageStore
    runtime: Runc
    events: EventBus
    operations: Operations
    cgroup_parent: str
    nofile: int
    _running: dict[str, int]
    _stopped_events: dict[str, threading.Event]
    _mount_refs: dict[str, int]
    _restarting: set[str]
    _watcher: ExitWatcher
    net: NetworkHost
    _net_started: bool

    if TYPE_CHECKING:
        @abstractmethod
        def _mutex(self, name: str) -> AbstractContextManager[None]: ...
        @abstractmethod
        def _now(self) -> float: ...
        @abstractmethod
        def instance_dir(self, name: str) -> Path: ...
        @abstractmethod
        def rootfs(self, name: str) -> AbstractContextManager[Path]: ...
        @abstractmethod
        def get_image(self, fingerprint: str) -> Image: ...
        @abstractmethod
        def resolve_image(self, ref: str) -> Image: ...
        @abstractmethod
        def change_state(self, name: str, action: str, *, timeout: float = -1,
                         force: bool = False, wait_for_lock: float = 0) -> Operation: ...
        @abstractmethod
        def _set_status(self, name: str, status: Status, **fields: object) -> Instance: ...
        @abstractmethod
        def _finalize(self, name: str, pid: int | None) -> None: ...
        @abstractmethod
        def _delete_now(self, name: str) -> None: ...
        @abstractmethod
        def _remove_instance_dir(self, name: str) -> None: ...
        # networks (_network.py)
        @abstractmethod
        def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]: ...
        @abstractmethod
        def _net_check_devices(self, name: str, devices: dict[str, dict[str, str]],
                               profiles: list[str]) -> None: ...
        @abstractmethod
        def _net_prepare(self, inst: Instance, undo: ExitStack) -> NetPlan: ...
        @abstractmethod
        def _net_attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None: ...
        @abstractmethod
        def _net_release(self, name: str) -> None: ...
        @abstractmethod
        def _net_apply_devices(self, inst: Instance,
                               new_devices: dict[str, dict[str, str]]) -> None: ...
        @abstractmethod
        def _net_state(self, inst: Instance) -> dict[str, Any]: ...
        @abstractmethod
        def _net_startup(self) -> None: ...
        @abstractmethod
        def _net_close(self) -> None: ...


