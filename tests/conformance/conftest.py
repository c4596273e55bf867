"""The conformance matrix: one suite, every driver (python-on-whales' ``ctr_client``).

``host`` is parametrised over:

=================  ==========================================================
``local``          ``LocalDriver``: cove's engine in-process, a root of its own
``rest-coved``     ``RestDriver`` → a coved process, over its unix socket
``rest-coved-tls`` ``RestDriver`` → the same coved over HTTPS (core.https_address
                   on 127.0.0.1, a free port; pinned server certificate, a
                   trusted client certificate)
``cli-cove``       ``CliDriver(LocalTransport(), "cove")`` → that coved
``cli-lxc-coved``  ``CliDriver(LocalTransport(), "lxc")`` → that coved as an
                   ``lxc remote add``-ed HTTPS remote
``rest-lxd``       ``RestDriver`` → a real LXD (Debian's ``lxd``)
``cli-lxc``        ``CliDriver(LocalTransport(), "lxc")`` → that LXD
=================  ==========================================================

The LXD is installed (``apt-get install lxd``) when missing, started and set
up by ``lxdhost.LxdHost``; if that fails, its cases skip with the step that
failed as the reason. Every container is named ``covetest-…`` and deleted
by the test that made it; teardown removes the rest and reports leaks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from covetest import Coved, destroy_root, leaks, mkroot, reap_conmon_zombies
from lxdhost import IMAGE, LxdHost, LxdUnavailable

from cove.client import (
    CliDriver,
    Client,
    Driver,
    LocalDriver,
    LocalTransport,
    RestDriver,
    fetch_certificate,
)
from cove.host.certs import generate_certificate

COVE = str(Path(sys.executable).parent / "cove")
COVE_DRIVERS = ["local", "rest-coved", "rest-coved-tls", "cli-cove", "cli-lxc-coved"]
LXD_DRIVERS = ["rest-lxd", "cli-lxc"]
ALL_DRIVERS = COVE_DRIVERS + LXD_DRIVERS
# What a feature module (copies, images, backups, ...) runs on: every driver
# but ``cli-lxc``. That cell only crosses two that are proven on their own:
# ``rest-lxd`` shows the behaviour is LXD's, ``cli-lxc-coved`` runs the same
# ``lxc`` client and CliDriver code against cove's (equal) answers, and
# ``CliDriver`` on a real LXD keeps its contract in test_drivers.py, which
# runs on every driver. (It was about 70 s of the suite, LXD's own speed.)
FEATURE_DRIVERS = [d for d in ALL_DRIVERS if d != "cli-lxc"]
# The session's coved unlists an ended operation after this many seconds,
# not LXD's 5 (its COVE_OPERATIONS_EXPIRY): test_wire_bugs waits that out on
# coved and the 5 s on LXD; the 5 s default is unit-tested
# (test_operations_prune.py).
OPERATIONS_EXPIRY = 2.5


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "conformance tests need root (runc, overlay mounts, cgroups, LXD)"
    for tool in ("runc", "conmon"):
        if shutil.which(tool) is None:
            return f"conformance tests need {tool} on PATH"
    if not Path("/bin/busybox").exists():
        return "conformance tests need /bin/busybox (Debian package busybox-static)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the hosts (one of each per session) ---------------------------------------------------

@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = mkroot("conf")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_tar(workdir: Path) -> Path:
    spec = importlib.util.spec_from_file_location("mkbusybox", REPO / "scripts" / "mkbusybox.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return Path(mod.build_busybox_image(workdir / "busybox.tar.gz"))


@dataclass
class CoveHost:
    """One coved (socket, HTTPS, an lxc remote) and one LocalDriver root."""

    coved: Coved
    local_root: Path
    https: str
    server_crt: str
    client_crt: str
    client_key: str
    lxd_conf: Path
    local: LocalDriver | None = None


@pytest.fixture(scope="session")
def cove_host(workdir: Path, busybox_tar: Path) -> Iterator[CoveHost]:
    coved = Coved(mkroot("conf-coved"), workdir)
    coved.env = {"COVE_OPERATIONS_EXPIRY": str(OPERATIONS_EXPIRY)}
    coved.start()
    local_root = mkroot("conf-local")
    lxd_conf = workdir / "lxdconf-cove"
    lxd_conf.mkdir()
    host: CoveHost | None = None
    try:
        Client(str(coved.socket)).import_image(str(busybox_tar), aliases=[IMAGE])
        url = f"https://127.0.0.1:{free_port()}"
        api = Client(str(coved.socket))
        api.update_server({"core.https_address": url.removeprefix("https://")})
        server_crt = workdir / "coved-server.crt"
        server_crt.write_text(fetch_certificate(url))
        crt, key = lxd_conf / "client.crt", lxd_conf / "client.key"  # where lxc looks
        generate_certificate(crt, key, server=False, common_name="covetest-conformance")
        api.add_certificate(crt.read_text(), name="covetest-conformance")
        env = {"LXD_CONF": str(lxd_conf)}
        LocalTransport(env=env).execute(
            ["lxc", "remote", "add", "covetest-coved", url, "--accept-certificate"]).check()
        host = CoveHost(coved, local_root, url, str(server_crt), str(crt), str(key), lxd_conf)
        yield host
    finally:
        if host is not None and host.local is not None:
            with contextlib.suppress(Exception):
                for inst in host.local.engine.instances.all():
                    host.local.delete_container(inst.name)
            host.local.close()
        problems = leaks(local_root)
        problems += [f"forced: {x}" for x in destroy_root(local_root)]
        with contextlib.suppress(Exception):
            api = Client(str(coved.socket))
            for inst in api.instances(recursion=1):
                with contextlib.suppress(Exception):
                    api.change_state(inst["name"], "stop", force=True).wait(30)
                api.delete_instance(inst["name"]).wait(30)
        problems += leaks(coved.root)
        coved.stop()
        problems += [f"forced: {x}" for x in destroy_root(coved.root)]
        reap_conmon_zombies()
        if problems:
            sys.stderr.write("\nconformance: cove left " + "; ".join(problems) + "\n")


@pytest.fixture(scope="session")
def lxd_host(workdir: Path, busybox_tar: Path) -> Iterator[LxdHost | str]:
    """The set-up LXD, or the reason it is not there (a string)."""
    host = LxdHost(workdir, busybox_tar)
    try:
        host.setup()
    except LxdUnavailable as e:
        sys.stderr.write(f"\nconformance: LXD cases skip: {e}\n")
        yield f"LXD unavailable: {e}"
        return
    sys.stderr.write(f"\nconformance: {host.describe()}\n")
    try:
        yield host
    finally:
        problems = host.teardown()
        if problems:
            sys.stderr.write("\nconformance: LXD teardown: " + "; ".join(problems) + "\n")


# -- the matrix ------------------------------------------------------------------------------

@dataclass
class Host:
    """What a test gets: a driver, the image alias, and names to make."""

    kind: str  # the parameter id
    driver: Driver
    image: str = IMAGE
    made: list[str] = field(default_factory=list)

    @property
    def lxd(self) -> bool:
        return self.kind in LXD_DRIVERS

    def name(self, tag: str = "") -> str:
        n = f"covetest-{tag + '-' if tag else ''}{secrets.token_hex(3)}"
        self.made.append(n)
        return n


def make_driver(kind: str, cove_host: CoveHost | None, lxd: LxdHost | None) -> Driver:
    if kind == "local":
        assert cove_host is not None
        if cove_host.local is None:
            cove_host.local = LocalDriver(cove_host.local_root)
        return cove_host.local
    if kind == "rest-coved":
        assert cove_host is not None
        return RestDriver(str(cove_host.coved.socket))
    if kind == "rest-coved-tls":
        assert cove_host is not None
        return RestDriver(cove_host.https, verify=cove_host.server_crt,
                          client_cert=cove_host.client_crt, client_key=cove_host.client_key)
    if kind == "cli-cove":
        assert cove_host is not None
        return CliDriver(LocalTransport(), [COVE, "--root", str(cove_host.coved.root)],
                         env={"COVE_NO_AUTOSTART": "1"})
    if kind == "cli-lxc-coved":
        assert cove_host is not None
        return CliDriver(LocalTransport(), "lxc", remote="covetest-coved",
                         env={"LXD_CONF": str(cove_host.lxd_conf)})
    assert lxd is not None
    if kind == "rest-lxd":
        return RestDriver("/var/lib/lxd/unix.socket")
    if kind == "cli-lxc":
        return CliDriver(LocalTransport(), "lxc", env={"LXD_CONF": str(lxd.lxd_conf)})
    raise AssertionError(kind)


def _local_image(cove_host: CoveHost, busybox_tar: Path) -> None:
    local = cove_host.local
    assert local is not None
    if any(a.name == IMAGE for a in local.engine.images.list_aliases()):
        return
    spool = cove_host.local_root / "tmp" / "busybox.tar.gz"
    shutil.copyfile(busybox_tar, spool)  # the engine's import consumes its file
    op = local.engine.images.import_file(spool, filename="busybox.tar.gz", aliases=[IMAGE])
    assert op.wait(60)
    op.raise_for_error()


@pytest.fixture(params=ALL_DRIVERS)
def host(request: pytest.FixtureRequest, busybox_tar: Path) -> Iterator[Host]:
    kind: str = request.param
    # What the test left is deleted over REST on the same server: a CLI
    # driver would start a command or two per name for the same delete.
    if kind in LXD_DRIVERS:
        lxd = request.getfixturevalue("lxd_host")
        if isinstance(lxd, str):
            pytest.skip(lxd)
        driver = make_driver(kind, None, lxd)
        cleaner = make_driver("rest-lxd", None, lxd) if kind.startswith("cli-") else driver
    else:
        cove_host = request.getfixturevalue("cove_host")
        driver = make_driver(kind, cove_host, None)
        if kind == "local":
            _local_image(cove_host, busybox_tar)
        cleaner = (make_driver("rest-coved", cove_host, None) if kind.startswith("cli-")
                   else driver)
    h = Host(kind, driver)
    yield h
    for name in h.made:
        with contextlib.suppress(Exception):
            cleaner.delete_container(name)
    if cleaner is not driver:
        cleaner.close()
    if kind != "local":
        driver.close()


@pytest.fixture(params=["rest-coved", "rest-lxd"])
def rest_endpoint(request: pytest.FixtureRequest) -> Any:
    """(endpoint, options) of a REST host, for the asyncio driver."""
    if request.param == "rest-lxd":
        lxd = request.getfixturevalue("lxd_host")
        if isinstance(lxd, str):
            pytest.skip(lxd)
        return "/var/lib/lxd/unix.socket", {}
    cove_host = request.getfixturevalue("cove_host")
    return str(cove_host.coved.socket), {}
