"""Driver steps as LXD API requests, for the sync and the asyncio REST drivers.

Design note: each step is a generator that yields ``_wire.Request`` objects
and is sent back the ``Response`` of each; it never touches a socket. The
sync ``RestDriver`` drives it with ``drive_http`` over ``Client.send``, the
``AsyncRestDriver`` with ``adrive_http`` over aiohttp. What a step means on
the wire (which request, how an operation is waited on, which answer means
"not there") therefore exists once for both.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any, TypeVar

from cove import api
from cove.client import _wire as wire
from cove.client._http import Response
from cove.client._rest import Operation
from cove.client.drivers.base import (
    Action,
    Create,
    Delete,
    GetInstance,
    GetState,
    ListImages,
    Progress,
    ProgressCallback,
    RunCommand,
    Step,
    Update,
)
from cove.model.errors import InternalError, NotFound

__all__ = ["HttpFlow", "perform", "progress_of", "wait"]

T = TypeVar("T")
HttpFlow = Generator[wire.Request, Response, T]

_FINAL = ("Success", "Failure", "Cancelled")
_PERCENT = re.compile(r"(\d{1,3})%")


def progress_of(op: dict[str, Any]) -> Progress | None:
    """The progress an operation reports: cove's (and newer LXD's)
    ``metadata.progress`` object, or LXD 5.0's ``*_progress`` strings
    (``"Unpack: 45% (30MB/s)"``)."""
    md = op.get("metadata") or {}
    if not isinstance(md, dict):
        return None
    prog = md.get("progress")
    if isinstance(prog, dict) and prog.get("stage"):
        pct = str(prog.get("percent") or "")
        return Progress(str(prog["stage"]), int(pct) if pct.isdigit() else None,
                        str(prog.get("text") or prog.get("speed") or ""))
    for key, value in md.items():
        if key.endswith("_progress") and isinstance(value, str):
            m = _PERCENT.search(value)
            stage = key.removesuffix("_progress").rsplit("_", 1)[-1]
            return Progress(stage, int(m.group(1)) if m else None, value)
    return None


def wait(op: dict[str, Any], progress: ProgressCallback | None = None) -> HttpFlow[dict[str, Any]]:
    """Wait for an operation to end; return it, or raise its error.

    With a ``progress`` callback it is polled every second (LXD's
    ``/wait?timeout=1``) and each new report passed on; without, one
    request waits as long as it takes.
    """
    last: Progress | None = None
    while str(op.get("status")) not in _FINAL:
        resp = yield wire.wait_operation(str(op["id"]), 1 if progress else None)
        op = wire.as_dict(resp, "operation wait")
        if progress is not None:
            now = progress_of(op)
            if now is not None and now != last:
                progress(now)
                last = now
    Operation.from_dict(op).raise_for_error()
    return op


def _run_recorded(step: RunCommand) -> HttpFlow[tuple[int, bytes]]:
    """exec with ``record-output``: no websockets; the exit code from the
    operation, stdout from the log file it names (then removed)."""
    resp = yield wire.exec_command(step.name, list(step.command), websockets=False)
    op = wire.operation_of(resp)
    try:
        op = yield from wait(op)
    except (InternalError, NotFound):
        # LXD fails the operation of every exec that exits 127 or 126, with
        # "return" beside the error; that is an exit code here.
        resp = yield wire.operation(str(op["id"]))
        op = wire.as_dict(resp, "exec operation")
        if (op.get("metadata") or {}).get("return") is None:
            raise
    md = op.get("metadata") or {}
    out = b""
    logs = md.get("output") or {}
    for fd, path in sorted(logs.items()):
        resp = yield wire.Request("GET", str(path))
        if fd == "1" and resp.status == 200:
            out = resp.body
        yield wire.Request("DELETE", str(path))  # exec logs are kept until deleted
    return int(md.get("return") or 0), out


def perform(step: Step) -> HttpFlow[Any]:
    """The requests one step takes, and its result (see ``drivers.base``)."""
    if isinstance(step, GetInstance):
        resp = yield wire.instance(step.name)
        if resp.status == 404:
            return None
        return wire.as_dict(resp, f"instance {step.name}")
    if isinstance(step, GetState):
        return wire.as_dict((yield wire.instance_state(step.name)), f"state of {step.name}")
    if isinstance(step, ListImages):
        return wire.as_list((yield wire.images()), "images")
    if isinstance(step, Create):
        resp = yield wire.create_instance(step.post)
        yield from wait(wire.operation_of(resp), step.progress)
        return None
    if isinstance(step, Update):
        resp = yield wire.update_instance(step.name, api.InstancePut.from_wire(step.body),
                                          patch=step.patch)
        yield from wait(wire.operation_of(resp))
        return None
    if isinstance(step, Action):
        resp = yield wire.change_state(step.name, step.action, timeout=step.timeout,
                                       force=step.force)
        yield from wait(wire.operation_of(resp), step.progress)
        return None
    if isinstance(step, Delete):
        yield from wait(wire.operation_of((yield wire.delete_instance(step.name))))
        return None
    if isinstance(step, RunCommand):
        return (yield from _run_recorded(step))
    raise InternalError(f"The REST driver has no request for {type(step).__name__}")
