"""``LocalDriver``: cove's engine in this process, for programs that own the host.

Design notes:

* No coved, no HTTP: each step is the engine call coved's handler would
  make, and the answers are rendered with ``cove.api``, the module coved
  renders with, so a ``LocalDriver`` sees the very objects a ``RestDriver``
  gets from coved.
* One owner per root: the driver takes ``ROOT/coved.lock`` as coved does, so
  it refuses a root a coved serves (``Conflict``), and a coved started later
  on that root refuses to start. Containers outlive the driver (their
  monitors hold them); ``close()`` lets go of the root.
* The engine makes this process a child subreaper (conmon's monitors are
  adopted and reaped by it), as it does coved.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cove.client.drivers.base import (
    Action,
    Create,
    Delete,
    Driver,
    GetInstance,
    GetState,
    ListImages,
    Progress,
    RunCommand,
    Step,
    Update,
)
from cove.client.transports.local import EngineTransport
from cove.model.errors import Conflict, InternalError, NotFound

if TYPE_CHECKING:
    from cove.engine import Engine, Operation

__all__ = ["LocalDriver"]

DEFAULT_ROOT = "/var/lib/cove"


def _lock(root: Path) -> int:
    fd = os.open(root / "coved.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(f"{root} is in use by a coved (or another LocalDriver): "
                       "use RestDriver on its socket instead") from None
    return fd


class LocalDriver(Driver):
    """The cove root ``root`` (default ``$COVE_DIR`` or /var/lib/cove), in-process.

    Raises:
        Conflict: a coved (or another LocalDriver) holds the root.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        from cove.engine import Engine

        self.root = Path(root or os.environ.get("COVE_DIR") or DEFAULT_ROOT).absolute()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd: int | None = _lock(self.root)
        try:
            self.engine: Engine = Engine(self.root)
            self.engine.startup()
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise

    def __repr__(self) -> str:
        return f"LocalDriver({str(self.root)!r})"

    def close(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self.engine.operations.wait_idle(30)
            self.engine.close()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def transport_for(self, name: str) -> EngineTransport:
        from cove.model.names import validate_instance_name

        return EngineTransport(self.engine, validate_instance_name(name))

    # -- steps --------------------------------------------------------------------------
    def _wait(self, op: Operation, progress: Any = None) -> None:
        if progress is not None:
            last: list[Any] = [None]

            def report(o: Operation) -> None:
                prog = o.metadata.get("progress")
                if isinstance(prog, dict) and prog != last[0]:
                    last[0] = dict(prog)
                    pct = str(prog.get("percent") or "")
                    progress(Progress(str(prog.get("stage") or ""),
                                      int(pct) if pct.isdigit() else None,
                                      str(prog.get("text") or "")))
            op.add_listener(report)
        op.wait()
        op.raise_for_error()

    def _do(self, step: Step) -> Any:
        from cove import api

        e = self.engine
        if isinstance(step, GetInstance):
            try:
                return api.instance(e.instances.get(step.name))
            except NotFound:
                return None
        if isinstance(step, GetState):
            return e.instances.state(step.name)
        if isinstance(step, ListImages):
            return [api.image(img) for img in e.images.all()]
        if isinstance(step, Create):
            step.post.source.image_ref()  # refused before the engine looks, as coved does
            self._wait(e.instances.create(step.post), step.progress)
            return None
        if isinstance(step, Update):
            put = api.InstancePut.from_wire(step.body)
            e.instances.update(step.name, config=put.config, devices=put.devices,
                              profiles=put.profiles, description=put.description,
                              ephemeral=put.ephemeral, patch=step.patch)
            return None
        if isinstance(step, Action):
            self._wait(e.instances.change_state(step.name, step.action, timeout=step.timeout,
                                      force=step.force), step.progress)
            return None
        if isinstance(step, Delete):
            self._wait(e.instances.delete(step.name))
            return None
        if isinstance(step, RunCommand):
            return self._command_in(step)
        raise InternalError(f"LocalDriver has no call for {type(step).__name__}")
