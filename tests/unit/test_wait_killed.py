"""``wait_killed`` tells an init that survived SIGKILL from one whose end
coved is slow to record (a hundred stops at once queue on the store)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from cove.engine._watch import wait_killed
from cove.model.errors import Timeout


def test_a_slow_record_of_an_ended_init_is_waited_for() -> None:
    p = subprocess.Popen(["sleep", "60"])
    stopped = threading.Event()
    # the exit is recorded only after the first wait has run out
    threading.Timer(0.6, stopped.set).start()
    t = time.monotonic()
    wait_killed("c1", p.pid, stopped, lambda: p.send_signal(signal.SIGKILL),
                timeout=0.2, record_grace=10)  # before: Timeout at 0.2 s
    assert 0.5 < time.monotonic() - t < 5
    p.wait()


def test_an_init_that_survives_sigkill_is_a_timeout() -> None:
    p = subprocess.Popen(["sleep", "60"])
    try:
        t = time.monotonic()
        with pytest.raises(Timeout, match="did not stop after SIGKILL"):
            wait_killed("c2", p.pid, threading.Event(), lambda: None,
                        timeout=0.2, record_grace=10)
        assert time.monotonic() - t < 2  # not the grace: it still runs
    finally:
        p.kill()
        p.wait()


def test_an_ended_init_never_recorded_is_a_timeout_after_the_grace() -> None:
    p = subprocess.Popen(["sleep", "60"])
    with pytest.raises(Timeout, match="did not record it"):
        wait_killed("c3", p.pid, threading.Event(), lambda: p.send_signal(signal.SIGKILL),
                    timeout=0.2, record_grace=0.2)
    p.wait()
