"""The instances of a listing, each with its wire JSON, kept while its row is.

Design note: ``GET /1.0/instances?recursion=2`` with a thousand instances
spent most of its time on what changes only with an instance's row: parsing
its config and devices, expanding its profiles, building and encoding its
wire object. Here each instance's record and its ``cove.api.instance_json``
text are kept by the row as read (every column: any change of the row
makes a new entry) and the profiles' ``generation`` (any change of a
profile makes new entries for all). Whose profiles a project uses
(``features.profiles``) changes only while the project has no instance,
so no row kept can be of a project whose answer changed. A listing reads
the rows (one query), and only rows it has not seen are parsed, expanded
and encoded; when no table changed since the last listing of the same
scope (``Database.version``: this connection's row changes and other
connections' commits) and no profile did, not even the query is made
(2-3 us a row, a tenth of a listing with state at a thousand). What it
keeps is what the last listing of the same scope (a project, or all of
them) saw: never more than the instances there are, per scope, for at most
``_SCOPES`` scopes.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from cove.api import instance
from cove.engine.ports import ProfileSource, ProjectSource
from cove.engine.types import Listed
from cove.model.projects import DEFAULT
from cove.store import Store

__all__ = ["InstanceListing"]

_SCOPES = 16  # projects listed on their own (and "all of them") kept at once

_Key = tuple[tuple[Any, ...], int]


class InstanceListing:
    """Listings of instances, cached by row. Thread-safe: two listings at
    once may both render a new row, and the last one's cache is kept."""

    def __init__(self, store: Store, profiles: ProfileSource,
                 projects: ProjectSource | None = None) -> None:
        self._store = store
        self._profiles = profiles
        self._projects = projects
        self._scopes: dict[str | None, dict[_Key, Listed]] = {}
        # what the store and the profiles were when a scope's rows were read
        self._stamps: dict[str | None, tuple[tuple[int, int], int]] = {}
        self._lock = threading.Lock()  # the scopes' bookkeeping, not the rendering

    def listed(self, project: str | None = DEFAULT) -> list[Listed]:
        """What ``Instances.all`` answers, each as ``Listed``: every instance of
        ``project`` (None: of every project), by key. Raises: NotFound (no
        such project)."""
        if project is not None and project != DEFAULT and self._projects is not None:
            self._projects.check(project)
        # Read before the rows: a profile change after this point makes the
        # next listing miss, never serve what this one expanded.
        generation = self._profiles.generation
        # So is the store's version: a change after it makes the next
        # listing read the rows again; none (of any table) since the last
        # listing of this scope, and its rows are the same rows.
        stamp = (self._store.db.version(), generation)
        with self._lock:
            old = self._scopes.get(project, {})
            if self._stamps.get(project) == stamp:
                return list(old.values())
        new: dict[_Key, Listed] = {}
        for row in self._store.instance_rows(project):
            key = (row, generation)
            hit = old.get(key)
            new[key] = hit if hit is not None else self._render(row)
        with self._lock:
            self._scopes.pop(project, None)
            while len(self._scopes) >= _SCOPES:
                self._stamps.pop(oldest := next(iter(self._scopes)), None)
                del self._scopes[oldest]
            self._scopes[project] = new
            self._stamps[project] = stamp
        return list(new.values())

    def _render(self, row: tuple[Any, ...]) -> Listed:
        inst = self._store.instance_of_row(row)
        inst.expanded_devices = self._profiles.expanded_devices(inst)
        inst.expanded_config = self._profiles.expanded_config(inst)
        wire = instance(inst)
        return Listed(inst, json.dumps(wire), wire)
