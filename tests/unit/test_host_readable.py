"""``proc.readable``: which fds have something to read, for fds of any
number (``select.select`` refuses those above 1023; coved holds thousands
with a thousand containers running)."""

from __future__ import annotations

import os
import resource

import pytest

from cove.host import proc


def _high_pipe(at: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= at + 1:
        pytest.skip(f"the fd limit {hard} is below {at + 2}")
    if soft != resource.RLIM_INFINITY and soft <= at + 1:
        resource.setrlimit(resource.RLIMIT_NOFILE, (at + 2, hard))
    r, w = os.pipe()
    os.dup2(r, at)
    os.dup2(w, at + 1)
    os.close(r)
    os.close(w)
    return at, at + 1


def test_an_fd_above_1023() -> None:
    r, w = _high_pipe(1500)
    try:
        assert proc.readable([r], 0) == []
        os.write(w, b"x")
        assert proc.readable([r], 1) == [r]
        os.read(r, 1)
        os.close(w)
        w = -1
        assert proc.readable([r], 1) == [r]  # at its end: readable, reads b""
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_only_the_ready_ones_and_the_timeout() -> None:
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    try:
        os.write(b_w, b"y")
        assert proc.readable([a_r, b_r], 5) == [b_r]
        assert proc.readable([a_r], 0.05) == []
    finally:
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)
