"""Which state changes an instance's status allows (LXD's messages)."""

from __future__ import annotations

from cove.model.errors import BadRequest
from cove.model.records import Instance
from cove.model.states import Status

__all__ = ["check_transition"]


def check_transition(inst: Instance, action: str) -> None:
    """Raises: BadRequest (LXD's words) when ``inst``'s status refuses ``action``."""
    s = inst.status
    if action == "start" and s is not Status.STOPPED:
        raise BadRequest("The instance is already running")
    if action in ("stop",) and s is Status.STOPPED:
        raise BadRequest("The instance is already stopped")
    if action == "freeze" and s is not Status.RUNNING:
        raise BadRequest("The instance is not running" if s is Status.STOPPED
                         else "The instance is already frozen")
    if action == "unfreeze" and s is not Status.FROZEN:
        raise BadRequest("The instance is not frozen")
