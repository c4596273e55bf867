"""The state database: one SQLite file in WAL mode under cove's root.

Design note: every state change is one transaction (``with self.db.tx()``), so
a coved killed at any point leaves the database at a step boundary; the
engine's reconcile pass then brings the host in line with it (the connection
itself is ``_conn.Database``).
``synchronous=NORMAL`` in WAL mode keeps commits off fsync on the hot path
while still never corrupting the file; a power cut may lose the last commits,
which reconcile tolerates because the runtime is asked for the truth anyway.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cove.model.errors import Conflict, NotFound
from cove.model.projects import split_alias, split_key
from cove.model.records import Alias, Image, Instance, Lease, Network, Snapshot
from cove.model.states import Status
from cove.model.trust import Certificate
from cove.store._app import AppHealthRows, AppIntentRows, AppReadyRows
from cove.store._backups import BackupRows
from cove.store._conn import Database
from cove.store._image_sources import ImageSourceRows
from cove.store._profiles import ProfileRows
from cove.store._projects import ProjectRows
from cove.store._snapshots import SnapshotRows
from cove.store._volumes import VolumeRows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    config TEXT NOT NULL,
    devices TEXT NOT NULL,
    profiles TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    ephemeral INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    architecture TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL NOT NULL DEFAULT 0,
    last_exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS images (
    fingerprint TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    architecture TEXT NOT NULL,
    properties TEXT NOT NULL,
    filename TEXT NOT NULL DEFAULT '',
    public INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    uploaded_at REAL NOT NULL,
    last_used_at REAL NOT NULL DEFAULT 0,
    cmd TEXT NOT NULL DEFAULT '[]',
    env TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL REFERENCES images(fingerprint) ON DELETE CASCADE,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    network TEXT NOT NULL REFERENCES networks(name),
    instance TEXT NOT NULL,
    device TEXT NOT NULL,
    address TEXT NOT NULL,
    address6 TEXT NOT NULL DEFAULT '',
    hwaddr TEXT NOT NULL,
    UNIQUE (instance, device)
);
CREATE INDEX IF NOT EXISTS leases_network ON leases(network);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    certificate TEXT NOT NULL,
    restricted INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
"""

_RENAME = "pending-rename:"  # meta keys: a rename whose files may not have moved yet

_INSTANCE_COLS = (
    "id, name, image, config, devices, profiles, description, ephemeral, status,"
    " architecture, created_at, last_used_at, last_exit_code, project"
)


def _instance(row: Sequence[Any]) -> Instance:
    return Instance(
        id=row[0], name=row[1], image=row[2], config=json.loads(row[3]),
        devices=json.loads(row[4]), profiles=json.loads(row[5]), description=row[6],
        ephemeral=bool(row[7]), status=Status(row[8]), architecture=row[9],
        created_at=row[10], last_used_at=row[11], last_exit_code=row[12], project=row[13],
    )


