"""One cove-monitor serves many containers (``COVE_MONITOR_SHARE``, 2 here):
each container's log, console attach and exit code stay its own; the
(K+1)-th container gets a new monitor and the first, retired, exits once
its containers are gone; parallel launches all get their pids; a coved
killed with -9 leaves its monitor serving its containers to their end, and
a killed monitor does not stop the next launch. Nothing is left after."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import CovedPool
from covetest import (
    Coved,
    assert_no_leaks,
    conmon_pids,
    monitors_of,
    new_name,
    pid_alive,
    wait_until,
)


@pytest.fixture(scope="module")
def d(workdir: Path, busybox_tar: Path) -> Iterator[Coved]:
    pool = CovedPool(workdir)
    d = pool.new("share", start=False)
    d.env = {"COVE_MONITOR_SHARE": "2"}
    d.start()
    d.api.import_image(busybox_tar, "busybox")
    yield d
    problems = pool.close()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


def _gated(tag: str, code: int) -> str:
    """Says hello, waits for /tmp/go, says bye and exits with ``code``."""
    return (f"sh -c 'echo start-{tag}; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
            f"echo bye-{tag}; exit {code}'")


def _log(d: Coved, name: str) -> bytes:
    return d.api.request("GET", f"/1.0/instances/{name}/console").body


def _attach(d: Coved, name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(str(d.root / "run" / "attach" / name / "attach"))
    sock.settimeout(10)
    return sock


def _read_until(sock: socket.socket, word: bytes) -> bytes:
    got = b""
    while word not in got:
        packet = sock.recv(8193)
        assert packet, got
        assert packet[0] == 2, packet  # stdout
        got += packet[1:]
    return got


def _exit_code(d: Coved, name: str) -> str:
    wait_until(lambda: d.api.status(name) == "Stopped", what=f"{name} to stop")
    return str(d.api.instance(name)["config"]["volatile.last_state.exit_code"])


def _remove_all(d: Coved, names: list[str]) -> None:
    for n in names:
        d.api.remove(n)
    wait_until(lambda: not conmon_pids(d.root), what="the monitors to go")
    assert_no_leaks(d.root, names)


def test_containers_share_a_monitor_each_with_its_own_log_console_and_exit(d: Coved) -> None:
    api = d.api
    a, b, c = new_name("a"), new_name("b"), new_name("c")
    api.launch(a, _gated("a", 7))
    api.launch(b, _gated("b", 0))
    api.launch(c, "sleep 1000")
    m = monitors_of(d.root, [a, b, c])
    assert m[a] == m[b] != m[c]  # the third goes to a new monitor
    assert sorted({m[a], m[c]}) == sorted(conmon_pids(d.root))

    sa, sb = _attach(d, a), _attach(d, b)
    api.sh(a, "touch /tmp/go")
    assert b"start-b" not in _read_until(sa, b"bye-a")
    os.kill(api.state(b)["pid"], signal.SIGKILL)
    assert (_exit_code(d, a), _exit_code(d, b)) == ("7", "137")
    assert sb.recv(8193) == b""  # b's console ended with b
    sa.close()
    sb.close()
    wait_until(lambda: b"bye-a" in _log(d, a), what="a's log")
    assert b"start-a" in _log(d, a) and b"-b" not in _log(d, a)
    assert b"start-b" in _log(d, b) and b"bye" not in _log(d, b)
    # the first monitor was retired when c went to another: it goes with its last
    wait_until(lambda: not pid_alive(m[a]), what="the retired monitor to exit")
    assert pid_alive(m[c]) and api.sh(c, "echo ok") == b"ok\n"
    _remove_all(d, [a, b, c])


def test_parallel_launches_all_get_their_pids(d: Coved) -> None:
    names = [new_name("par") for _ in range(10)]
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(d.api.launch, names))
    assert all(d.api.state(n)["pid"] > 0 for n in names)
    serving = set(monitors_of(d.root, names).values())
    assert len(serving) == 5 and sorted(serving) == sorted(conmon_pids(d.root))
    _remove_all(d, names)


def test_a_killed_coveds_monitor_serves_its_containers_to_their_end(d: Coved) -> None:
    api = d.api
    x, y = new_name("x"), new_name("y")
    api.launch(x, _gated("x", 7))
    old = monitors_of(d.root, [x])[x]
    d.kill()
    d.start()
    api.launch(y)
    new = monitors_of(d.root, [y])[y]
    assert new != old and pid_alive(old)
    api.sh(x, "touch /tmp/go")
    assert _exit_code(d, x) == "7"
    assert b"bye-x" in _log(d, x)
    wait_until(lambda: not pid_alive(old), what="the old monitor to exit")
    assert conmon_pids(d.root) == [new]
    _remove_all(d, [x, y])


def test_a_killed_monitor_does_not_stop_the_next_launch(d: Coved) -> None:
    api = d.api
    w, v = new_name("w"), new_name("v")
    api.launch(w)
    gone = monitors_of(d.root, [w])[w]
    os.kill(gone, signal.SIGKILL)
    wait_until(lambda: not pid_alive(gone), what="the monitor to die")
    api.launch(v)  # the dead one's connection refuses it: a new monitor takes it
    assert monitors_of(d.root, [v])[v] != gone
    assert api.sh(v, "echo ok") == b"ok\n"
    _remove_all(d, [w, v])
