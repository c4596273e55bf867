"""``EventStream``: an open subscription to a host's events, as every
event-capable driver (``base.EventDriver``) returns it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

    from cove import api

__all__ = ["EventStream"]


class EventStream(ABC):
    """An open subscription to a host's events: iterate it (each item an
    ``api.Event``, in the order the host sent them) and close it, or use it
    as a context manager. Iteration ends when the host ends the stream."""

    @abstractmethod
    def get(self, timeout: float | None = None) -> api.Event | None:
        """The next event, waiting up to ``timeout`` seconds (None: no limit);
        None when the stream has ended.

        Raises:
            Timeout: no event came within ``timeout``.
        """

    @abstractmethod
    def close(self) -> None:
        """End the subscription (idempotent)."""

    def __iter__(self) -> Iterator[api.Event]:
        return self

    def __next__(self) -> api.Event:
        event = self.get()
        if event is None:
            raise StopIteration
        return event

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
