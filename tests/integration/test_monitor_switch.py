"""Containers started under conmon keep working once coved uses cove's own
monitor (an upgrade), next to new ones under cove-monitor: the same files
and protocols (console log, exec, exit codes, no leftovers)."""

from __future__ import annotations

import os
from pathlib import Path

from covetest import Coved, assert_no_leaks, conmon_pids, new_name, wait_until


def _monitor_program(d: Coved, name: str) -> str:
    pid = int((d.root / "run" / "pids" / f"{name}.conmon").read_text())
    return os.path.basename(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]).decode()


def test_conmon_containers_keep_working_next_to_cove_monitor_ones(  # type: ignore[no-untyped-def]
        make_coved, busybox_tar: Path) -> None:
    d: Coved = make_coved("monsw", start=False)
    d.env = {"COVE_MONITOR": "conmon"}
    d.start()
    api = d.api
    api.import_image(busybox_tar, "busybox")
    old, new = new_name("old"), new_name("new")
    api.launch(old, "sh -c 'echo from-conmon; exec sleep 1000'")
    assert _monitor_program(d, old) == "conmon"

    d.env = {}  # the default: cove's monitor
    d.restart()
    api.launch(new, "sh -c 'echo from-cove; exec sleep 1000'")
    assert _monitor_program(d, new).startswith("cove-monitor-")
    assert len(conmon_pids(d.root)) == 2

    for name, word in ((old, b"from-conmon"), (new, b"from-cove")):
        wait_until(lambda n=name, w=word: w in api.request(  # type: ignore[misc]
            "GET", f"/1.0/instances/{n}/console").body, what=f"{name}'s output in its log")
        assert api.sh(name, "echo ok") == b"ok\n"
    pids = {n: api.state(n)["pid"] for n in (old, new)}
    for pid in pids.values():
        os.kill(pid, 9)  # behind coved's back: each monitor records the exit
    for name in (old, new):
        wait_until(lambda n=name: api.status(n) == "Stopped",  # type: ignore[misc]
                   what=f"{name} to stop")
        assert api.instance(name)["config"]["volatile.last_state.exit_code"] == "137"
    wait_until(lambda: not conmon_pids(d.root), what="the monitors to go")
    for name in (old, new):
        api.remove(name)
    assert_no_leaks(d.root, [old, new])
