"""CounterFiles: the counters a listing reads, from files kept open while a
container runs. Needs root (it makes cgroups named covetest-*, removed in
``finally``)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from cove.runtime.cgroup_counters import CounterFiles, _paths
from cove.runtime.cgroups import read_stats

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def cgroup() -> Iterator[str]:
    rel = f"/covetest-counters-{secrets.token_hex(3)}"
    dirs = sorted({os.path.dirname(p) for p in _paths(rel)})
    try:
        for d in dirs:
            os.mkdir(d)
    except OSError as e:
        pytest.skip(f"cannot make a cgroup here: {e}")
    yield rel
    for d in dirs:
        if os.path.isdir(d):
            os.rmdir(d)


def test_reads_what_read_stats_reads_and_keeps_the_files_open(cgroup: str) -> None:
    files = CounterFiles(budget=100)
    before = _fds()
    got = files.read(cgroup, 42)
    assert got == read_stats(cgroup)
    assert files.held == 4 and _fds() == before + 4
    files.read(cgroup, 42)  # a re-read: nothing more opened
    assert files.held == 4 and _fds() == before + 4
    files.read(cgroup, 43)  # started again: a new cgroup, reopened
    assert files.held == 4 and _fds() == before + 4
    files.forget(cgroup)
    files.forget(cgroup)  # idempotent
    assert files.held == 0 and _fds() == before


def test_a_removed_cgroup_reads_zeros_and_holds_nothing(cgroup: str) -> None:
    files = CounterFiles(budget=100)
    before = _fds()
    files.read(cgroup, 7)
    for d in sorted({os.path.dirname(p) for p in _paths(cgroup)}):
        os.rmdir(d)  # open files do not keep a cgroup
    got = files.read(cgroup, 7)
    assert (got.memory, got.memory_peak, got.cpu_ns, got.pids) == (0, 0, 0, 0)
    assert files.held == 0 and _fds() == before
    files.close()


def test_past_its_budget_it_opens_and_closes(cgroup: str) -> None:
    files = CounterFiles(budget=3)
    before = _fds()
    assert files.read(cgroup, 1) == read_stats(cgroup)
    assert files.held == 0 and _fds() == before


def test_read_many_reads_each_as_read_does_with_a_process_in_one(cgroup: str) -> None:
    """One cgroup with a sleeping process in it (non-zero counters, which a
    64-byte read must parse whole), one empty: ``read_many`` answers each in
    order as ``read_stats`` does, and keeps their files open as ``read``."""
    import subprocess
    import sys

    dirs = sorted({os.path.dirname(p) for p in _paths(cgroup)})
    # waits to be moved in, then uses memory and CPU there (charged to it)
    proc = subprocess.Popen(
        [sys.executable, "-c", ("import sys; sys.stdin.readline(); x = bytearray(8 << 20); "
                                "sum(range(10 ** 6)); print('ok', flush=True); "
                                "sys.stdin.readline()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for d in dirs:
            with open(os.path.join(d, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(proc.pid))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "ok\n"
        want = read_stats(cgroup)
        assert want.pids == 1 and want.memory > 0 and want.cpu_ns > 0, want
        empty = f"{cgroup}-none"  # no such cgroup: zeros, as read_stats
        files = CounterFiles(budget=100)
        got = files.read_many([(cgroup, proc.pid), (empty, 1)])
        assert got == [want, read_stats(empty)]
        assert files.held == 4
        assert files.read_many([(cgroup, proc.pid)]) == [read_stats(cgroup)]
        files.close()
        assert files.held == 0
    finally:
        proc.kill()
        proc.wait()
