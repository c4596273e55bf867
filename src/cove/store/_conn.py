"""The one SQLite connection under cove's state: WAL mode, one lock, a
transaction per change. Every table module of ``cove.store`` goes through it.

Design note: coved runs each operation in a short-lived thread, and a
connection per thread would be left to the garbage collector to close (three
fds each); SQLite serialises writers anyway. So there is one connection behind
one lock, and reads fetch all their rows under it: no cursor outlives a call.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Database", "Rows"]


class Rows(list):  # type: ignore[type-arg]
    """The rows of a finished query, with the cursor calls callers use."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


def _owner_only(path: Path) -> None:
    """Make the database file 0600 before SQLite opens it (its ``-wal`` and
    ``-shm`` files take the database's mode when SQLite makes them); files of
    a root made by an older cove are narrowed too. Defence in depth: the root
    is 0700 (0710 for coved's ``--group``), and LXD's database is not
    world-readable either."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for p in (str(path), f"{path}-wal", f"{path}-shm"):
        try:
            os.chmod(p, 0o600)
        except FileNotFoundError:
            pass


class Database:
    """The connection, its lock and the two ways in: ``read`` and ``tx``."""

    def __init__(self, path: Path) -> None:
        _owner_only(path)
        self._lock = threading.RLock()
        self._unique = 0  # version()'s values inside a transaction: -1, -2, ...
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")

    def version(self) -> tuple[int, int]:
        """A value that is new after any change of any table: the rows this
        connection changed so far (SQLite's ``total_changes``, rolled-back
        ones too) and ``PRAGMA data_version`` (commits by other
        connections). Read it before a query to know later whether that
        query could answer differently now. Inside a transaction (of this
        thread: the lock is held) it is a value never given before, as what
        is read there may yet be rolled back."""
        with self._lock:
            if self._db.in_transaction:
                self._unique -= 1
                return (self._unique, 0)
            return (self._db.total_changes,
                    int(self._db.execute("PRAGMA data_version").fetchone()[0]))

    def script(self, ddl: str) -> None:
        """Run schema statements (``CREATE ... IF NOT EXISTS``: idempotent).
        executescript commits on its own, so this runs outside ``tx``."""
        with self._lock:
            self._db.executescript(ddl)

    def columns(self, table: str) -> set[str]:
        """The column names ``table`` has now (for additive migrations)."""
        with self._lock:
            return {str(r[1]) for r in self._db.execute(f"PRAGMA table_info({table})")}

    def read(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        """One query; every row is fetched under the lock."""
        with self._lock:
            return Rows(self._db.execute(sql, args).fetchall())

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), rolled back on any error."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
