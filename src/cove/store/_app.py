"""The app-stack intents: starts in dependency order that coved has begun.

Design note: a start that first brings up what an instance depends on is a
multi-step change across instances; its intent is recorded here before the
first dependency is touched and dropped once the instance itself runs, so
a coved killed half-way finds it at its next start and finishes the order
(``engine._deps``), never leaving a half-started stack unexplained.
"""

from __future__ import annotations

from cove.store._conn import Database

__all__ = ["AppIntentRows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS app_intents (
    instance TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class AppIntentRows:
    """The ``app_intents`` table (instance keys). Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_SCHEMA)

    def add(self, instance: str, action: str, created_at: float) -> None:
        """Record (or replace) the intent of ``instance``. Idempotent."""
        with self.db.tx() as db:
            db.execute("INSERT OR REPLACE INTO app_intents (instance, action, created_at) "
                       "VALUES (?, ?, ?)", (instance, action, created_at))

    def remove(self, instance: str) -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM app_intents WHERE instance = ?", (instance,))

    def all(self) -> dict[str, str]:
        """Instance key -> action, oldest first."""
        return {str(r[0]): str(r[1]) for r in self.db.read(
            "SELECT instance, action FROM app_intents ORDER BY created_at, instance")}
