"""The CLI draws a long operation's progress (``metadata.progress``) as a bar
on a terminal, and prints nothing of it when stderr is not a terminal."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from covetest import Coved, Term, new_name


@pytest.fixture
def slow_snapshots(make_coved: Callable[..., Coved], busybox_tar: Path) -> Coved:
    # holds each snapshot's copy open for 2.5 s; started armed, arm() keeps it running
    d = make_coved("progress", failpoints="snapshot.copy=sleep:2.5")
    d.api.import_image(busybox_tar, "busybox")
    d.arm("snapshot.copy=sleep:2.5")
    return d


def test_snapshot_shows_a_progress_bar_on_a_terminal(slow_snapshots: Coved) -> None:
    d = slow_snapshots
    name = new_name("bar")
    d.api.launch(name)
    d.api.file_put(name, "/data", b"x" * (1 << 20))
    env = d.cli_env()
    env["TERM"] = "xterm"
    term = Term([sys.executable, "-m", "cove.cli.main", "snapshot", "create", name, "s0"], env)
    try:
        term.expect(b"Copying the upper layer [", timeout=20)
        term.expect(b"taken", timeout=20)
    finally:
        code = term.close()
    assert code == 0
    out = term.out.decode(errors="replace")
    assert "%" in out and "\r\x1b[K" in out  # redrawn in place, cleared at the end
    assert "\r\x1b[KSnapshot s0 of" in out  # the bar cleared before the result line

    # not a terminal: no bar, only the result line
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "snapshot", "create", name, "s1"],
                       check=False, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Copying" not in p.stderr + p.stdout and "\x1b" not in p.stderr
    d.api.remove(name)
