"""Custom storage volumes: one row each, keyed by project, pool and name.

Design note: ``dir`` is the name of the volume's directory on disk as it is
*now*, which differs from the one its name implies only while a rename is
half-done (the row is renamed first, then the directory, then ``dir``), so
the storage service can finish a rename a killed daemon left.
"""

from __future__ import annotations

import json
import sqlite3

from cove.model.disks import Volume
from cove.model.errors import Conflict, NotFound
from cove.store._conn import Database

__all__ = ["VolumeRows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS storage_volumes (
    project TEXT NOT NULL DEFAULT 'default',
    pool TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    content_type TEXT NOT NULL DEFAULT 'filesystem',
    created_at REAL NOT NULL,
    dir TEXT NOT NULL,
    PRIMARY KEY (project, pool, name)
);
"""

_COLS = "project, pool, name, description, config, content_type, created_at, dir"


def _row(r: sqlite3.Row | tuple[object, ...]) -> Volume:
    return Volume(project=str(r[0]), pool=str(r[1]), name=str(r[2]), description=str(r[3]),
                  config=json.loads(str(r[4])), content_type=str(r[5]),
                  created_at=float(r[6]), dir=str(r[7]))  # type: ignore[arg-type]


class VolumeRows:
    """The ``storage_volumes`` table. Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_SCHEMA)

    def all(self, pool: str | None = None, *, project: str | None = "default") -> list[Volume]:
        """Volumes by name; ``project=None``: of every project."""
        sql = f"SELECT {_COLS} FROM storage_volumes WHERE 1=1"
        args: list[str] = []
        if pool is not None:
            sql, args = sql + " AND pool = ?", [*args, pool]
        if project is not None:
            sql, args = sql + " AND project = ?", [*args, project]
        return [_row(r) for r in self.db.read(sql + " ORDER BY project, name", args)]

    def get(self, pool: str, name: str, *, project: str = "default") -> Volume:
        """Raises: NotFound."""
        r = self.db.read(f"SELECT {_COLS} FROM storage_volumes "
                         "WHERE project = ? AND pool = ? AND name = ?",
                         (project, pool, name)).fetchone()
        if r is None:
            raise NotFound(f"Storage volume not found: {name}")
        return _row(r)

    def add(self, v: Volume) -> None:
        """Raises: Conflict when the name is taken."""
        try:
            with self.db.tx() as db:
                db.execute(f"INSERT INTO storage_volumes ({_COLS}) VALUES (?,?,?,?,?,?,?,?)",
                           (v.project, v.pool, v.name, v.description, json.dumps(v.config),
                            v.content_type, v.created_at, v.dir))
        except sqlite3.IntegrityError:
            raise Conflict(f"Storage volume {v.name!r} already exists") from None

    def update(self, v: Volume) -> None:
        """Description, config and dir of an existing row. Raises: NotFound."""
        with self.db.tx() as db:
            cur = db.execute("UPDATE storage_volumes SET description = ?, config = ?, dir = ? "
                             "WHERE project = ? AND pool = ? AND name = ?",
                             (v.description, json.dumps(v.config), v.dir, v.project, v.pool,
                              v.name))
            if cur.rowcount == 0:
                raise NotFound(f"Storage volume not found: {v.name}")

    def rename(self, pool: str, name: str, new_name: str, *, project: str = "default") -> None:
        """Raises: NotFound, Conflict (the new name is taken)."""
        try:
            with self.db.tx() as db:
                cur = db.execute("UPDATE storage_volumes SET name = ? "
                                 "WHERE project = ? AND pool = ? AND name = ?",
                                 (new_name, project, pool, name))
                if cur.rowcount == 0:
                    raise NotFound(f"Storage volume not found: {name}")
        except sqlite3.IntegrityError:
            raise Conflict(f"Storage volume {new_name!r} already exists") from None

    def delete(self, pool: str, name: str, *, project: str = "default") -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM storage_volumes WHERE project = ? AND pool = ? AND name = ?",
                       (project, pool, name))
