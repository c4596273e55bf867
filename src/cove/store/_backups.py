"""Instance backups: one row each, keyed by (instance key, name); and the
imports in flight.

Design note: as for snapshots (``_snapshots``), a row exists only for a
backup whose tarball is whole: the engine writes it under a temporary name,
renames it into place and only then adds the row; a delete removes the row
before the file. ``file`` is an id, not the name, so a rename touches the
row only. The instance's own rename and delete carry these rows
(``Store.rename_instance``, ``Store.delete_instance``).

An import adds an instance row and then its snapshots' rows, which are not
one transaction: ``backup_imports`` names the instance from before its first
row until after its last, so a coved killed in between finds the key at
startup and removes the half-made instance (``Backups.sweep``).
"""

from __future__ import annotations

import sqlite3

from cove.model.errors import Conflict, NotFound
from cove.model.records import Backup
from cove.store._conn import Database

__all__ = ["BackupRows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instance_backups (
    instance TEXT NOT NULL,
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL DEFAULT 0,
    instance_only INTEGER NOT NULL DEFAULT 0,
    optimized_storage INTEGER NOT NULL DEFAULT 0,
    compression TEXT NOT NULL DEFAULT 'gzip',
    size INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, name)
);
CREATE TABLE IF NOT EXISTS backup_imports (
    instance TEXT PRIMARY KEY
);
"""

_COLS = ("instance, name, file, created_at, expires_at, instance_only, optimized_storage, "
         "compression, size")


def _row(r: sqlite3.Row | tuple[object, ...]) -> Backup:
    return Backup(instance=str(r[0]), name=str(r[1]), file=str(r[2]),
                  created_at=float(r[3]), expires_at=float(r[4]),  # type: ignore[arg-type]
                  instance_only=bool(r[5]), optimized_storage=bool(r[6]),
                  compression=str(r[7]), size=int(r[8]))  # type: ignore[arg-type]


class BackupRows:
    """The ``instance_backups`` and ``backup_imports`` tables. Every method
    is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_SCHEMA)

    def all(self, instance: str | None = None) -> list[Backup]:
        """Backups of ``instance`` (a key) by creation time; None: of all."""
        if instance is None:
            rows = self.db.read(f"SELECT {_COLS} FROM instance_backups "
                                "ORDER BY instance, created_at, name")
        else:
            rows = self.db.read(f"SELECT {_COLS} FROM instance_backups WHERE instance = ? "
                                "ORDER BY created_at, name", (instance,))
        return [_row(r) for r in rows]

    def get(self, instance: str, name: str) -> Backup:
        """Raises: NotFound."""
        r = self.db.read(f"SELECT {_COLS} FROM instance_backups "
                         "WHERE instance = ? AND name = ?", (instance, name)).fetchone()
        if r is None:
            raise NotFound(f"Backup not found: {name}")
        return _row(r)

    def add(self, b: Backup) -> None:
        """Raises: Conflict when the name is taken."""
        try:
            with self.db.tx() as db:
                db.execute(f"INSERT INTO instance_backups ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                           (b.instance, b.name, b.file, b.created_at, b.expires_at,
                            int(b.instance_only), int(b.optimized_storage), b.compression,
                            b.size))
        except sqlite3.IntegrityError:
            raise Conflict(f"Backup {b.name!r} already exists") from None

    def rename(self, instance: str, name: str, new_name: str) -> None:
        """Raises: NotFound, Conflict (the new name is taken)."""
        try:
            with self.db.tx() as db:
                cur = db.execute("UPDATE instance_backups SET name = ? "
                                 "WHERE instance = ? AND name = ?", (new_name, instance, name))
                if cur.rowcount == 0:
                    raise NotFound(f"Backup not found: {name}")
        except sqlite3.IntegrityError:
            raise Conflict(f"Backup {new_name!r} already exists") from None

    def delete(self, instance: str, name: str) -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM instance_backups WHERE instance = ? AND name = ?",
                       (instance, name))

    # -- imports in flight (see module note) -----------------------------------
    def begin_import(self, instance: str) -> None:
        with self.db.tx() as db:
            db.execute("INSERT OR REPLACE INTO backup_imports (instance) VALUES (?)",
                       (instance,))

    def end_import(self, instance: str) -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM backup_imports WHERE instance = ?", (instance,))

    def pending_imports(self) -> list[str]:
        return [str(r[0]) for r in self.db.read("SELECT instance FROM backup_imports")]
