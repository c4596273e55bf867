"""Engine: the one object that owns a cove root. (interface; being filled in)"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.types import CreateRequest, ExecRequest, ExecSession, FileInfo
from cove.model.records import Alias, Image, Instance


class Engine:
    """Owns ``root`` (COVE_DIR). Thread-safe. Sync methods are quick; long
    actions return an already-started ``Operation`` (``op.wait()``,
    ``op.raise_for_error()``, ``op.result``, ``op.to_dict()``)."""

    root: Path
    operations: Operations
    events: EventBus  # engine publishes "operation" and "lifecycle" events here

    def __init__(self, root: Path) -> None: ...
    def startup(self) -> None:
        """Reconcile DB with runtime, clean leaks, autostart. Call once at start."""
    def close(self) -> None: ...

    def server_environment(self) -> dict[str, Any]:
        """The ``environment`` part of GET /1.0 (kernel, driver, server_version...)."""
        ...

    # instances -----------------------------------------------------------
    def list_instances(self) -> list[Instance]: ...
    def get_instance(self, name: str) -> Instance:
        """NotFound if missing. ``status`` is live (runtime asked)."""
        ...
    def instance_state(self, name: str) -> dict[str, Any]:
        """LXD InstanceState dict: status, status_code, pid, processes,
        memory{usage,usage_peak,swap_usage,swap_usage_peak}, cpu{usage}, disk, network."""
        ...
    def create_instance(self, req: CreateRequest, *, wait_for_lock: float = 0) -> Operation:
        """Validates synchronously (BadRequest/NotFound image/Conflict name) then
        returns an operation that makes (and with req.start starts) it."""
        ...
    def update_instance(self, name: str, *, config: dict[str, Any] | None = None,
                        devices: dict[str, dict[str, str]] | None = None,
                        profiles: list[str] | None = None, description: str | None = None,
                        ephemeral: bool | None = None, patch: bool = False) -> None:
        """PUT (replace given fields) or PATCH (merge config/devices). Applies
        limits to a running instance at once. BadRequest on bad keys."""
        ...
    def rename_instance(self, name: str, new_name: str) -> Operation: ...
    def delete_instance(self, name: str, *, force: bool = False) -> Operation:
        """PreconditionFailed-style BadRequest if running and not force (LXD: 400
        'Instance is running')."""
        ...
    def change_state(self, name: str, action: str, *, timeout: float = -1,
                     force: bool = False, wait_for_lock: float = 0) -> Operation:
        """action: start, stop, restart, freeze, unfreeze. BadRequest on unknown."""
        ...
    def exec_instance(self, name: str, req: ExecRequest) -> ExecSession:
        """Start ``req.command`` now. BadRequest 'Instance is not running'."""
        ...
    def file_get(self, name: str, path: str) -> FileInfo: ...
    def file_put(self, name: str, path: str, *, type: str = "file",
                 data: BinaryIO | bytes | None = None, uid: int | None = None,
                 gid: int | None = None, mode: int | None = None,
                 write: str = "overwrite", target: str | None = None) -> None: ...
    def file_delete(self, name: str, path: str) -> None: ...
    def console_log(self, name: str) -> Path:
        """Path of the instance's output log (plain text lines)."""
        ...

    # images --------------------------------------------------------------
    def list_images(self) -> list[Image]: ...
    def get_image(self, fingerprint: str) -> Image:
        """By full fingerprint or unique prefix; NotFound/BadRequest (ambiguous)."""
        ...
    def import_image(self, path: Path, *, filename: str = "", public: bool = False,
                     aliases: list[str] | None = None, meta_path: Path | None = None,
                     properties: dict[str, str] | None = None) -> Operation:
        """Import the tarball at ``path`` (moved/deleted by the engine); result Image."""
        ...
    def update_image(self, fingerprint: str, *, properties: dict[str, str] | None = None,
                     public: bool | None = None) -> None: ...
    def delete_image(self, fingerprint: str) -> Operation: ...
    def list_aliases(self) -> list[Alias]: ...
    def get_alias(self, name: str) -> Alias: ...
    def add_alias(self, name: str, target: str, description: str = "") -> None: ...
    def update_alias(self, name: str, target: str, description: str = "") -> None: ...
    def rename_alias(self, name: str, new_name: str) -> None: ...
    def delete_alias(self, name: str) -> None: ...
