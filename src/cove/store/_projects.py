"""The projects table, and the ``project`` column of instances.

Design note: the ``default`` project is a row like any other, made on first
open (so an old root gains it, and its instances, whose new ``project``
column defaults to ``default``, belong to it). The instances table keeps
its globally unique ``name`` column as the instance's key (see
``cove.model.projects``); ``project`` says whose it is.
"""

from __future__ import annotations

import json
import sqlite3

from cove.model.errors import Conflict, NotFound
from cove.model.projects import DEFAULT, DEFAULT_CONFIG, DEFAULT_DESCRIPTION, Project
from cove.store._conn import Database

__all__ = ["ProjectRows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}'
);
-- which projects hold an image (features.images): one set of layers per
-- fingerprint, shared; an image with no row is the default project's (roots
-- made before projects, and imports that name no project)
CREATE TABLE IF NOT EXISTS image_projects (
    fingerprint TEXT NOT NULL REFERENCES images(fingerprint) ON DELETE CASCADE,
    project TEXT NOT NULL,
    PRIMARY KEY (fingerprint, project)
);
"""

_COLS = "id, name, description, config"


def _project(row: sqlite3.Row) -> Project:
    return Project(id=row[0], name=row[1], description=row[2], config=json.loads(row[3]))


class ProjectRows:
    """Reads and writes of projects. Raises NotFound for a missing project
    and Conflict for a duplicate name; each method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_SCHEMA)
        if "project" not in db.columns("instances"):  # a root made before projects
            with db.tx() as c:
                c.execute("ALTER TABLE instances ADD COLUMN project TEXT NOT NULL"
                          " DEFAULT 'default'")
        with db.tx() as c:
            c.execute("INSERT OR IGNORE INTO projects(name, description, config)"
                      " VALUES (?, ?, ?)", (DEFAULT, DEFAULT_DESCRIPTION,
                                            json.dumps(DEFAULT_CONFIG)))

    def all(self) -> list[Project]:
        rows = self.db.read(f"SELECT {_COLS} FROM projects ORDER BY id")
        return [_project(r) for r in rows]

    def get(self, name: str) -> Project:
        row = self.db.read(f"SELECT {_COLS} FROM projects WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound("Project not found")
        return _project(row)

    def add(self, project: Project) -> Project:
        try:
            with self.db.tx() as c:
                cur = c.execute("INSERT INTO projects(name, description, config)"
                                " VALUES (?, ?, ?)",
                                (project.name, project.description, json.dumps(project.config)))
        except sqlite3.IntegrityError:
            raise Conflict(f"Project {project.name!r} already exists") from None
        project.id = int(cur.lastrowid or 0)
        return project

    def update(self, project: Project) -> None:
        with self.db.tx() as c:
            cur = c.execute("UPDATE projects SET description=?, config=? WHERE name=?",
                            (project.description, json.dumps(project.config), project.name))
            if cur.rowcount == 0:
                raise NotFound("Project not found")

    def rename(self, old: str, new: str) -> None:
        """Rename an empty project (the caller checked it holds nothing)."""
        try:
            with self.db.tx() as c:
                cur = c.execute("UPDATE projects SET name=? WHERE name=?", (new, old))
                if cur.rowcount == 0:
                    raise NotFound("Project not found")
        except sqlite3.IntegrityError:
            raise Conflict(f"A project named {new!r} already exists") from None

    def delete(self, name: str) -> None:
        with self.db.tx() as c:
            if c.execute("DELETE FROM projects WHERE name=?", (name,)).rowcount == 0:
                raise NotFound("Project not found")

    # -- images ----------------------------------------------------------------
    def image_projects(self, fingerprint: str) -> set[str]:
        """The projects that hold the image (``{"default"}`` when no row says)."""
        rows = self.db.read("SELECT project FROM image_projects WHERE fingerprint=?",
                            (fingerprint,))
        return {str(r[0]) for r in rows} or {DEFAULT}

    def add_image_project(self, fingerprint: str, project: str) -> None:
        """Let ``project`` hold the image too. Idempotent."""
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM image_projects WHERE fingerprint=?",
                         (fingerprint,)).fetchone() is None:
                c.execute("INSERT INTO image_projects(fingerprint, project) VALUES (?, ?)",
                          (fingerprint, DEFAULT))  # the implicit holder becomes explicit
            c.execute("INSERT OR IGNORE INTO image_projects(fingerprint, project)"
                      " VALUES (?, ?)", (fingerprint, project))

    def drop_image_project(self, fingerprint: str, project: str) -> set[str]:
        """``project`` lets go of the image (and of its aliases there); the
        projects that still hold it."""
        left = self.image_projects(fingerprint) - {project}
        with self.db.tx() as c:
            c.execute("DELETE FROM image_projects WHERE fingerprint=? AND project=?",
                      (fingerprint, project))
            if left:  # its aliases in that project go with it
                prefix = "" if project == DEFAULT else f"{project}/"
                for (name,) in c.execute("SELECT name FROM aliases WHERE target=?",
                                         (fingerprint,)).fetchall():
                    if (prefix and name.startswith(prefix)) or (not prefix and "/" not in name):
                        c.execute("DELETE FROM aliases WHERE name=?", (name,))
        return left

    def instance_keys(self, project: str) -> list[str]:
        """The keys of the instances of ``project``, by name."""
        rows = self.db.read("SELECT name FROM instances WHERE project=? ORDER BY name",
                            (project,))
        return [str(r[0]) for r in rows]
