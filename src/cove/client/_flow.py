"""Run a *flow*: a generator that yields steps and is sent their results.

Design note: the client's algorithms (a convergent stop, a folder copy, a
wait) are written once as generators, free of I/O; a driver or transport
runs them with ``drive`` (blocking calls) or ``adrive`` (coroutines). A
``CoveError`` raised while doing a step is thrown into the flow at its
``yield``, so the flow handles a step's failure where it asked for it.
Standard library only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator
    from typing import Any, TypeVar

    T = TypeVar("T")

from cove.model.errors import CoveError

__all__ = ["adrive", "drive"]


def drive(flow: Generator[Any, Any, T], do: Callable[[Any], Any]) -> T:
    """Run ``flow`` to its end, doing each step with ``do``."""
    value: Any = None
    error: CoveError | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            value, error = do(step), None
        except CoveError as e:
            value, error = None, e


async def adrive(flow: Generator[Any, Any, T], do: Callable[[Any], Awaitable[Any]]) -> T:
    """``drive`` with an awaitable ``do``."""
    value: Any = None
    error: CoveError | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        try:
            value, error = await do(step), None
        except CoveError as e:
            value, error = None, e
