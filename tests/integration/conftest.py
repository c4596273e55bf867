"""Fixtures of the integration suite: real containers, a real coved, real clients.

One coved and one imported busybox image are shared by the session (the
``coved`` fixture); tests that import images themselves, kill daemons or
need a root of their own get one from ``make_coved``. Every root is a fresh
``tempfile.mkdtemp(prefix="covetest-")``, every instance is named
``covetest-...``, and teardown removes everything even when a test failed:
instances deleted through coved, coved stopped, then whatever is left on
the host removed by force (runc, conmon, cgroups, mounts) and reported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from covetest import (
    REPO,
    Api,
    Coved,
    assert_no_leaks,
    destroy_root,
    leaks,
    mkroot,
    reap_conmon_zombies,
)

IMAGE_ALIAS = "busybox"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (runc, overlay mounts, cgroups)"
    for tool in ("runc", "conmon"):
        if shutil.which(tool) is None:
            return f"integration tests need {tool} on PATH"
    if not Path("/bin/busybox").exists():
        return "integration tests need /bin/busybox (Debian package busybox-static)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _load_mkbusybox():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mkbusybox", REPO / "scripts" / "mkbusybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Scratch space of the session (image tarballs, coved logs)."""
    d = mkroot("work")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_tar(workdir: Path) -> Path:
    """The busybox image as an LXD unified tarball (metadata.yaml + rootfs/)."""
    return _load_mkbusybox().build_busybox_image(workdir / "busybox.tar.gz")


@pytest.fixture(scope="session")
def busybox_plain_tar(workdir: Path) -> Path:
    return _load_mkbusybox().build_busybox_image(workdir / "busybox-plain.tar.gz", plain=True)


class CovedPool:
    """Makes coved processes on fresh roots and tears them all down."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.daemons: list[Coved] = []
        self.forced: list[str] = []

    def new(self, tag: str = "", *, start: bool = True, failpoints: str = "") -> Coved:
        """A coved on a fresh root; ``failpoints``: started armed there
        (``COVE_FAILPOINTS``; ``Coved.arm`` of the same point then keeps it)."""
        d = Coved(mkroot(tag), self.workdir)
        if failpoints:
            d.env = {"COVE_FAILPOINTS": failpoints}
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def teardown(self, d: Coved) -> list[str]:
        """Delete what coved still has, stop it, remove the rest by force.
        Returns what had to be forced (cove should have left nothing)."""
        problems: list[str] = []
        if d.proc is not None and d.proc.poll() is None and d.answers():
            try:
                for name in d.api.names():
                    d.api.remove(name)
            except Exception as e:  # noqa: BLE001 - report, then force
                problems.append(f"cleanup through coved failed: {e}")
        try:
            d.stop()
        except AssertionError as e:
            problems.append(str(e))
        problems += [f"forced: {x}" for x in destroy_root(d.root)]
        if d in self.daemons:
            self.daemons.remove(d)
        return problems

    def close(self) -> list[str]:
        out: list[str] = []
        for d in list(self.daemons):
            out += self.teardown(d)
        return out


@pytest.fixture(scope="session")
def oci_registry(workdir: Path) -> Iterator[Any]:
    """One real OCI registry (TLS, htpasswd) for the session's registry tests
    (``ociregistry.RealRegistry``); each module pushes its own repositories."""
    from ociregistry import RealRegistry

    reg = RealRegistry(workdir / "oci-registry")
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def _session_pool(workdir: Path) -> Iterator[CovedPool]:
    pool = CovedPool(workdir)
    yield pool
    problems = pool.close()
    if problems:
        sys.stderr.write("\ncovetest session teardown:\n  " + "\n  ".join(problems) + "\n")


@pytest.fixture(scope="session")
def coved(_session_pool: CovedPool, busybox_tar: Path) -> Coved:
    """The shared coved, with the busybox image imported as ``busybox``."""
    d = _session_pool.new("shared")
    d.api.import_image(busybox_tar, IMAGE_ALIAS)
    return d


@pytest.fixture
def shared_coved(coved: Coved) -> Iterator[Coved]:
    """The session's coved, for a test that needs isolation by instance name
    only (no restart, no kill, no look at the whole root): a private coved
    costs a start, an image import and a teardown. What the test made through
    ``coved.api`` is removed after it, and the host must keep nothing of it."""
    if not coved.answers():  # a test restarted or killed it
        coved.kill()
        coved.start()
    before = len(coved.api.made)
    yield coved
    if not coved.answers():
        coved.kill()
        coved.start()
    made = coved.api.made[before:]
    del coved.api.made[before:]
    for name in made:
        coved.api.remove(name)
    assert_no_leaks(coved.root, made)


@pytest.fixture
def make_coved(workdir: Path) -> Iterator[Callable[..., Coved]]:
    """A factory of private coveds (own root); all torn down after the test,
    which fails if cove left anything behind that had to be forced away."""
    pool = CovedPool(workdir)
    yield pool.new
    problems = pool.close()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


@pytest.fixture
def api(coved: Coved) -> Iterator[Api]:
    """A client of the shared coved that deletes what the test created and
    checks the host kept nothing of it."""
    if not coved.answers():  # a test restarted or killed it
        coved.kill()
        coved.start()
    client = Api(str(coved.socket))
    yield client
    if not coved.answers():
        coved.kill()
        coved.start()
    for name in client.made:
        client.remove(name)
    assert_no_leaks(coved.root, client.made)


@pytest.fixture
def engine(workdir: Path, busybox_tar: Path) -> Iterator[object]:
    """An in-process Engine on a root of its own, with busybox imported.

    Teardown deletes every instance through the engine and then asserts the
    host kept nothing of the root."""
    from cove.engine import Engine

    root = mkroot("engine")
    eng = Engine(root)
    left: list[str] = []
    try:
        eng.startup()
        spool = root / "tmp" / "busybox.tar.gz"
        shutil.copyfile(busybox_tar, spool)  # the import consumes its file
        op = eng.images.import_file(spool, filename="busybox.tar.gz", aliases=[IMAGE_ALIAS])
        assert op.wait(60)
        op.raise_for_error()
        yield eng
    finally:
        try:
            for inst in eng.instances.all():
                with contextlib.suppress(Exception):  # forced below, and reported
                    eng.instances.delete(inst.name, force=True).wait(60)
            eng.operations.wait_idle(30)
            left = leaks(root)
        finally:
            eng.close()
            forced = destroy_root(root)
            reap_conmon_zombies()
    assert not left and not forced, f"engine left {left}; forced {forced}"
