"""``cove.cli.main.run``: the console script's exit, without Python's teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(tmp_path: Path, argv: list[str], before: str = "") -> subprocess.CompletedProcess[str]:
    code = (f"import sys; {before}\nsys.argv = ['cove', *{argv!r}]\n"
            "from cove.cli.main import run\nrun()\nprint('not reached')")
    env = dict(os.environ, COVE_DIR=str(tmp_path), COVE_NO_AUTOSTART="1")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=30, check=False)


def test_the_output_and_the_exit_code_are_main_s(tmp_path: Path) -> None:
    from cove import __version__

    res = _run(tmp_path, ["--version"])
    assert (res.returncode, res.stdout, res.stderr) == (0, f"cove {__version__}\n", "")
    res = _run(tmp_path, ["list"])  # no coved there: an error, exit 1
    assert res.returncode == 1 and res.stderr.startswith("Error: ") and "not reached" not in res.stdout
    assert _run(tmp_path, ["no-such-command"]).returncode == 2


def test_exit_handlers_run_and_buffered_output_is_written(tmp_path: Path) -> None:
    mark = tmp_path / "atexit-ran"
    before = (f"import atexit; atexit.register(lambda: open({str(mark)!r}, 'w').write('x'))\n"
              "sys.stdout.write('buffered, not flushed; ')")
    res = _run(tmp_path, ["--version"], before)
    assert res.returncode == 0 and res.stdout.startswith("buffered, not flushed; cove ")
    assert mark.read_text() == "x"


@pytest.mark.parametrize("daemon", [True, False])
def test_a_thread_still_running_is_waited_for_unless_a_daemon(tmp_path: Path, daemon: bool) -> None:
    before = ("import threading, time\n"
              "def late(): time.sleep(0.3); print('thread done', flush=True)\n"
              f"threading.Thread(target=late, daemon={daemon}).start()")
    res = _run(tmp_path, ["--version"], before)
    assert res.returncode == 0
    assert ("thread done" in res.stdout) is not daemon
