"""A second action while one is in flight fails at once with a 409 that names
the operation in flight (or waits for it with ``?wait=``); it never races.

To hold an instance's lock for a known time, the tests stop (or restart) a
container whose init ignores SIGTERM (``sleep`` as pid 1 has no handler, and
pid 1 of a namespace ignores unhandled signals) with a timeout: the
operation waits out the timeout before it kills.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from covetest import Api, Coved, Response, conmon_pids, monitors_of, new_name, runc_ids

HOLD = 4  # seconds the stop operation holds the instance


def _start_slow_stop(api: Api, name: str, action: str = "stop") -> str:
    r = api.request("PUT", f"/1.0/instances/{name}/state",
                    {"action": action, "timeout": HOLD, "force": False})
    assert r.status == 202, r.body
    op_id = r.json["metadata"]["id"]
    time.sleep(0.3)
    op = api.sync("GET", f"/1.0/operations/{op_id}")
    assert op["status"] == "Running", op
    return op_id


def _assert_conflict(r: Response, op_id: str) -> None:
    assert r.status == 409, (r.status, r.body[:300])
    assert r.json["type"] == "error" and r.json["error_code"] == 409
    assert op_id in r.json["error"], r.json["error"]


def _timed(api: Api, method: str, path: str, body: Any = None) -> tuple[Response, float]:
    t = time.monotonic()
    r = api.request(method, path, body)
    return r, time.monotonic() - t


def test_actions_during_a_stop_conflict_at_once(api: Api, coved: Coved) -> None:
    name = new_name("conc")
    api.launch(name, "sleep 1000")
    op_id = _start_slow_stop(api, name)
    base = f"/1.0/instances/{name}"
    for method, path, body in [
        ("PUT", base + "/state", {"action": "start"}),
        ("PUT", base + "/state", {"action": "stop", "force": True}),
        ("PUT", base + "/state", {"action": "restart"}),
        ("PUT", base + "/state", {"action": "freeze"}),
        ("DELETE", base, None),
        ("POST", base, {"name": new_name("conc")}),
        ("PATCH", base, {"config": {"user.covetest": "1"}}),
    ]:
        r, took = _timed(api, method, path, body)
        _assert_conflict(r, op_id)
        assert took < 1.5, f"{method} {path} {body} waited {took:.1f}s instead of failing"
    op = api.wait(op_id)
    assert op["status"] == "Success", op
    assert api.status(name) == "Stopped"
    assert "user.covetest" not in api.instance(name)["config"]


def test_delete_during_a_restart_conflicts(api: Api) -> None:
    name = new_name("conc")
    api.launch(name, "sleep 1000")
    op_id = _start_slow_stop(api, name, action="restart")
    r, took = _timed(api, "DELETE", f"/1.0/instances/{name}")
    _assert_conflict(r, op_id)
    assert took < 1.5
    assert api.wait(op_id)["status"] == "Success"
    assert api.status(name) == "Running"


def test_wait_queues_behind_the_operation_in_flight(api: Api) -> None:
    name = new_name("conc")
    api.launch(name, "sleep 1000")
    op_id = _start_slow_stop(api, name)
    r = api.request("PUT", f"/1.0/instances/{name}/state?wait=30", {"action": "start"})
    assert r.status == 202, r.body
    second = api.wait(r)
    assert second["status"] == "Success", second
    assert api.sync("GET", f"/1.0/operations/{op_id}")["status"] == "Success"
    assert api.status(name) == "Running"
    assert api.sh(name, "echo up") == b"up\n"


def test_two_simultaneous_starts(api: Api, coved: Coved) -> None:
    for _ in range(4):
        name = new_name("conc")
        api.create(name, config={"cove.cmd": "sleep 1000"})
        barrier = threading.Barrier(2)
        results: list[Response] = []

        def start(barrier: threading.Barrier, results: list[Response], name: str) -> None:
            barrier.wait()
            results.append(api.request("PUT", f"/1.0/instances/{name}/state",
                                       {"action": "start"}))

        threads = [threading.Thread(target=start, args=(barrier, results, name))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        accepted = [r for r in results if r.status == 202]
        assert accepted, [(r.status, r.body[:200]) for r in results]
        outcomes = [api.wait(r) for r in accepted]
        ok = [o for o in outcomes if o["status"] == "Success"]
        assert len(ok) == 1, (outcomes, [(r.status, r.body[:200]) for r in results])
        winner = ok[0]["id"]
        for r in results:
            if r.status == 202 and r.json["metadata"]["id"] == winner:
                continue
            if r.status == 202:  # accepted, then refused inside: must say why
                op = api.sync("GET", r.json["operation"])
                assert op["status"] == "Failure" and "running" in op["err"].lower(), op
            elif r.status == 409:
                assert winner in r.json["error"], r.json["error"]
            else:
                assert r.status == 400 and "running" in r.json["error"].lower(), r.body
        assert api.status(name) == "Running"
        assert runc_ids(coved.root).count(name) == 1
        assert monitors_of(coved.root, [name])[name] in conmon_pids(coved.root)


def test_two_simultaneous_creates_of_one_name(api: Api, coved: Coved) -> None:
    name = new_name("conc")
    api.made.append(name)
    barrier = threading.Barrier(2)
    results: list[Response] = []

    def create() -> None:
        barrier.wait()
        results.append(api.request("POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": "sleep 1000"}, "start": True}))

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok = 0
    for r in results:
        if r.status == 202:
            op = api.wait(r)
            if op["status"] == "Success":
                ok += 1
            else:
                assert "exists" in op["err"] or "busy" in op["err"], op
        else:
            assert r.status == 409, r.body
    assert ok == 1
    assert api.names().count(name) == 1
    assert api.status(name) == "Running"
    assert runc_ids(coved.root).count(name) == 1


def test_a_create_overtaken_by_another_takes_no_lock(make_coved, busybox_tar) -> None:  # type: ignore[no-untyped-def]
    """B's create passed its checks before A's made the row, and reaches the
    lock after A's create let it go: B is refused then and there (409, no
    operation), holding nothing, so A's start right after is never refused as
    busy with B's failed create. (Session starts met this: two hubs started one
    user's server at once and neither got it.)"""
    d = make_coved("overtake", failpoints="create.before-lock=sleep:2")
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("conc")
    body = {"name": name, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": "sleep 1000"}}
    got: dict[str, Response] = {}

    def create(who: str) -> None:
        got[who] = d.api.request("POST", "/1.0/instances", body)

    a = threading.Thread(target=create, args=("a",))
    a.start()
    time.sleep(1)  # B checks while A sleeps before its lock: the name is free for both
    b = threading.Thread(target=create, args=("b",))
    b.start()
    a.join(30)
    assert got["a"].status == 202 and d.api.wait(got["a"])["status"] == "Success"
    d.api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    b.join(30)
    # refused as it reached the lock: no operation made, none to hold the name
    assert got["b"].status == 409, got["b"].body[:300]
    assert "already exists" in got["b"].json["error"]
    assert d.api.status(name) == "Running"
    assert [o["description"] for o in d.api.sync("GET", "/1.0/operations?recursion=1")
            .get("failure", [])] == []
    d.api.remove(name)
