"""Projects, the same on every driver and on a real LXD: a driver made with
``project=`` sees only its project's containers, and one name lives in two
projects at once."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator

import pytest
from conftest import FEATURE_DRIVERS, CoveHost, Host

from cove.client import CliDriver, Client, Driver, LocalDriver, LocalTransport, RestDriver
from cove.model.errors import CoveError, NotFound

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)

# LXD's new project has its own (empty) default profile: no root disk, no NIC,
# and its own (empty) image store; these use the default project's, so the
# same image and profile serve both projects on LXD as on cove.
_SHARED = {"features.images": "false", "features.profiles": "false"}


def _admin(host: Host, request: pytest.FixtureRequest) -> Client:
    """A plain REST client of the host's server (cove's socket or LXD's)."""
    if host.lxd:
        return Client("/var/lib/lxd/unix.socket")
    cove_host: CoveHost = request.getfixturevalue("cove_host")
    return Client(str(cove_host.coved.socket))


def _project_driver(host: Host, request: pytest.FixtureRequest, project: str) -> Driver:
    """A driver of the same kind as ``host.driver``, working in ``project``."""
    d = host.driver
    if isinstance(d, LocalDriver):  # one engine per root: a view of it in the project
        view = copy.copy(d)
        view.project = project
        return view
    if isinstance(d, RestDriver):
        if host.kind == "rest-coved-tls":
            cove_host: CoveHost = request.getfixturevalue("cove_host")
            return RestDriver(cove_host.https, verify=cove_host.server_crt,
                              client_cert=cove_host.client_crt,
                              client_key=cove_host.client_key, project=project)
        return RestDriver(d.endpoint, project=project)
    assert isinstance(d, CliDriver)
    return CliDriver(LocalTransport(), list(d.command), remote=d.remote, env=d.env,
                     project=project)


@pytest.fixture
def project(host: Host, request: pytest.FixtureRequest) -> Iterator[tuple[str, Driver]]:
    name = f"covetest-{secrets.token_hex(3)}"
    admin = _admin(host, request)
    if isinstance(host.driver, LocalDriver):
        host.driver.engine.projects.create(name, config=dict(_SHARED))
    else:
        admin.raw("POST", "/1.0/projects", {"name": name, "config": dict(_SHARED)})
    driver = _project_driver(host, request, name)
    try:
        yield name, driver
    finally:
        for inst in list(host.made):
            try:
                driver.delete_container(inst)
            except CoveError:
                pass
        if isinstance(host.driver, LocalDriver):
            host.driver.engine.projects.delete(name)
        else:
            admin.raw("DELETE", f"/1.0/projects/{name}")
            if not isinstance(driver, LocalDriver):
                driver.close()
        admin.close()


def test_one_name_in_two_projects(host: Host, project: tuple[str, Driver]) -> None:
    pname, p = project
    d = host.driver
    name = host.name("proj")
    assert p.create_container(name, alias=host.image) == name
    with pytest.raises(NotFound):
        d.container_status(name)  # not in default
    assert d.create_container(name, alias=host.image, autostart=False) == name
    assert p.container_status(name) == "running"
    assert d.container_status(name) == "stopped"
    assert p.container(name)["project"] == pname
    assert d.container(name)["project"] == "default"
    assert [c.name for c in p.containers()] == [name]
    assert name in [c.name for c in d.containers()]
    t = p.transport_for(name)
    assert t.execute("hostname").stdout == f"{name}\n".encode()
    p.update_container(name, config={"user.where": "project"})
    assert p.container(name)["config"]["user.where"] == "project"
    assert "user.where" not in d.container(name)["config"]
    p.delete_container(name)
    with pytest.raises(NotFound):
        p.container_status(name)
    assert d.container_status(name) == "stopped"
    d.delete_container(name)
