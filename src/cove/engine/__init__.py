"""The host, as services composed in one root: instances, access, images,
networks, profiles, trust, operations and events (see ``_engine``). The
server and the local driver call the same service methods."""

from cove.engine._access import Access
from cove.engine._console import Console
from cove.engine._engine import Engine
from cove.engine._exec_out import Reader, close_stdin
from cove.engine._images import Images
from cove.engine._instances import Instances
from cove.engine._networks import NETWORK_TYPES, Networks
from cove.engine._profiles import Profiles
from cove.engine._trust import Trust
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.types import ConsoleSession, ExecSession, FileInfo

__all__ = [
    "NETWORK_TYPES",
    "Access",
    "Console",
    "ConsoleSession",
    "Engine",
    "EventBus",
    "ExecSession",
    "FileInfo",
    "Images",
    "Instances",
    "Networks",
    "Operation",
    "Operations",
    "Profiles",
    "Reader",
    "Trust",
    "close_stdin",
]
