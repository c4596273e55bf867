"""What a running container costs the host, the parts cove chose (issue 14,
docs/performance.md "Host memory per container"): its monitor is cove's
own static one, which maps no shared library (or, with
``COVE_MONITOR=conmon``, conmon loading the stub libsystemd and none of
libsystemd's dependencies), and still monitors (the console log, the exit
code); the masked directories outside /proc are a
read-only bind of one empty directory, not a tmpfs (a superblock) each, and
still show nothing and take no write. One in-process engine on a root of
its own.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import close_engine, mkroot, new_name, start_engine

from cove.api import InstanceExecPost, InstanceSource, InstancesPost
from cove.engine import Engine
from cove.runtime.spec import MASKED_PATHS

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("readelf")),
                                reason="needs gcc and readelf (scripts/setup.sh)")


@pytest.fixture(scope="module")
def engine(busybox_tar: Path) -> Iterator[Engine]:
    root = mkroot("hostmem")
    e: Engine = start_engine(root, busybox_tar)
    try:
        yield e
    finally:
        close_engine(e, root)


def _run(e: Engine, name: str, *cmd: str) -> tuple[int | None, str]:
    s = e.access.exec(name, InstanceExecPost(command=list(cmd)))
    try:
        assert s.stdout_fd is not None
        out = b""
        while chunk := os.read(s.stdout_fd, 65536):
            out += chunk
        return s.wait(30), out.decode()
    finally:
        s.close()


def test_conmon_stub_and_bind_masks(engine: Engine) -> None:
    name = new_name("mem")
    op = engine.instances.create(InstancesPost(
        name=name, source=InstanceSource(type="image", alias="busybox"), start=True,
        config={"cove.cmd": "sh -c 'echo hello-console; exec sleep 1000'"},
        devices={"eth0": {"type": "none"}}))
    assert op.wait(60)
    op.raise_for_error()
    root = engine.root
    monitor = int((root / "run" / "pids" / f"{name}.conmon").read_text())
    maps = Path(f"/proc/{monitor}/maps").read_text()
    if os.environ.get("COVE_MONITOR") == "conmon":
        assert f"{root}/run/bin/conmon-libs-" in maps and "libsystemd.so.0" in maps
        for lib in ("libgcrypt", "liblzma", "libzstd", "liblz4", "libgpg-error"):
            assert lib not in maps, lib
    else:
        exe = os.readlink(f"/proc/{monitor}/exe")
        assert exe.startswith(f"{root}/run/bin/cove-monitor-"), exe
        assert "libglib" not in maps and "libsystemd" not in maps
    # the monitor still does its work: the output reaches the console log
    log = root / "instances" / name / "console.log"
    deadline = time.monotonic() + 10
    while b"hello-console" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"hello-console" in log.read_bytes()

    pid = engine.runtime.state(name).pid  # type: ignore[union-attr]
    fstypes = {}
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            fstypes[fields[4]] = fields[fields.index("-") + 1]
    sys_masks = [p for p in MASKED_PATHS if p.startswith("/sys/") and os.path.isdir(p)]
    assert sys_masks, "nothing to mask on this host: the test proves nothing"
    for d in sys_masks:
        assert fstypes[d] != "tmpfs", (d, fstypes[d])
        code, out = _run(engine, name, "ls", "-A", d)
        assert code == 0 and out == "", (d, out)
        code, _ = _run(engine, name, "touch", f"{d}/x")
        assert code != 0
    if os.path.isdir("/proc/acpi"):  # runc's tmpfs there, as before
        assert fstypes["/proc/acpi"] == "tmpfs"
    assert not any((root / "run" / "empty").iterdir())

    op = engine.instances.change_state(name, "stop", force=True)
    assert op.wait(60)
    op.raise_for_error()
