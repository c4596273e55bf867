"""Where a pulled image came from: LXD's ``cached``, ``auto_update`` and
``update_source`` of an image, one row per image fingerprint.

Design note: a row exists only for an image pulled from a remote server; an
uploaded or published image has none (``cached`` false, no
``update_source``). The row goes with its image (``ON DELETE CASCADE`` on
``images``), so a deleted image leaves nothing here. ``alias`` is what the
pull asked for (LXD refreshes an image by asking its server for that alias
again); ``certificate`` pins the server's certificate for the refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from cove.store._conn import Database

__all__ = ["ImageSource", "ImageSourceRows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_sources (
    fingerprint TEXT PRIMARY KEY REFERENCES images(fingerprint) ON DELETE CASCADE,
    server TEXT NOT NULL,
    protocol TEXT NOT NULL,
    alias TEXT NOT NULL DEFAULT '',
    certificate TEXT NOT NULL DEFAULT '',
    cached INTEGER NOT NULL DEFAULT 0,
    auto_update INTEGER NOT NULL DEFAULT 0,
    refreshed_at REAL NOT NULL DEFAULT 0
);
"""

_COLS = "fingerprint, server, protocol, alias, certificate, cached, auto_update, refreshed_at"


@dataclass
class ImageSource:
    """The source of one pulled image (LXD's ``ImageSource`` plus its flags)."""

    fingerprint: str
    server: str
    protocol: str
    alias: str = ""
    certificate: str = ""
    cached: bool = False
    auto_update: bool = False
    refreshed_at: float = 0.0

    def update_source(self) -> dict[str, str]:
        """LXD's ``update_source`` object."""
        return {"alias": self.alias, "certificate": self.certificate,
                "protocol": self.protocol, "server": self.server, "image_type": "container"}


def _row(r: tuple[object, ...]) -> ImageSource:
    return ImageSource(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), bool(r[5]),
                       bool(r[6]), float(r[7]))  # type: ignore[arg-type]


class ImageSourceRows:
    """The ``image_sources`` table. Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_SCHEMA)

    def all(self) -> list[ImageSource]:
        return [_row(tuple(r)) for r in
                self.db.read(f"SELECT {_COLS} FROM image_sources ORDER BY fingerprint")]

    def get(self, fingerprint: str) -> ImageSource | None:
        rows = self.db.read(f"SELECT {_COLS} FROM image_sources WHERE fingerprint=?",
                            (fingerprint,))
        row = rows.fetchone()
        return None if row is None else _row(tuple(row))

    def put(self, src: ImageSource) -> None:
        """Insert or replace the row of ``src.fingerprint`` (its image row must exist)."""
        with self.db.tx() as db:
            db.execute(f"INSERT OR REPLACE INTO image_sources({_COLS}) VALUES (?,?,?,?,?,?,?,?)",
                       (src.fingerprint, src.server, src.protocol, src.alias, src.certificate,
                        int(src.cached), int(src.auto_update), src.refreshed_at))

    def set_flags(self, fingerprint: str, *, cached: bool | None = None,
                  auto_update: bool | None = None) -> None:
        """Change ``cached``/``auto_update`` of an existing row (no row: nothing)."""
        with self.db.tx() as db:
            if cached is not None:
                db.execute("UPDATE image_sources SET cached=? WHERE fingerprint=?",
                           (int(cached), fingerprint))
            if auto_update is not None:
                db.execute("UPDATE image_sources SET auto_update=? WHERE fingerprint=?",
                           (int(auto_update), fingerprint))

    def delete(self, fingerprint: str) -> None:
        with self.db.tx() as db:
            db.execute("DELETE FROM image_sources WHERE fingerprint=?", (fingerprint,))
