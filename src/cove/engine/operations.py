"""Operations: long actions as objects, and the per-instance locks they hold.

Design note: an Operation is created by the engine, runs its work in a
thread, and can be waited on by anyone (the server's ``/wait`` handler, the
local driver, a test). The registry doubles as the lock table: an operation
that names ``lock=("instances", NAME)`` refuses to start while another
operation holds that key, with a Conflict that names the one in flight, or
waits for it when the caller asks to. That is how two starts, or a delete
during a start, never race.

Operations are kept in memory, as LXD does, and a finished one leaves the
list five seconds after it ends (LXD's ``operations.go`` deletes it then),
so a busy host does not grow without bound. A client that asks for one by
id a little later (``GET .../ID/wait`` from a slow client right after the
202) still finds it: the last ``_RECENT_MAX`` finished operations stay
reachable by id, unlisted, for five minutes. Memory is bounded by what
runs plus those few. Pruning happens whenever the registry is touched, so
no timer thread is needed. ``COVE_OPERATIONS_EXPIRY`` (seconds, in coved's
environment) changes the 5 s, as ``COVE_METRICS_CACHE`` does the metrics
cache: the conformance suite's coved sets it so its test of the pruning
waits 3.5 s, not 6.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from cove.model.errors import Conflict, CoveError, InternalError, NotFound, Timeout, as_cove_error
from cove.model.states import OperationStatus

__all__ = ["Operation", "OperationContext", "Operations"]

_LISTED_AFTER_END = 5.0  # LXD: an ended operation is deleted 5 s later
_RECENT_AFTER_END = 300.0  # ...but cove still answers for it by id this long
_RECENT_MAX = 256  # ...for this many at most


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class Operation:
    """One long action. Thread-safe; ``wait()`` blocks until it ends."""

    def __init__(self, cls: str, description: str, resources: dict[str, list[str]],
                 may_cancel: bool = False) -> None:
        self.id = str(uuid.uuid4())
        self.cls = cls  # "task", "websocket" or "token"
        self.description = description
        self.resources = resources
        self.may_cancel = may_cancel
        self.project = "default"  # whose it is: ?project= lists and events filter on it
        self.created_at = time.time()
        self.updated_at = self.created_at
        self.status = OperationStatus.RUNNING
        self.metadata: dict[str, Any] = {}
        self.err = ""
        self.error: CoveError | None = None
        self.result: Any = None
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._listeners: list[Callable[[Operation], None]] = []
        self._on_cancel: list[Callable[[], None]] = []

    # -- observers ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The LXD wire form of this operation."""
        return {
            "id": self.id,
            "class": self.cls,
            "description": self.description,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "status": self.status.value,
            "status_code": self.status.code,
            "resources": {k: list(v) for k, v in self.resources.items()},
            "metadata": self._wire_metadata(),
            "may_cancel": self.may_cancel,
            "err": self.err,
            "location": "none",
        }

    def _wire_metadata(self) -> dict[str, Any] | None:
        meta = dict(self.metadata)
        if self.error is not None:
            # cove extension: the HTTP status of the failure, so a client can
            # raise the error class a synchronous call would have raised.
            # In metadata, where LXD clients that do not know it ignore it.
            meta["cove.error_code"] = self.error.status
        return meta or None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the operation ends; True if it did within ``timeout``."""
        return self._done.wait(timeout)

    def raise_for_error(self) -> None:
        """Raise the operation's error, if it failed."""
        if self.status is OperationStatus.FAILURE:
            raise self.error or InternalError(self.err)
        if self.status is OperationStatus.CANCELLED:
            raise InternalError("Operation cancelled")

    def add_listener(self, fn: Callable[[Operation], None]) -> None:
        self._listeners.append(fn)

    # -- progress from the worker ---------------------------------------------
    def update(self, **metadata: Any) -> None:
        """Merge ``metadata`` (progress, fds, return code) and tell listeners.
        Copy on write: a reader serialising the old dict never sees it change."""
        self.metadata = {**self.metadata, **metadata}
        self.updated_at = time.time()
        self._notify()

    def progress(self, stage: str, percent: int | None = None, text: str = "") -> None:
        """Report progress the way LXD does: ``metadata.progress`` (stage,
        percent; cove adds ``text``) and one ``<action>_progress`` line,
        which is what ``lxc`` prints (``Copying the upper layer: 42%``)."""
        prog: dict[str, str] = {"stage": stage}
        if percent is not None:
            prog["percent"] = str(percent)
        if text:
            prog["text"] = text
        action = "_".join(stage.lower().split()) + "_progress"
        shown = f"{stage}: {percent}%" if percent is not None else stage
        # LXD keeps one such line: the current stage's
        self.metadata = {k: v for k, v in self.metadata.items() if not k.endswith("_progress")}
        self.update(progress=prog, **{action: shown})

    def cancel(self) -> None:
        """Ask the operation to stop: its cancel hooks run (in the caller's
        thread) and it ends CANCELLED once its work returns. Idempotent; a
        finished operation is left as it is.

        Raises:
            Conflict: the operation cannot be cancelled.
        """
        if not self.may_cancel:
            raise Conflict(f"Operation {self.id} cannot be cancelled")
        if self.done or self._cancel.is_set():
            return
        self._cancel.set()
        for fn in list(self._on_cancel):
            try:
                fn()
            except Exception:
                logging.getLogger("cove.engine").exception("operation cancel hook failed")

    def on_cancel(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the operation is cancelled (now, if it already
        was); the way a running body learns it must stop."""
        self._on_cancel.append(fn)
        if self._cancel.is_set() and not self.done:
            fn()

    def _finish(self, status: OperationStatus, error: CoveError | None = None) -> None:
        self.status = status
        self.error = error
        self.err = str(error) if error else ""
        self.updated_at = time.time()
        self._done.set()
        self._notify()

    def _notify(self) -> None:
        for fn in list(self._listeners):
            try:
                fn(self)
            except Exception:
                logging.getLogger("cove.engine").exception("operation listener failed")


OperationContext = Operation


def _listed_after_end() -> float:
    """LXD's 5 s, or ``COVE_OPERATIONS_EXPIRY`` seconds when that is a
    number of zero or more (anything else: the 5 s, never a failed start)."""
    try:
        value = float(os.environ.get("COVE_OPERATIONS_EXPIRY", ""))
    except ValueError:
        return _LISTED_AFTER_END
    return value if 0 <= value < float("inf") else _LISTED_AFTER_END


class Operations:
    """The registry of operations and the lock table.

    ``on_change`` is called (from worker threads) every time an operation is
    created, updated or ends; the events stream hangs off it.
    """

    def __init__(self, on_change: Callable[[Operation], None] | None = None) -> None:
        self.listed_after_end = _listed_after_end()
        self._ops: dict[str, Operation] = {}
        # ended operations no longer listed, oldest first
        self._recent: collections.OrderedDict[str, Operation] = collections.OrderedDict()
        self._locks: dict[str, Operation] = {}
        self._cond = threading.Condition()
        self._on_change = on_change

    def get(self, op_id: str) -> Operation:
        """Raises: NotFound for an unknown (or expired) operation."""
        with self._cond:
            self._reap()
            op = self._ops.get(op_id) or self._recent.get(op_id)
        if op is None:
            raise NotFound(f"Operation not found: {op_id}")
        return op

    def all(self) -> list[Operation]:
        """Every operation listed: running, or ended less than five seconds ago
        (``listed_after_end``)."""
        with self._cond:
            self._reap()
            return list(self._ops.values())

    def holder(self, key: str) -> Operation | None:
        """The operation holding lock ``key``, None when it is free."""
        with self._cond:
            return self._locks.get(key)

    def run(self, fn: Callable[[Operation], Any], *, description: str,
            resources: dict[str, list[str]] | None = None,
            lock: str | tuple[str, ...] | None = None, wait_for_lock: float = 0.0, cls: str = "task", may_cancel: bool = False,
            background: bool = True, project: str = "default",
            check: Callable[[], None] | None = None) -> Operation:
        """Create an operation that runs ``fn(op)`` and return it.

        ``lock`` names a key (``instance:NAME``), or several (a copy holds its
        source's and its target's), held for the operation's life.
        If another operation holds one, raise Conflict naming that operation,
        unless ``wait_for_lock`` > 0, in which case wait that long for it.
        With ``background=False`` the work runs in the calling thread.

        ``check`` runs as each lock is taken, under the table's own lock: what
        it raises takes no lock and makes no operation. A create passes "the
        name is free" here: checked before, a create that met no lock but an
        instance made meanwhile would hold the new instance's lock while it
        failed, and the maker's next action (its start) would be refused as
        busy with somebody else's failed create.

        Raises:
            Conflict: the lock is held (and stayed held for ``wait_for_lock``).
        """
        op = Operation(cls, description, resources or {}, may_cancel)
        op.project = project
        if self._on_change is not None:
            op.add_listener(self._on_change)
        keys = (lock,) if isinstance(lock, str) else tuple(lock or ())
        for i, key in enumerate(keys):
            try:
                self._acquire(key, op, wait_for_lock, check)
            except BaseException:
                for held in keys[:i]:
                    self._release(held, op)
                raise
        with self._cond:
            self._reap()
            self._ops[op.id] = op

        def work() -> None:
            error: CoveError | None = None
            try:
                op.result = fn(op)
            except CoveError as e:
                error = e
            except Exception as e:
                error = as_cove_error(e)
                if error.status == 500:
                    logging.getLogger("cove.engine").error(
                        "operation %s failed", op.id, exc_info=e)
            finally:
                # before the waiters wake: whoever waited for this operation may
                # act on the instance at once without meeting its lock
                for key in keys:
                    self._release(key, op)
            if op.cancelled:  # what failed after a cancel failed because of it
                op._finish(OperationStatus.CANCELLED)
            elif error is not None:
                op._finish(OperationStatus.FAILURE, error)
            else:
                op._finish(OperationStatus.SUCCESS)

        op._notify()
        if background:
            threading.Thread(target=work, name=f"op-{op.id[:8]}", daemon=True).start()
        else:
            work()
        return op

    def _acquire(self, key: str, op: Operation, wait: float,
                 check: Callable[[], None] | None = None) -> None:
        deadline = time.monotonic() + wait
        with self._cond:
            while key in self._locks:
                held = self._locks[key]
                left = deadline - time.monotonic()
                if left <= 0:
                    what = key.split(":", 1)[-1]
                    raise Conflict(f"{what} is busy: operation {held.id} "
                                   f"({held.description}) is in flight")
                self._cond.wait(left)
            if check is not None:
                check()
            self._locks[key] = op

    def _release(self, key: str, op: Operation) -> None:
        with self._cond:
            if self._locks.get(key) is op:
                del self._locks[key]
            self._cond.notify_all()

    def _reap(self) -> None:
        """Unlist operations ended over 5 s ago; forget the recent ones past
        their time or their number. Caller holds ``_cond``."""
        now = time.time()
        for op_id, op in list(self._ops.items()):
            if op.done and now - op.updated_at > self.listed_after_end:
                del self._ops[op_id]
                self._recent[op_id] = op
        while self._recent:
            op_id, op = next(iter(self._recent.items()))
            if len(self._recent) <= _RECENT_MAX and now - op.updated_at <= _RECENT_AFTER_END:
                break
            del self._recent[op_id]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no operation holds a lock (used at shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._locks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def wait_or_timeout(op: Operation, timeout: float) -> None:
    if not op.wait(timeout):
        raise Timeout(f"Operation {op.id} did not finish within {timeout}s")
