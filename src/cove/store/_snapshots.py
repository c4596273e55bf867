"""Instance snapshots: one row each, keyed by (instance key, name).

Design note: a row exists only for a snapshot whose files are whole: the
engine copies into a temporary directory, renames it into place and only
then adds the row; a delete removes the row before the files. So at
startup every directory under an instance's ``snapshots/`` that no row
names is a leftover, and is swept. ``dir`` is an id, not the name, so a
rename touches the row only. The instance's own rename and delete carry
these rows in the same transaction (``Store.rename_instance``,
``Store.delete_instance``).
"""

from __future__ import annotations

import json
import sqlite3

from cove.model.errors import Conflict, NotFound
from cove.model.records import Snapshot
from cove.store._conn import Database

__all__ = ["SnapshotRows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instance_snapshots (
    instance TEXT NOT NULL,
    name TEXT NOT NULL,
    dir TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    devices TEXT NOT NULL DEFAULT '{}',
    profiles TEXT NOT NULL DEFAULT '[]',
    ephemeral INTEGER NOT NULL DEFAULT 0,
    architecture TEXT NOT NULL DEFAULT '',
    image TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, name)
);
"""

_COLS = ("instance, name, dir, created_at, expires_at, description, config, devices, "
         "profiles, ephemeral, architecture, image, size")


def _row(r: sqlite3.Row | tuple[object, ...]) -> Snapshot:
    return Snapshot(instance=str(r[0]), name=str(r[1]), dir=str(r[2]),
                    created_at=float(r[3]), expires_at=float(r[4]),  # type: ignore[arg-type]
                    description=str(r[5]), config=json.loads(str(r[6])),
                    devices=json.loads(str(r[7])), profiles=json.loads(str(r[8])),
                    ephemeral=bool(r[9]), architecture=str(r[10]), image=str(r[11]),
                    size=int(r[12]))  # type: ignore[arg-type]


class SnapshotRows:
    """The ``instance_snapshots`` table. Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_SCHEMA)

    def all(self, instance: str | None = None) -> list[Snapshot]:
        """Snapshots of ``instance`` (a key) by creation time; None: of all."""
        if instance is None:
            rows = self.db.read(f"SELECT {_COLS} FROM instance_snapshots "
                                "ORDER BY instance, created_at, name")
        else:
            rows = self.db.read(f"SELECT {_COLS} FROM instance_snapshots WHERE instance = ? "
                                "ORDER BY created_at, name", (instance,))
        return [_row(r) for r in rows]

    def get(self, instance: str, name: str) -> Snapshot:
        """Raises: NotFound."""
        r = self.db.read(f"SELECT {_COLS} FROM instance_snapshots "
                         "WHERE instance = ? AND name = ?", (instance, name)).fetchone()
        if r is None:
            raise NotFound(f"Snapshot not found: {name}")
        return _row(r)

    def add(self, s: Snapshot) -> None:
        """Raises: Conflict when the name is taken."""
        try:
            with self.db.tx() as db:
                self.insert(db, s)
        except sqlite3.IntegrityError:
            raise Conflict(f"Snapshot {s.name!r} already exists") from None

    @staticmethod
    def insert(db: sqlite3.Connection, s: Snapshot) -> None:
        """The row, inside the caller's transaction (a copy adds an
        instance and its snapshots at once). Raises: sqlite3.IntegrityError."""
        db.execute(
            f"INSERT INTO instance_snapshots ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (s.instance, s.name, s.dir, s.created_at, s.expires_at, s.description,
             json.dumps(s.config), json.dumps(s.devices), json.dumps(s.profiles),
             int(s.ephemeral), s.architecture, s.image, s.size))

    def update(self, s: Snapshot) -> None:
        """Its description and expiry (the writable fields). Raises: NotFound."""
        with self.db.tx() as db:
            cur = db.execute("UPDATE instance_snapshots SET description = ?, expires_at = ? "
                             "WHERE instance = ? AND name = ?",
                             (s.description, s.expires_at, s.instance, s.name))
            if cur.rowcount == 0:
                raise NotFound(f"Snapshot not found: {s.name}")

    def rename(self, instance: str, old: str, new: str) -> None:
        """Raises: NotFound, Conflict (``new`` is taken)."""
        try:
            with self.db.tx() as db:
                cur = db.execute("UPDATE instance_snapshots SET name = ? "
                                 "WHERE instance = ? AND name = ?", (new, instance, old))
                if cur.rowcount == 0:
                    raise NotFound(f"Snapshot not found: {old}")
        except sqlite3.IntegrityError:
            raise Conflict(f"Snapshot {new!r} already exists") from None

    def delete(self, instance: str, name: str) -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM instance_snapshots WHERE instance = ? AND name = ?",
                       (instance, name))
