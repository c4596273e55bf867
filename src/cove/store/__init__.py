"""SQLite persistence; the only package that writes SQL."""

from cove.store._db import Store

__all__ = ["Store"]
