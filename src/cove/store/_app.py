"""The app-stack intents (starts in dependency order that coved has begun),
the last health states (``AppHealthRows``) and the runs found ready
(``AppReadyRows``), below.

Design note: a start that first brings up what an instance depends on is a
multi-step change across instances; its intent is recorded here before the
first dependency is touched and dropped once the instance itself runs, so
a coved killed half-way finds it at its next start and finishes the order
(``engine._deps``), never leaving a half-started stack unexplained.
"""

from __future__ import annotations

from cove.store._conn import Database

__all__ = ["AppHealthRows", "AppIntentRows", "AppReadyRows"]

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


_HEALTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS app_health (
    instance TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    failing_streak INTEGER NOT NULL,
    output TEXT NOT NULL,
    checked_at REAL NOT NULL
);
"""


class AppHealthRows:
    """The ``app_health`` table: the last health state of each running
    instance with a health check (instance keys), so that a new coved shows
    it until its next probe. Written only when the state changes, never per
    passing probe. Every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_HEALTH_SCHEMA)

    def put(self, instance: str, status: str, failing_streak: int, output: str,
            checked_at: float) -> None:
        """Record (or replace) the state of ``instance``. Idempotent."""
        with self.db.tx() as db:
            db.execute("INSERT OR REPLACE INTO app_health (instance, status, failing_streak, "
                       "output, checked_at) VALUES (?, ?, ?, ?, ?)",
                       (instance, status, failing_streak, output, checked_at))

    def remove(self, instance: str) -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM app_health WHERE instance = ?", (instance,))

    def all(self) -> dict[str, tuple[str, int, str, float]]:
        """Instance key -> (status, failing_streak, output, checked_at)."""
        return {str(r[0]): (str(r[1]), int(r[2]), str(r[3]), float(r[4])) for r in self.db.read(
            "SELECT instance, status, failing_streak, output, checked_at FROM app_health")}


_READY_SCHEMA = """
CREATE TABLE IF NOT EXISTS app_ready (
    instance TEXT PRIMARY KEY,
    started_at REAL NOT NULL
);
"""


class AppReadyRows:
    """The ``app_ready`` table: the run of each instance whose ``cove.ready``
    probe passed (instance key -> that run's start, its ``last_used_at``),
    so that a new coved still counts it ready while that run lasts. Written
    once per run, when the probe first passes, and dropped at its stop; a
    row whose run is over is told apart by its start. Every method is one
    transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.script(_READY_SCHEMA)

    def put(self, instance: str, started_at: float) -> None:
        """Record (or replace) the ready run of ``instance``. Idempotent."""
        with self.db.tx() as db:
            db.execute("INSERT OR REPLACE INTO app_ready (instance, started_at) VALUES (?, ?)",
                       (instance, started_at))

    def remove(self, instance: str) -> None:
        """Idempotent."""
        with self.db.tx() as db:
            db.execute("DELETE FROM app_ready WHERE instance = ?", (instance,))

    def all(self) -> dict[str, float]:
        """Instance key -> the start of its run found ready."""
        return {str(r[0]): float(r[1]) for r in self.db.read(
            "SELECT instance, started_at FROM app_ready")}
