"""The host: instances, images, operations and locks; reconciles what is
recorded with what runs. The server and the local driver call the same
``Engine`` methods."""

from cove.engine._engine import Engine
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.types import ExecSession, FileInfo

__all__ = [
    "Engine",
    "EventBus",
    "ExecSession",
    "FileInfo",
    "Operation",
    "Operations",
]
