"""The ``profiles`` table: one row per profile and project.

Design note: config and devices are JSON columns, as an instance's are; a
profile is read whole and written whole. Renaming a profile rewrites the
profile lists of the instances that name it in the same transaction, so no
instance is ever left naming a profile that does not exist.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from cove.model.errors import Conflict, NotFound
from cove.model.profiles import Profile
from cove.store._conn import Database

__all__ = ["ProfileRows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL DEFAULT 'default',
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    devices TEXT NOT NULL DEFAULT '{}',
    UNIQUE (project, name)
);
"""

_COLS = "project, name, description, config, devices"


def _profile(row: sqlite3.Row) -> Profile:
    return Profile(project=row[0], name=row[1], description=row[2],
                   config=json.loads(row[3]), devices=json.loads(row[4]))


class ProfileRows:
    """Reads and writes of profiles; every method is one transaction.

    Raises NotFound for a missing profile and Conflict for a taken name.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_SCHEMA)

    def list(self, project: str | None = None) -> list[Profile]:
        """The profiles of ``project`` (all projects when None), by name."""
        if project is None:
            rows = self.db.read(f"SELECT {_COLS} FROM profiles ORDER BY project, name")
        else:
            rows = self.db.read(f"SELECT {_COLS} FROM profiles WHERE project=? ORDER BY name",
                                (project,))
        return [_profile(r) for r in rows]

    def get(self, name: str, project: str = "default") -> Profile:
        """Raises: NotFound."""
        row = self.db.read(f"SELECT {_COLS} FROM profiles WHERE project=? AND name=?",
                           (project, name)).fetchone()
        if row is None:
            raise NotFound(f"Profile not found: {name}")
        return _profile(row)

    def add(self, p: Profile) -> None:
        """Raises: Conflict (the name is taken in the project)."""
        try:
            with self.db.tx() as db:
                db.execute(f"INSERT INTO profiles ({_COLS}) VALUES (?, ?, ?, ?, ?)",
                           (p.project, p.name, p.description, json.dumps(p.config),
                            json.dumps(p.devices)))
        except sqlite3.IntegrityError:
            raise Conflict(f'Error inserting "{p.name}" into database: '
                           "The profile already exists") from None

    def update(self, p: Profile) -> None:
        """Replace description, config and devices. Raises: NotFound."""
        with self.db.tx() as db:
            cur = db.execute(
                "UPDATE profiles SET description=?, config=?, devices=? "
                "WHERE project=? AND name=?",
                (p.description, json.dumps(p.config), json.dumps(p.devices), p.project, p.name))
            if cur.rowcount == 0:
                raise NotFound(f"Profile not found: {p.name}")

    def rename(self, name: str, new_name: str, project: str = "default",
               users: Sequence[str] = ()) -> None:
        """Rename a profile and every instance's mention of it (one
        transaction): the instances of ``project`` and of the ``users``
        projects (those that read ``project``'s profiles).

        Raises:
            NotFound: no such profile.  Conflict: ``new_name`` is taken.
        """
        projects = sorted({project, *users})
        scoped = "project" in self.db.columns("instances")
        with self.db.tx() as db:
            try:
                cur = db.execute("UPDATE profiles SET name=? WHERE project=? AND name=?",
                                 (new_name, project, name))
            except sqlite3.IntegrityError:
                raise Conflict(f'Name "{new_name}" already in use') from None
            if cur.rowcount == 0:
                raise NotFound(f"Profile not found: {name}")
            sql = "SELECT id, profiles FROM instances"
            marks = ",".join("?" * len(projects))
            rows = db.execute(sql + f" WHERE project IN ({marks})", projects) if scoped \
                else db.execute(sql)
            for row_id, raw in rows.fetchall():
                names = json.loads(raw)
                if name in names:
                    names = [new_name if n == name else n for n in names]
                    db.execute("UPDATE instances SET profiles=? WHERE id=?",
                               (json.dumps(names), row_id))

    def delete(self, name: str, project: str = "default") -> None:
        """Raises: NotFound."""
        with self.db.tx() as db:
            cur = db.execute("DELETE FROM profiles WHERE project=? AND name=?", (project, name))
            if cur.rowcount == 0:
                raise NotFound(f"Profile not found: {name}")
