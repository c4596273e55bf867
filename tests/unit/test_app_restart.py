"""The restart policy (``engine._restart``) against a fake instances
service that records the actions it is asked for."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cove.engine._restart import Restarter
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest
from cove.model.records import Instance
from cove.model.states import Status
from cove.store import Store


class FakeInstances:
    """``StackInstances``: each action is recorded and sets the row's status."""

    def __init__(self, store: Store, operations: Operations) -> None:
        self.store = store
        self.operations = operations
        self.actions: list[tuple[str, str]] = []

    def all(self, *, project: str | None = "default") -> list[Instance]:
        return self.store.list_instances(project)

    def change_state(self, name: str, action: str, *, project: str = "default",
                     timeout: float = -1, force: bool = False,
                     wait_for_lock: float = 0) -> Operation:
        self.actions.append((name, action))

        def work(op: Operation) -> None:
            inst = self.store.get_instance(name)
            inst.status = Status.RUNNING
            self.store.update_instance(inst)
        return self.operations.run(work, description=action, lock=f"instance:{name}")

    def expanded_config(self, inst: Instance) -> dict[str, str]:
        return dict(inst.config)


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "cove.db")
    ops = Operations()
    insts = FakeInstances(store, ops)
    after: list[str] = []
    restarter = Restarter(store=store, instances=insts, operations=ops,
                          config_of=lambda key: dict(store.get_instance(key).config),
                          after_restart=after.append)

    def add(config: dict[str, str]) -> None:
        store.add_instance(Instance(name="db", image="f" * 64, config=config,
                                    status=Status.STOPPED, last_used_at=time.time()))

    def crash(code: int | None = 1) -> None:
        inst = store.get_instance("db")
        inst.status = Status.STOPPED
        store.update_instance(inst)
        restarter.on_exit("db", code)

    yield restarter, insts, add, crash, after, store
    restarter.close()
    store.close()


