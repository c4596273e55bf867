"""What a session flow asks of its host, as data: the few calls sessions
need, each answered the same way by every kind of driver.

Design notes:

* The flows of ``sessions._flows`` yield these steps; a *performer* turns
  each into I/O: ``_perform_rest`` as LXD API requests (the sync and the
  asyncio managers share it), ``_perform_host`` as ``lxc``/``cove``
  commands (``CliDriver``) or engine calls (``LocalDriver``). So a session
  behaves alike on coved, LXD or Incus, over REST, a command line or
  in-process.
* Every step carries the project it acts in (None: the driver's own);
  ``sessions._flows.scoped`` fills in the realm's.
* ``Get*`` steps answer None for what is not there (flows decide by
  looking); a change that fails raises a ``cove.model.errors`` class, as
  precise as the driver can tell (a command line gives a message, not a
  status: ``InternalError`` where a REST host says ``Conflict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cove import api

__all__ = [
    "ChangeState",
    "CreateInstance",
    "CreateProject",
    "DeleteInstance",
    "GetAlias",
    "GetImage",
    "GetInstance",
    "GetProject",
    "HasProjects",
    "ListInstances",
    "PatchInstance",
    "Pause",
    "SessionStep",
    "in_project",
]


class Pause:
    """A flow asks its runner to wait ``seconds`` (sync: sleep; asyncio:
    ``asyncio.sleep``) and sends back None."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


@dataclass(frozen=True)
class _Step:
    project: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class HasProjects(_Step):
    """Whether the host has LXD projects (the ``projects`` API extension): bool."""


@dataclass(frozen=True)
class GetProject(_Step):
    """The project ``name`` (its LXD object), or None."""

    name: str


@dataclass(frozen=True)
class CreateProject(_Step):
    """Create a project (``body``: LXD's ``ProjectsPost``)."""

    body: dict[str, Any]


@dataclass(frozen=True)
class GetAlias(_Step):
    """The image alias ``name`` (LXD's object, ``target`` its fingerprint), or None."""

    name: str


@dataclass(frozen=True)
class GetImage(_Step):
    """The image a fingerprint (or a unique prefix of one) names, or None."""

    fingerprint: str


@dataclass(frozen=True)
class GetInstance(_Step):
    """The LXD instance object (``config`` holds the labels), or None."""

    name: str


@dataclass(frozen=True)
class ListInstances(_Step):
    """The instances (LXD objects) LXD's ``?filter=`` expression ``filter`` keeps."""

    filter: str


@dataclass(frozen=True)
class CreateInstance(_Step):
    """Create the instance ``post`` describes and wait until it is made."""

    post: api.InstancesPost


@dataclass(frozen=True)
class ChangeState(_Step):
    """``start`` or ``stop`` (``force``) the instance, and wait.
    NotFound when it is not there."""

    name: str
    action: str
    force: bool = False


@dataclass(frozen=True)
class PatchInstance(_Step):
    """Merge ``body`` (``config``, ``devices``) into the instance, and wait."""

    name: str
    body: dict[str, Any]


@dataclass(frozen=True)
class DeleteInstance(_Step):
    """Delete the (stopped) instance, and wait. NotFound when it is not there."""

    name: str


SessionStep = (HasProjects | GetProject | CreateProject | GetAlias | GetImage | GetInstance
               | ListInstances | CreateInstance | ChangeState | PatchInstance | DeleteInstance)


def in_project(step: Any, project: str | None) -> Any:
    """``step`` in ``project`` unless it names its own (a ``Pause`` as it is)."""
    if project is None or not isinstance(step, _Step) or step.project is not None:
        return step
    return replace(step, project=project)
