"""The app stack's lifecycle handling never holds up a publisher: a
finalize or a delete that publishes while another thread is handling
events returns at once, and its event is still handled, in order."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from cove.engine._deps import AppStack
from cove.engine.events import EventBus
from cove.engine.operations import Operations
from cove.model.records import Instance
from cove.store import Store


class _Instances:
    def all(self, *, project: str | None = "default") -> list[Instance]:
        return []

    def expanded_config(self, inst: Instance) -> dict[str, str]:
        return dict(inst.config)


def test_a_publisher_does_not_wait_for_another_ones_handling(tmp_path: Path) -> None:
    store = Store(tmp_path / "cove.db")
    bus = EventBus()
    stack = AppStack(store=store, instances=_Instances(), operations=Operations(),  # type: ignore[arg-type]
                     events=bus, prober=object(), clock=time.time)  # type: ignore[arg-type]
    gate, busy = threading.Event(), threading.Event()
    seen: list[tuple[str, str]] = []

    def on_event(event: dict[str, Any]) -> None:
        meta = event["metadata"]
        seen.append((meta["action"], meta["source"]))
        if meta["source"] == "/1.0/instances/a":
            busy.set()
            assert gate.wait(10)

    stack._on_event = on_event  # type: ignore[method-assign]
    try:
        first = threading.Thread(target=bus.lifecycle,
                                 args=("instance-stopped", "/1.0/instances/a"))
        first.start()
        assert busy.wait(5)
        second = threading.Thread(target=bus.lifecycle,
                                  args=("instance-stopped", "/1.0/instances/b"))
        second.start()
        second.join(2)
        # before: the second publisher queued behind the first one's handler
        assert not second.is_alive(), "a publisher waited for another's event handling"
        gate.set()
        first.join(5)
        assert not first.is_alive()
        assert seen == [("instance-stopped", "/1.0/instances/a"),
                        ("instance-stopped", "/1.0/instances/b")]
    finally:
        gate.set()
        stack.close()
        store.close()
