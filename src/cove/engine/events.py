"""The event bus: lifecycle, operation and logging events, as LXD sends them.

Subscribers get a bounded queue each; a slow subscriber loses its oldest
events rather than slowing the engine down.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["EventBus", "Subscription"]


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class Subscription:
    def __init__(self, bus: EventBus, types: set[str] | None,
                 notify: Callable[[], None] | None) -> None:
        self.bus = bus
        self.types = types
        self.notify = notify
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.cond = threading.Condition()

    def push(self, event: dict[str, Any]) -> None:
        if self.types and event["type"] not in self.types:
            return
        with self.cond:
            self.queue.append(event)
            self.cond.notify_all()
        if self.notify is not None:
            self.notify()

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        with self.cond:
            if not self.queue:
                self.cond.wait(timeout)
            return self.queue.popleft() if self.queue else None

    def drain(self) -> list[dict[str, Any]]:
        with self.cond:
            items = list(self.queue)
            self.queue.clear()
            return items

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, types: set[str] | None = None,
                  notify: Callable[[], None] | None = None) -> Subscription:
        """Subscribe to ``types`` (``operation``, ``lifecycle``, ``logging``; None = all).

        ``notify`` is called from the publishing thread after each event is queued.
        """
        sub = Subscription(self, types, notify)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``. Idempotent."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def wanted(self, type_: str) -> bool:
        """Whether a subscriber takes events of ``type_`` now: a publisher may
        skip building one that nobody would get."""
        with self._lock:
            return any(not s.types or type_ in s.types for s in self._subs)

    def publish(self, type_: str, metadata: dict[str, Any], *,
                project: str = "default") -> None:
        """Send an event (of ``project``) to every subscriber of its type. Never raises."""
        event = {"type": type_, "timestamp": _now(), "metadata": metadata,
                 "location": "none", "project": project}
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.push(event)

    def lifecycle(self, action: str, source: str, *, project: str = "default",
                  **context: Any) -> None:
        """Publish LXD's ``lifecycle`` event ``action`` on ``source`` (of ``project``)."""
        self.publish("lifecycle", {"action": action, "source": source, "context": context},
                     project=project)
