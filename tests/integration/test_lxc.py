"""Debian's ``lxc`` (lxd-client 5.0), unchanged, with coved as a ``unix://`` remote."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from covetest import assert_no_leaks, mkroot, new_name

LXC = shutil.which("lxc")
pytestmark = pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")


@pytest.fixture
def lxc(make_coved):  # type: ignore[no-untyped-def]
    """Run ``lxc`` with a private config (a covetest HOME and LXD_CONF)."""
    d = make_coved("lxc")
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}

    def run(*args: str, input: bytes | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([LXC, *args], env=env, input=input, capture_output=True,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           timeout=timeout, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)} exited {p.returncode}: "
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    try:
        run("remote", "add", "covetest-r", f"unix://{d.socket}")
        yield d, run, home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _csv(text: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.decode())))


def test_lxc_client_end_to_end(lxc, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    d, run, home = lxc
    assert b"covetest-r" in run("remote", "list", "--format", "csv").stdout

    run("image", "import", str(busybox_tar), "covetest-r:", "--alias", "bb")
    images = _csv(run("image", "list", "covetest-r:", "--format", "csv").stdout)
    assert any(row[0] == "bb" for row in images), images

    name = new_name("lxc")
    run("launch", "covetest-r:bb", f"covetest-r:{name}", "-c", "cove.cmd=sleep 1000")
    rows = _csv(run("list", "covetest-r:", "--format", "csv", "-c", "ns").stdout)
    assert [name, "RUNNING"] in rows, rows

    p = run("exec", f"covetest-r:{name}", "--", "sh", "-c", "exit 7", check=False)
    assert p.returncode == 7, p.stderr
    p = run("exec", f"covetest-r:{name}", "--", "sh", "-c", "echo out; echo err >&2")
    assert (p.stdout, p.stderr) == (b"out\n", b"err\n")
    data = b"through stdin\n" * 1000
    p = run("exec", f"covetest-r:{name}", "--", "cat", input=data)
    assert p.stdout == data
    p = run("exec", f"covetest-r:{name}", "--env", "COVETEST=v", "--cwd", "/tmp", "--",
            "sh", "-c", "echo $COVETEST; pwd")
    assert p.stdout == b"v\n/tmp\n"
    p = run("exec", f"covetest-r:{name}", "--user", "1000", "--", "id", "-u")
    assert p.stdout == b"1000\n"

    src = home / "covetest-push.bin"
    src.write_bytes(os.urandom(300_000))
    run("file", "push", str(src), f"covetest-r:{name}/tmp/covetest-pushed")
    p = run("exec", f"covetest-r:{name}", "--", "md5sum", "/tmp/covetest-pushed")
    import hashlib
    assert p.stdout.split()[0].decode() == hashlib.md5(src.read_bytes()).hexdigest()
    dst = home / "covetest-pulled"
    run("file", "pull", f"covetest-r:{name}/tmp/covetest-pushed", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    run("file", "pull", f"covetest-r:{name}/etc/hostname", str(home / "hostname"))
    assert (home / "hostname").read_text() == "busybox\n"

    # recursive push and pull of a tree
    tree = home / "covetest-tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.txt").write_text("b\n")
    run("file", "push", "-r", str(tree), f"covetest-r:{name}/tmp/")
    p = run("exec", f"covetest-r:{name}", "--", "cat", "/tmp/covetest-tree/sub/b.txt")
    assert p.stdout == b"b\n"
    back = home / "back"
    back.mkdir()
    run("file", "pull", "-r", f"covetest-r:{name}/tmp/covetest-tree", str(back))
    assert (back / "covetest-tree" / "a.txt").read_text() == "a\n"
    assert (back / "covetest-tree" / "sub" / "b.txt").read_text() == "b\n"

    run("stop", f"covetest-r:{name}", "--force")
    rows = _csv(run("list", "covetest-r:", "--format", "csv", "-c", "ns").stdout)
    assert [name, "STOPPED"] in rows, rows
    p = run("exec", f"covetest-r:{name}", "--", "true", check=False)
    assert p.returncode != 0

    run("delete", f"covetest-r:{name}")
    rows = _csv(run("list", "covetest-r:", "--format", "csv", "-c", "n").stdout)
    assert [name] not in rows
    assert_no_leaks(d.root)