class Store:
    """All reads and writes of cove's state database.

    Raises NotFound for a missing row and Conflict for a duplicate name;
    every method is one transaction. Tables of newer concerns live in
    modules of their own beside this one, each given the shared
    :class:`Database` (``store.db``) and reached as an attribute of the store.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = Database(self.path)
        self.db.script(_SCHEMA)
        self.profiles = ProfileRows(self.db)
        self.projects = ProjectRows(self.db)
        self.volumes = VolumeRows(self.db)
        self.snapshots = SnapshotRows(self.db)
        self.app_intents = AppIntentRows(self.db)
        self.app_health = AppHealthRows(self.db)
        self.app_ready = AppReadyRows(self.db)
        self.backups = BackupRows(self.db)
        self.image_sources = ImageSourceRows(self.db)

    def close(self) -> None:
        self.db.close()

    # -- meta -------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.read("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.db.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM meta WHERE key=?", (key,))

    def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """The meta rows whose key starts with ``prefix`` (intents recorded
        before a multi-step change), keyed by the rest of the key."""
        rows = self.db.read("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                            (len(prefix), prefix))
        return {str(k)[len(prefix):]: str(v) for k, v in rows}

    # -- instances --------------------------------------------------------
    def list_instances(self, project: str | None = None) -> list[Instance]:
        """Every instance (of ``project`` when given), by key."""
        return [_instance(r) for r in self.instance_rows(project)]

    def instance_rows(self, project: str | None = None) -> list[tuple[Any, ...]]:
        """``list_instances`` as the rows read, for a caller that keeps what it
        made of each (``instance_of_row``) by the row: an equal row is an
        equal record."""
        if project is None:
            return self.db.read(f"SELECT {_INSTANCE_COLS} FROM instances ORDER BY name")
        return self.db.read(f"SELECT {_INSTANCE_COLS} FROM instances WHERE project=?"
                            " ORDER BY name", (project,))

    @staticmethod
    def instance_of_row(row: tuple[Any, ...]) -> Instance:
        """The record of a row ``instance_rows`` gave."""
        return _instance(row)

    def get_instance(self, name: str) -> Instance:
        row = self.db.read(
            f"SELECT {_INSTANCE_COLS} FROM instances WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"Instance not found: {split_key(name)[1]}")
        return _instance(row)

    def check_free(self, name: str) -> None:
        """Raise Conflict when an instance keyed ``name`` exists (a create, copy,
        import or rename checks this as it takes the name's lock)."""
        if self.db.read("SELECT 1 FROM instances WHERE name=?", (name,)).fetchone() is not None:
            raise Conflict(f"Instance {split_key(name)[1]!r} already exists")

    def add_instance(self, inst: Instance, snapshots: Sequence[Snapshot] = ()) -> Instance:
        """Add the row, and ``snapshots`` (a copy's) in the same transaction.

        Raises: Conflict (the name is taken).
        """
        try:
            with self.db.tx() as db:
                for snap in snapshots:
                    self.snapshots.insert(db, snap)
                cur = db.execute(
                    "INSERT INTO instances(name, image, config, devices, profiles, description,"
                    " ephemeral, status, architecture, created_at, last_used_at, last_exit_code,"
                    " project) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (inst.name, inst.image, json.dumps(inst.config), json.dumps(inst.devices),
                     json.dumps(inst.profiles), inst.description, int(inst.ephemeral),
                     inst.status.value, inst.architecture, inst.created_at, inst.last_used_at,
                     inst.last_exit_code, inst.project),
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"Instance already exists: {split_key(inst.name)[1]}") from None
        inst.id = int(cur.lastrowid or 0)
        return inst

    def update_instance(self, inst: Instance) -> None:
        with self.db.tx() as db:
            cur = db.execute(
                "UPDATE instances SET name=?, config=?, devices=?, profiles=?, description=?,"
                " ephemeral=?, status=?, last_used_at=?, last_exit_code=? WHERE id=?",
                (inst.name, json.dumps(inst.config), json.dumps(inst.devices),
                 json.dumps(inst.profiles), inst.description, int(inst.ephemeral),
                 inst.status.value, inst.last_used_at, inst.last_exit_code, inst.id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"Instance not found: {inst.name}")

    def rename_instance(self, old: str, new: str) -> None:
        """Rename the row and record the rename as pending, in one
        transaction: the caller then moves what lives under the old name on
        disk and calls ``finish_rename``; a crash in between is completed at
        the next start from ``pending_renames``."""
        try:
            with self.db.tx() as db:
                cur = db.execute("UPDATE instances SET name=? WHERE name=?", (new, old))
                if cur.rowcount == 0:
                    raise NotFound(f"Instance not found: {split_key(old)[1]}")
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                           (_RENAME + new, old))
                # its snapshots' files live in its directory and move with it
                db.execute("UPDATE instance_snapshots SET instance=? WHERE instance=?",
                           (new, old))
                db.execute("UPDATE instance_backups SET instance=? WHERE instance=?",
                           (new, old))
        except sqlite3.IntegrityError:
            raise Conflict(f"Instance already exists: {split_key(new)[1]}") from None

    def finish_rename(self, new: str) -> None:
        """The rename to ``new`` is complete on disk too. Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM meta WHERE key=?", (_RENAME + new,))

    def pending_renames(self) -> dict[str, str]:
        """Renames recorded and not finished: new name -> old name."""
        rows = self.db.read("SELECT key, value FROM meta WHERE key LIKE ?", (_RENAME + "%",))
        return {str(k)[len(_RENAME):]: str(v) for k, v in rows}

    def delete_instance(self, name: str) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM instances WHERE name=?", (name,))
            db.execute("DELETE FROM instance_snapshots WHERE instance=?", (name,))
            db.execute("DELETE FROM instance_backups WHERE instance=?", (name,))

    def set_instance_image(self, name: str, fingerprint: str) -> None:
        """The image an instance's upper layer lies on (a rebuild, a
        restore of a snapshot taken before one). Raises: NotFound."""
        with self.db.tx() as db:
            cur = db.execute("UPDATE instances SET image=? WHERE name=?", (fingerprint, name))
            if cur.rowcount == 0:
                raise NotFound(f"Instance not found: {split_key(name)[1]}")

    def instances_using_image(self, fingerprint: str) -> list[str]:
        """The instances on the image's layers, or with a snapshot on them
        (a snapshot taken before a rebuild still needs its old image)."""
        rows = self.db.read("SELECT name FROM instances WHERE image=? UNION "
                            "SELECT instance FROM instance_snapshots WHERE image=?",
                            (fingerprint, fingerprint))
        return [r[0] for r in rows]

    # -- images -----------------------------------------------------------
    def _aliases_of(self, fingerprint: str) -> list[Alias]:
        rows = self.db.read(
            "SELECT name, target, description FROM aliases WHERE target=? ORDER BY name",
            (fingerprint,))
        return [Alias(*r) for r in rows]

    def _image(self, row: sqlite3.Row) -> Image:
        return Image(
            fingerprint=row[0], size=row[1], architecture=row[2],
            properties=json.loads(row[3]), filename=row[4], public=bool(row[5]),
            created_at=row[6], uploaded_at=row[7], last_used_at=row[8],
            cmd=json.loads(row[9]), env=json.loads(row[10]),
            aliases=self._aliases_of(row[0]),
        )

    _IMAGE_COLS = ("fingerprint, size, architecture, properties, filename, public, created_at,"
                   " uploaded_at, last_used_at, cmd, env")

    def list_images(self) -> list[Image]:
        rows = self.db.read(
            f"SELECT {self._IMAGE_COLS} FROM images ORDER BY uploaded_at").fetchall()
        return [self._image(r) for r in rows]

    def find_images(self, prefix: str) -> list[Image]:
        rows = self.db.read(
            f"SELECT {self._IMAGE_COLS} FROM images WHERE fingerprint LIKE ? ESCAPE '\\'",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        return [self._image(r) for r in rows]

    def add_image(self, img: Image) -> None:
        try:
            with self.db.tx() as db:
                db.execute(
                    f"INSERT INTO images({self._IMAGE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (img.fingerprint, img.size, img.architecture, json.dumps(img.properties),
                     img.filename, int(img.public), img.created_at, img.uploaded_at,
                     img.last_used_at, json.dumps(img.cmd), json.dumps(img.env)),
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"Image with same fingerprint already exists: {img.fingerprint}") from None

    def update_image(self, img: Image) -> None:
        with self.db.tx() as db:
            db.execute(
                "UPDATE images SET properties=?, public=?, last_used_at=? WHERE fingerprint=?",
                (json.dumps(img.properties), int(img.public), img.last_used_at, img.fingerprint))

    def touch_image(self, fingerprint: str, when: float) -> None:
        """Set the image's ``last_used_at`` (one statement: every launch does
        it). Nothing for an image that is gone."""
        with self.db.tx() as db:
            db.execute("UPDATE images SET last_used_at=? WHERE fingerprint=?", (when, fingerprint))

    def image_run_config(self, fingerprint: str) -> tuple[list[str], dict[str, str]] | None:
        """The image's command and environment from its row (None: no row),
        without its aliases and properties: what every start reads."""
        row = self.db.read("SELECT cmd, env FROM images WHERE fingerprint=?",
                           (fingerprint,)).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def delete_image(self, fingerprint: str) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM aliases WHERE target=?", (fingerprint,))
            db.execute("DELETE FROM images WHERE fingerprint=?", (fingerprint,))

    # -- aliases ----------------------------------------------------------
    def list_aliases(self) -> list[Alias]:
        rows = self.db.read("SELECT name, target, description FROM aliases ORDER BY name")
        return [Alias(*r) for r in rows]

    def get_alias(self, name: str) -> Alias:
        row = self.db.read(
            "SELECT name, target, description FROM aliases WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"Image alias not found: {split_alias(name)[1]}")
        return Alias(*row)

    def add_alias(self, alias: Alias) -> None:
        try:
            with self.db.tx() as db:
                db.execute("INSERT INTO aliases(name, target, description) VALUES (?,?,?)",
                           (alias.name, alias.target, alias.description))
        except sqlite3.IntegrityError:
            raise Conflict(f"Alias already exists: {split_alias(alias.name)[1]}") from None

    def update_alias(self, alias: Alias) -> None:
        with self.db.tx() as db:
            cur = db.execute("UPDATE aliases SET target=?, description=? WHERE name=?",
                             (alias.target, alias.description, alias.name))
            if cur.rowcount == 0:
                raise NotFound(f"Image alias not found: {split_alias(alias.name)[1]}")

    def rename_alias(self, old: str, new: str) -> None:
        try:
            with self.db.tx() as db:
                cur = db.execute("UPDATE aliases SET name=? WHERE name=?", (new, old))
                if cur.rowcount == 0:
                    raise NotFound(f"Image alias not found: {split_alias(old)[1]}")
        except sqlite3.IntegrityError:
            raise Conflict(f"Alias already exists: {split_alias(new)[1]}") from None

    def delete_alias(self, name: str) -> None:
        with self.db.tx() as db:
            cur = db.execute("DELETE FROM aliases WHERE name=?", (name,))
            if cur.rowcount == 0:
                raise NotFound(f"Image alias not found: {split_alias(name)[1]}")

    # -- networks ---------------------------------------------------------------
    _NETWORK_COLS = "name, type, description, config, created_at"

    @staticmethod
    def _network(row: sqlite3.Row) -> Network:
        return Network(name=row[0], type=row[1], description=row[2],
                       config=json.loads(row[3]), created_at=row[4])

    def list_networks(self) -> list[Network]:
        rows = self.db.read(f"SELECT {self._NETWORK_COLS} FROM networks ORDER BY name")
        return [self._network(r) for r in rows]

    def get_network(self, name: str) -> Network:
        row = self.db.read(
            f"SELECT {self._NETWORK_COLS} FROM networks WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"Network not found: {name}")
        return self._network(row)

    def add_network(self, net: Network) -> None:
        try:
            with self.db.tx() as db:
                db.execute(f"INSERT INTO networks({self._NETWORK_COLS}) VALUES (?,?,?,?,?)",
                           (net.name, net.type, net.description, json.dumps(net.config),
                            net.created_at))
        except sqlite3.IntegrityError:
            raise Conflict(f"Network already exists: {net.name}") from None

    def update_network(self, net: Network) -> None:
        with self.db.tx() as db:
            cur = db.execute("UPDATE networks SET description=?, config=? WHERE name=?",
                             (net.description, json.dumps(net.config), net.name))
            if cur.rowcount == 0:
                raise NotFound(f"Network not found: {net.name}")

    def delete_network(self, name: str) -> None:
        """Remove a network row (its leases must be gone: Conflict otherwise)."""
        try:
            with self.db.tx() as db:
                cur = db.execute("DELETE FROM networks WHERE name=?", (name,))
                if cur.rowcount == 0:
                    raise NotFound(f"Network not found: {name}")
        except sqlite3.IntegrityError:
            raise Conflict(f"Network {name} still has address leases") from None

    # -- leases -------------------------------------------------------------------
    _LEASE_COLS = "id, network, instance, device, address, address6, hwaddr"

    @staticmethod
    def _lease(row: sqlite3.Row) -> Lease:
        return Lease(id=row[0], network=row[1], instance=row[2], device=row[3],
                     address=row[4], address6=row[5], hwaddr=row[6])

    def add_lease(self, network: str, instance: str, device: str, hwaddr: str,
                  choose: Callable[[set[str], set[str]], tuple[str, str]]) -> Lease:
        """Lease addresses on ``network`` in one transaction: ``choose(taken4,
        taken6)`` picks ``(address, address6)`` from what others hold (it may
        raise, e.g. Conflict when the subnet is full; nothing is written then).

        Raises:
            Conflict: ``instance`` already holds a lease for ``device``, or the
                chosen address is taken.
            NotFound: no such network.
        """
        try:
            with self.db.tx() as db:
                if db.execute("SELECT 1 FROM networks WHERE name=?", (network,)).fetchone() \
                        is None:
                    raise NotFound(f"Network not found: {network}")
                taken4, taken6 = set(), set()
                for a4, a6 in db.execute(
                        "SELECT address, address6 FROM leases WHERE network=?", (network,)):
                    if a4:
                        taken4.add(a4)
                    if a6:
                        taken6.add(a6)
                address, address6 = choose(taken4, taken6)
                if (address and address in taken4) or (address6 and address6 in taken6):
                    raise Conflict(f"Address {address or address6} on network {network} "
                                   "is already leased")
                cur = db.execute(
                    "INSERT INTO leases(network, instance, device, address, address6, hwaddr)"
                    " VALUES (?,?,?,?,?,?)", (network, instance, device, address, address6,
                                              hwaddr))
        except sqlite3.IntegrityError:
            raise Conflict(f"Instance {instance} already holds a lease for {device}") from None
        return Lease(id=int(cur.lastrowid or 0), network=network, instance=instance,
                     device=device, address=address, address6=address6, hwaddr=hwaddr)

    def list_leases(self, *, instance: str | None = None,
                    network: str | None = None) -> list[Lease]:
        q, args = f"SELECT {self._LEASE_COLS} FROM leases", []
        where = []
        if instance is not None:
            where.append("instance=?")
            args.append(instance)
        if network is not None:
            where.append("network=?")
            args.append(network)
        if where:
            q += " WHERE " + " AND ".join(where)
        rows = self.db.read(q + " ORDER BY id", args)
        return [self._lease(r) for r in rows]

    def delete_lease(self, lease_id: int) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM leases WHERE id=?", (lease_id,))

    # -- trusted certificates ---------------------------------------------------------
    def list_certificates(self) -> list[Certificate]:
        rows = self.db.read(
            "SELECT fingerprint, certificate, name, type, restricted, created_at"
            " FROM certificates ORDER BY created_at, fingerprint").fetchall()
        return [Certificate(fingerprint=r[0], certificate=r[1], name=r[2], type=r[3],
                            restricted=bool(r[4]), created_at=r[5]) for r in rows]

    def add_certificate(self, cert: Certificate) -> None:
        with self.db.tx() as db:
            try:
                db.execute("INSERT INTO certificates(fingerprint, type, name, certificate,"
                           " restricted, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           (cert.fingerprint, cert.type, cert.name, cert.certificate,
                            int(cert.restricted), cert.created_at))
            except sqlite3.IntegrityError:
                raise Conflict("Certificate already in trust store") from None

    def delete_certificate(self, fingerprint: str) -> None:
        with self.db.tx() as db:
            if db.execute("DELETE FROM certificates WHERE fingerprint=?",
                          (fingerprint,)).rowcount == 0:
                raise NotFound(f"Certificate not found: {fingerprint}")
