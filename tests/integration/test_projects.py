"""Projects against a real coved: pylxd ``Client(project=...)`` and Debian's
``lxc project ...``, real containers with the same name in two projects."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pylxd
import pytest
from covetest import Coved, assert_no_leaks, mkroot, new_name

LXC = shutil.which("lxc")


def _endpoint(d: Coved) -> str:
    return "http+unix://" + urllib.parse.quote(str(d.socket), safe="")


@pytest.fixture
def proj(make_coved: Callable[..., Coved], busybox_tar: Path) -> Iterator[Coved]:
    d = make_coved("proj")
    d.api.import_image(busybox_tar, "busybox")
    yield d


def _remove_in(d: Coved, name: str, project: str) -> None:
    """Delete ``name`` of ``project`` however it is; fine if it is gone."""
    r = d.api.request("GET", f"/1.0/instances/{name}?project={project}")
    if r.status == 404:
        return
    if r.metadata["status"] != "Stopped":
        d.api.run("PUT", f"/1.0/instances/{name}/state?project={project}",
                  {"action": "stop", "force": True})
    d.api.run("DELETE", f"/1.0/instances/{name}?project={project}")


def _gone(client: pylxd.Client, name: str) -> None:
    if client.instances.exists(name):
        inst = client.instances.get(name)
        if inst.status != "Stopped":
            inst.stop(force=True, wait=True)
        inst.delete(wait=True)


def test_pylxd_same_name_in_two_projects(proj: Coved, busybox_tar: Path) -> None:
    d = proj
    admin = pylxd.Client(endpoint=_endpoint(d))
    project = "covetest-p" + new_name()[-6:]
    admin.projects.create(project, description="covetest")
    assert admin.projects.exists(project)
    assert admin.projects.get(project).config["features.images"] == "true"
    client = pylxd.Client(endpoint=_endpoint(d), project=project)
    # features.images: the project has its own images, none yet (as LXD)
    assert client.images.all() == []
    image = client.images.create(busybox_tar.read_bytes(), wait=True)
    image.add_alias("busybox", "the project's own alias")
    default_fp = admin.images.get_by_alias("busybox").fingerprint
    assert image.fingerprint == default_fp
    assert len(list((d.root / "images").iterdir())) == 1  # one set of layers for both
    q = f"?project={project}"
    assert d.api.sync("GET", f"/1.0/images/aliases{q}") == ["/1.0/images/aliases/busybox"]
    d.api.sync("POST", f"/1.0/images/aliases/busybox{q}", {"name": "bb"})
    assert d.api.sync("GET", f"/1.0/images/aliases/bb{q}")["target"] == default_fp
    assert d.api.sync("GET", "/1.0/images/aliases/busybox")["target"] == default_fp
    assert d.api.request("GET", "/1.0/images/aliases/bb").status == 404
    d.api.sync("POST", f"/1.0/images/aliases/bb{q}", {"name": "busybox"})
    name = new_name("same")
    spec: dict[str, Any] = {"name": name, "source": {"type": "image", "alias": "busybox"},
                            "config": {"cove.cmd": "sleep 1000"}}
    try:
        mine = client.instances.create(dict(spec), wait=True)
        theirs = admin.instances.create(dict(spec), wait=True)
        mine.start(wait=True)
        theirs.start(wait=True)
        # recursion=1: at 0 pylxd takes the last path segment of each URL, which
        # for a project's instance is "NAME?project=P" (from LXD 5.0 too)
        assert [i.name for i in client.instances.all(recursion=1)] == [name]
        assert [i.name for i in admin.instances.all(recursion=1)] == [name]
        assert client.api.instances.get().json()["metadata"] == [
            f"/1.0/instances/{name}?project={project}"]
        got = client.instances.get(name)
        assert got.project == project and got.status == "Running"
        assert admin.instances.get(name).project == "default"
        # two containers: each sees its own hostname (the plain name), its own files
        res = mine.execute(["hostname"])
        assert (res.exit_code, res.stdout) == (0, f"{name}\n")
        mine.files.put("/tmp/who", b"project")
        theirs.files.put("/tmp/who", b"default")
        assert client.instances.get(name).files.get("/tmp/who") == b"project"
        assert admin.instances.get(name).files.get("/tmp/who") == b"default"
        assert mine.state().pid != theirs.state().pid
        # every project's instances, each saying whose
        everything = d.api.sync("GET", "/1.0/instances?all-projects=true&recursion=1")
        assert sorted((i["project"], i["name"]) for i in everything) == sorted(
            [("default", name), (project, name)])
        used_by = admin.projects.get(project).used_by
        assert f"/1.0/instances/{name}?project={project}" in used_by
        r = d.api.request("DELETE", f"/1.0/projects/{project}")
        assert r.status == 400 and "Only empty projects" in r.json["error"]
        # stopping one leaves the other running
        mine.stop(wait=True)
        assert admin.instances.get(name).status == "Running"
        mine.delete(wait=True)
        assert admin.instances.exists(name)
    finally:
        _gone(client, name)
        _gone(admin, name)
    r = d.api.request("DELETE", f"/1.0/projects/{project}")
    assert r.status == 400  # its image is still there
    client.images.get(image.fingerprint).delete(wait=True)
    assert admin.images.get_by_alias("busybox").fingerprint == default_fp
    assert (d.root / "images" / default_fp).is_dir()  # default still holds the layers
    admin.projects.get(project).delete()
    assert not admin.projects.exists(project)
    assert_no_leaks(d.root)


def test_project_limits_and_unknown_project(proj: Coved) -> None:
    d = proj
    project = "covetest-l" + new_name()[-6:]
    d.api.sync("POST", "/1.0/projects", {"name": project,
                                          "config": {"limits.instances": "1",
                                                     "limits.memory": "256MiB",
                                                     "features.images": "false"}})
    base = f"/1.0/instances?project={project}"
    name = new_name("lim")
    try:
        r = d.api.request("POST", base, {"name": name, "source": {"type": "image",
                                                                 "alias": "busybox"}})
        assert r.status == 400 and "has no 'limits.memory' config" in r.json["error"]
        d.api.run("POST", base, {"name": name, "source": {"type": "image", "alias": "busybox"},
                                 "config": {"limits.memory": "128MiB"}})
        r = d.api.request("POST", base, {"name": name + "b",
                                         "source": {"type": "image", "alias": "busybox"},
                                         "config": {"limits.memory": "64MiB"}})
        assert r.status == 400 and "maximum number of instances" in r.json["error"]
        r = d.api.request("PATCH", f"/1.0/instances/{name}?project={project}",
                          {"config": {"limits.memory": "512MiB"}})
        assert r.status == 400 and "aggregate" in r.json["error"]
        state = d.api.sync("GET", f"/1.0/projects/{project}/state")["resources"]
        assert state["instances"] == {"limit": 1, "usage": 1}
        assert state["memory"] == {"limit": 256 << 20, "usage": 128 << 20}
        r = d.api.request("GET", "/1.0/instances?project=covetest-nope")
        assert r.status == 404 and r.json["error"] == "Project not found"
    finally:
        _remove_in(d, name, project)
    d.api.sync("DELETE", f"/1.0/projects/{project}")
    assert_no_leaks(d.root)


@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_project_create_switch_list(proj: Coved) -> None:
    d = proj
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}

    def lxc(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        assert LXC is not None
        p = subprocess.run([LXC, *args], env=env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=60, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)} exited {p.returncode}: "
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    project = "covetest-x" + new_name()[-6:]
    name = new_name("lxcp")
    try:
        lxc("remote", "add", "covetest-r", f"unix://{d.socket}")
        lxc("remote", "switch", "covetest-r")
        lxc("project", "create", project, "-c", "user.covetest=1",
            "-c", "features.images=false")
        rows = list(csv.reader(io.StringIO(lxc("project", "list", "--format", "csv")
                                           .stdout.decode())))
        names = [r[0].split(" ")[0] for r in rows]
        assert "default" in names and project in names, rows
        lxc("project", "switch", project)
        assert project in lxc("project", "list", "--format", "csv").stdout.decode()
        lxc("launch", "busybox", name, "-c", "cove.cmd=sleep 1000")
        listed = lxc("list", "--format", "csv", "-c", "ns").stdout.decode()
        assert f"{name},RUNNING" in listed
        assert name not in lxc("list", "--project", "default", "--format", "csv", "-c", "n"
                               ).stdout.decode()
        out = lxc("exec", name, "--", "hostname").stdout.decode()
        assert out == f"{name}\n"
        p = lxc("project", "delete", project, check=False)
        assert p.returncode != 0 and b"Only empty projects" in p.stderr
        shown = lxc("project", "show", project).stdout.decode()
        assert "user.covetest" in shown and f"/1.0/instances/{name}?project={project}" in shown
        lxc("delete", "--force", name)
        lxc("project", "switch", "default")
        lxc("project", "delete", project)
        assert project not in lxc("project", "list", "--format", "csv").stdout.decode()
    finally:
        lxc("delete", "--force", "--project", project, name, check=False)
        lxc("project", "delete", project, check=False)
        shutil.rmtree(home, ignore_errors=True)
    assert_no_leaks(d.root)


def test_cove_cli_projects(proj: Coved, tmp_path: Path) -> None:
    d = proj
    env = d.cli_env()
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env.pop("COVE_PROJECT", None)

    def cove(*args: str, check: bool = True,
             extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args],
                           env={**env, **(extra or {})}, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"cove {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    project = "covetest-c" + new_name()[-6:]
    name = new_name("clip")
    try:
        cove("project", "create", project, "-c", "limits.instances=2", "--description", "t",
             "-c", "features.images=false")
        rows = list(csv.reader(io.StringIO(cove("project", "list", "-f", "csv").stdout)))
        assert ["default (current)", "YES", "YES", "YES", "YES", "Default LXD project"] \
            in [r[:6] for r in rows], rows
        assert [project, "NO", "YES", "YES", "NO", "t", "1"] in rows, rows  # its profile
        assert cove("project", "get", project, "limits.instances").stdout == "2\n"
        cove("project", "set", project, "limits.instances", "3")
        cove("project", "set", project, "user.a=b")
        cove("project", "unset", project, "user.a")
        shown = cove("project", "show", project).stdout
        assert "limits.instances: '3'" in shown or 'limits.instances: "3"' in shown, shown
        assert "user.a" not in shown
        cove("project", "switch", project)
        assert f"{project} (current)" in cove("project", "list").stdout
        cove("launch", "busybox", name, "-c", "cove.cmd=sleep 1000")
        assert name in cove("list", "-f", "csv").stdout
        assert name not in cove("--project", "default", "list", "-f", "csv").stdout
        assert name not in cove("list", "--project", "default", "-f", "csv").stdout
        assert name not in cove("list", "-f", "csv", extra={"COVE_PROJECT": "default"}).stdout
        assert cove("exec", name, "--", "hostname").stdout == f"{name}\n"
        info = cove("project", "info", project, "-f", "csv").stdout
        assert "INSTANCES,3,1" in info, info
        p = cove("project", "delete", project, check=False)
        assert p.returncode == 1 and "Only empty projects can be removed" in p.stderr
        p = cove("--project", "covetest-none", "list", check=False)
        assert p.returncode == 1 and "Project not found" in p.stderr
        cove("delete", "--force", name)
        cove("project", "rename", project, project + "x")
        assert f"{project}x (current)" in cove("project", "list").stdout
        cove("project", "switch", "default")
        cove("project", "delete", project + "x")
    finally:
        cove("--project", project, "delete", "--force", name, check=False)
        cove("project", "delete", project, check=False)
        cove("project", "delete", project + "x", check=False)
    assert_no_leaks(d.root)


def test_dns_names_do_not_leak_between_projects(proj: Coved) -> None:
    """LXD's names: ``web`` of default is ``web(.cove)``, ``web`` of project P
    is ``web.P(.cove)``; neither answers for the other."""
    from nethost import dns_query

    d = proj
    project = "covetest-d" + new_name()[-6:]
    d.api.sync("POST", "/1.0/projects", {"name": project,
                                          "config": {"features.images": "false"}})
    name = new_name("dns")
    mine = f"/1.0/instances/{name}?project={project}"
    try:
        d.api.launch(name)
        d.api.run("POST", f"/1.0/instances?project={project}", {
            "name": name, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": "sleep 1000"}, "start": True})

        def ip(path: str) -> str:
            st = d.api.sync("GET", path.replace(f"/{name}", f"/{name}/state", 1))
            return str(st["network"]["eth0"]["addresses"][0]["address"])

        default_ip, project_ip = ip(f"/1.0/instances/{name}"), ip(mine)
        assert default_ip != project_ip
        (net,) = d.api.sync("GET", "/1.0/networks?recursion=1")
        gw = net["config"]["ipv4.address"].split("/")[0]
        assert dns_query(gw, f"{name}.cove") == default_ip
        assert dns_query(gw, name) == default_ip
        assert dns_query(gw, f"{name}.{project}.cove") == project_ip
        assert dns_query(gw, f"{project}_{name}.cove") is None  # the key is no name
        hosts = d.api.sh(name, "cat /etc/hosts").decode()
        assert f"{default_ip}\t{name}.cove {name}" in hosts
        leases = d.api.sync("GET", f"/1.0/networks/{net['name']}/leases")
        assert {(x["hostname"], x["project"], x["address"]) for x in leases} >= {
            (name, "default", default_ip), (name, project, project_ip)}
        r = d.api.request("POST", mine.replace(f"/{name}?", f"/{name}/exec?"), {
            "command": ["cat", "/etc/hosts"], "wait-for-websocket": False,
            "record-output": True, "interactive": False})
        op = d.api.wait(r)
        assert op["metadata"]["return"] == 0
        out = d.api.request("GET", op["metadata"]["output"]["1"]).body.decode()
        assert f"{project_ip}\t{name}.{project}.cove {name}" in out
    finally:
        d.api.remove(name)
        _remove_in(d, name, project)
    d.api.sync("DELETE", f"/1.0/projects/{project}")
    assert_no_leaks(d.root)


def test_projects_and_their_instances_survive_a_reboot(proj: Coved) -> None:
    """coved killed and the host's runtime state gone: the project is still
    there and its autostart instance comes back in it, under its own name."""
    from covetest import conmon_pids, runc_ids, wait_until

    d = proj
    project = "covetest-r" + new_name()[-6:]
    d.api.sync("POST", "/1.0/projects", {"name": project,
                                          "config": {"features.images": "false"}})
    name = new_name("boot")
    try:
        d.api.run("POST", f"/1.0/instances?project={project}", {
            "name": name, "source": {"type": "image", "alias": "busybox"}, "start": True,
            "config": {"cove.cmd": "sleep 1000", "boot.autostart": "true"}})
        d.kill()
        runc_root = d.root / "run" / "runc"
        for cid in runc_ids(d.root):
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid],
                           capture_output=True, check=True, timeout=30)
        wait_until(lambda: not conmon_pids(d.root), what="the monitors to go")
        shutil.rmtree(d.root / "run")
        d.start()
        assert d.api.sync("GET", f"/1.0/projects/{project}")["name"] == project
        st = d.api.sync("GET", f"/1.0/instances/{name}/state?project={project}")
        assert st["status"] == "Running"
        assert d.api.request("GET", f"/1.0/instances/{name}").status == 404
    finally:
        _remove_in(d, name, project)
    d.api.sync("DELETE", f"/1.0/projects/{project}")
    assert_no_leaks(d.root)


def test_a_published_port_is_one_host_port_whatever_the_project(proj: Coved) -> None:
    """Host ports are the host's: a project's instance holding one refuses
    another project's, and the message names the instance and its project."""
    import socket

    d = proj
    project = "covetest-o" + new_name()[-6:]
    d.api.sync("POST", "/1.0/projects", {"name": project,
                                          "config": {"features.images": "false"}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = {"type": "proxy", "listen": f"tcp:0.0.0.0:{port}", "connect": "tcp:0.0.0.0:80",
             "nat": "true"}
    name = new_name("port")
    try:
        d.api.run("POST", f"/1.0/instances?project={project}", {
            "name": name, "source": {"type": "image", "alias": "busybox"}, "start": True,
            "config": {"cove.cmd": "sleep 1000"}, "devices": {"http": proxy}})
        r = d.api.request("POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "alias": "busybox"}, "start": True,
            "config": {"cove.cmd": "sleep 1000"}, "devices": {"http": proxy}})
        assert r.status == 409, r.body
        assert f"already published by instance {name} (project {project})" in r.error
        assert d.api.request("GET", f"/1.0/instances/{name}").status == 404
    finally:
        d.api.remove(name)
        _remove_in(d, name, project)
    d.api.sync("DELETE", f"/1.0/projects/{project}")
    assert_no_leaks(d.root)