def _settle(insts: FakeInstances, n: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while len(insts.actions) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # and no more than that


def test_on_failure_restarts_a_failure_not_a_clean_exit(setup: Any) -> None:
    _, insts, add, crash, after, _ = setup
    add({"cove.restart": "on-failure"})
    crash(0)
    _settle(insts, 0)
    assert insts.actions == []
    crash(137)
    _settle(insts, 1)
    assert insts.actions == [("db", "start")]
    _settle(insts, 1)
    assert after == ["db"]  # its :restart dependents' turn


def test_no_policy_and_a_clients_stop_are_left_alone(setup: Any) -> None:
    restarter, insts, add, crash, _, store = setup
    add({"cove.restart": "always"})
    restarter.expect_stop("db")
    crash(143)
    _settle(insts, 0)
    assert insts.actions == []
    inst = store.get_instance("db")
    inst.config = {"cove.restart": "no"}
    store.update_instance(inst)
    crash(1)
    _settle(insts, 0)
    assert insts.actions == []


def test_on_failure_max_and_the_cap_per_minute(setup: Any) -> None:
    _, insts, add, crash, _, store = setup
    add({"cove.restart": "on-failure:2"})
    for n in (1, 2, 2):
        crash(1)
        _settle(insts, n)
    assert len(insts.actions) == 2  # MAX reached
    inst = store.get_instance("db")
    inst.config = {"cove.restart": "always", "cove.restart.max_per_minute": "3"}
    store.update_instance(inst)
    for n in (3, 3):
        crash(0)
        _settle(insts, n)
    assert len(insts.actions) == 3  # 3 in the last minute: capped


def test_an_operation_in_flight_owns_the_exit(setup: Any) -> None:
    _, insts, add, crash, _, _ = setup
    add({"cove.restart": "always"})
    release = threading.Event()
    op = insts.operations.run(lambda op: release.wait(), description="stop",
                              lock="instance:db")
    crash(143)
    release.set()
    op.wait()
    _settle(insts, 0)
    assert insts.actions == []


def test_unhealthy_is_restarted_under_a_policy(setup: Any) -> None:
    restarter, insts, add, _, _, store = setup
    add({"cove.restart": "unless-stopped"})
    inst = store.get_instance("db")
    inst.status = Status.RUNNING
    store.update_instance(inst)
    restarter.on_unhealthy("db")
    _settle(insts, 1)
    assert insts.actions == [("db", "restart")]


def test_a_failed_restart_is_tried_again_within_the_cap(setup: Any) -> None:
    _, insts, add, crash, _, store = setup
    add({"cove.restart": "always", "cove.restart.max_per_minute": "3"})

    def failing(name: str, action: str, **kw: Any) -> Operation:
        insts.actions.append((name, action))

        def work(op: Operation) -> None:
            raise BadRequest("dependency not ready")
        return insts.operations.run(work, description=action)

    insts.change_state = failing
    crash(1)
    _settle(insts, 3, timeout=5)
    assert insts.actions == [("db", "start")] * 3  # then capped
    assert store.get_instance("db").status is Status.STOPPED


def test_the_back_off_doubles_and_starts_again_after_a_long_run(setup: Any) -> None:
    _, insts, add, crash, _, store = setup
    add({"cove.restart": "always"})  # it started just now: every run is short
    started: list[float] = []
    ops: list[Operation] = []
    real = insts.change_state

    def timed(name: str, action: str, **kw: Any) -> Operation:
        started.append(time.monotonic())
        op: Operation = real(name, action, **kw)
        ops.append(op)
        return op

    def restarted(n: int, since: float) -> None:
        """The n-th start was asked for and ran (else the next crash
        would be the in-flight operation's, not a failure)."""
        while len(ops) < n and time.monotonic() < since + 5:
            time.sleep(0.005)
        assert len(ops) == n
        ops[-1].wait()

    insts.change_state = timed
    gaps = []
    for n in range(1, 5):
        t = time.monotonic()
        crash(1)
        restarted(n, t)
        gaps.append(started[-1] - t)
    for gap, delay in zip(gaps, (0.1, 0.2, 0.4, 0.8), strict=True):
        assert gap >= delay, gaps  # at least the back-off (more under load)
    assert gaps[3] > gaps[0] + 0.5, gaps
    # a run of 10 s or more starts the back-off again at 0.1 s
    inst = store.get_instance("db")
    inst.last_used_at = time.time() - 11
    store.update_instance(inst)
    t = time.monotonic()
    crash(1)
    restarted(5, t)
    assert started[-1] - t < 1.0, (gaps, started[-1] - t)  # not 1.6 s


def test_a_clients_stop_cancels_a_restart_waiting_out_its_back_off(setup: Any) -> None:
    restarter, insts, add, crash, _, store = setup
    add({"cove.restart": "always"})
    assert restarter.cancel("db") is False  # nothing waits: the stop is an ordinary one
    inst = store.get_instance("db")
    inst.last_used_at = time.time()  # a short run: the back-off grows
    store.update_instance(inst)
    crash(1)
    assert restarter.cancel("db") is True  # within the 0.1 s back-off
    _settle(insts, 0)
    assert insts.actions == []
    assert restarter.cancel("db") is False
    crash(1)  # a later exit restarts it again: the policy itself stays
    _settle(insts, 1)
    assert insts.actions == [("db", "start")]


@pytest.mark.parametrize("stop_first", [True, False], ids=["before-its-work", "during-its-work"])
def test_a_clients_stop_during_the_restarts_start(setup: Any, stop_first: bool) -> None:
    """The restart's start is in flight: the stop is no conflict (cancel is
    True, the caller waits for the operation); a start whose work had not
    begun gives up and is not tried again, one already starting finishes."""
    restarter, insts, add, crash, _, store = setup
    add({"cove.restart": "always"})
    gate, working = threading.Event(), threading.Event()
    ops: list[Operation] = []

    def gated(name: str, action: str, **kw: Any) -> Operation:
        insts.actions.append((name, action))

        def work(op: Operation) -> None:
            if stop_first:
                gate.wait(5)
            restarter.started(name)  # what the start's before_start does
            working.set()
            if not stop_first:
                gate.wait(5)
            inst = store.get_instance(name)
            inst.status = Status.RUNNING
            store.update_instance(inst)
        ops.append(insts.operations.run(work, description=action, lock=f"instance:{name}"))
        return ops[-1]

    insts.change_state = gated
    crash(1)
    deadline = time.monotonic() + 3
    while not ops and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ops, "the restart did not begin"
    if not stop_first:
        assert working.wait(3)
    assert restarter.cancel("db") is True
    gate.set()
    ops[0].wait()
    _settle(insts, 1)
    assert insts.actions == [("db", "start")]  # not tried again
    want = Status.STOPPED if stop_first else Status.RUNNING
    assert store.get_instance("db").status is want
    assert restarter.cancel("db") is False  # nothing left in flight
