"""``cove exec --stopped`` returns only once the instance is free again: the
exec's operation ends after its temporary container is torn down (and the
instance's lock let go), so a ``start`` right after it never meets a 409."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from covetest import Coved, new_name


def test_start_right_after_a_stopped_exec(make_coved: Callable[..., Coved],
                                          busybox_tar: Path) -> None:
    # the teardown of a stopped exec's container held open for a second
    d = make_coved("xstop", failpoints="exec-stopped.cleanup=sleep:1")
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("xstop")
    d.api.create(name, config={"cove.cmd": "sleep 1000"})
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "exec", "--stopped", name, "--",
                        "sh", "-c", "exit 4"], env=d.cli_env(), capture_output=True,
                       timeout=60, check=False)
    assert p.returncode == 4, p.stderr
    r = d.api.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    assert r.status in (200, 202), r.body  # not 409: nothing holds it any more
    assert d.api.wait(r)["status"] == "Success"
    assert d.api.status(name) == "Running"
