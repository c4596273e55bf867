"""The backup steps, as ``drivers._steps``: data only, performed by each
driver's table. Part of ``_steps.Step``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BackupStep", "CreateBackup", "DeleteBackup", "ExportInstance", "GetBackup",
           "ImportInstance", "ListBackups"]


@dataclass(frozen=True)
class ListBackups:
    """The instance's backup objects (raises NotFound for the instance)."""

    name: str


@dataclass(frozen=True)
class GetBackup:
    """The backup object, or None."""

    name: str
    backup: str


@dataclass(frozen=True)
class CreateBackup:
    """Make one and wait for it."""

    name: str
    backup: str
    instance_only: bool = False


@dataclass(frozen=True)
class DeleteBackup:
    name: str
    backup: str


@dataclass(frozen=True)
class ExportInstance:
    """``lxc export``: a backup made, written to ``path`` (a local file), deleted."""

    name: str
    path: str
    instance_only: bool = False


@dataclass(frozen=True)
class ImportInstance:
    """``lxc import``: a new instance ``name`` from the backup tarball at ``path``."""

    path: str
    name: str


BackupStep = (ListBackups | GetBackup | CreateBackup | DeleteBackup | ExportInstance
              | ImportInstance)
