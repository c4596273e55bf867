"""The stack flows (``cove.client.stack``) on an in-memory host: what ``up``
makes, in what order, what it leaves alone, what ``down`` removes, and that
the asyncio runner starts one level's services at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cove.client.drivers import _steps as s
from cove.client.drivers import _steps_storage as st
from cove.client.stack import AsyncStack, Stack
from cove.model.errors import BadRequest, NotFound

DOC: dict[str, Any] = {"name": "app", "services": {
    "db": {"image": "busybox", "volumes": ["data:/data"]},
    "cache": {"image": "busybox"},
    "web": {"image": "busybox", "depends_on": ["db", "cache"], "user": "app"},
}, "volumes": {"data": {}}}


class FakeHost:
    """A host as the steps see it; records what was done, in order."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.aliases = {"busybox": "b" * 64, "oci": "c" * 64}
        self.images: dict[str, dict[str, Any]] = {
            "b" * 64: {"properties": {}},
            "c" * 64: {"properties": {"oci.entrypoint": "/entry.sh --flag"}}}
        self.log: list[str] = []
        self.running = 0
        self.most_running_starts = 0

    def do(self, step: Any) -> Any:
        if isinstance(step, s.GetAlias):
            fp = self.aliases.get(step.name)
            return {"name": step.name, "target": fp} if fp else None
        if isinstance(step, s.GetImage):
            return self.images.get(step.fingerprint)
        if isinstance(step, s.GetNetwork):
            return self.networks.get(step.name)
        if isinstance(step, s.CreateNetwork):
            self.log.append(f"network {step.name}")
            self.networks[step.name] = {"name": step.name, "type": "bridge",
                                        "description": step.description, "config": {}}
            return None
        if isinstance(step, s.DeleteNetwork):
            self.log.append(f"-network {step.name}")
            del self.networks[step.name]
            return None
        if isinstance(step, st.GetVolume):
            return self.volumes.get(step.name)
        if isinstance(step, st.CreateVolume):
            self.log.append(f"volume {step.name}")
            self.volumes[step.name] = {"name": step.name, "description": step.description,
                                       "type": "custom", "config": {}}
            return None
        if isinstance(step, st.DeleteVolume):
            self.log.append(f"-volume {step.name}")
            del self.volumes[step.name]
            return None
        if isinstance(step, s.ListInstances):
            return [dict(i) for i in self.instances.values()]
        if isinstance(step, s.GetInstance):
            inst = self.instances.get(step.name)
            return dict(inst) if inst else None
        return self.change(step)

    def check_depends(self, name: str, config: dict[str, Any]) -> None:
        """As coved holds cove.depends (issue 11): an unknown name is refused
        when the key is set, and an instance others depend on is not deleted."""
        for dep in filter(None, str(config.get("cove.depends") or "").split(",")):
            if dep.split(":")[0] not in self.instances:
                raise BadRequest(f"{name}: cove.depends names unknown {dep}")

    def change(self, step: Any) -> Any:
        if isinstance(step, s.Create):
            self.check_depends(step.name, dict(step.post.config))
            self.log.append(f"create {step.name}")
            self.instances[step.name] = {"name": step.name, "status": "Stopped",
                                         "config": dict(step.post.config),
                                         "devices": dict(step.post.devices)}
            return None
        if isinstance(step, s.Update):
            self.check_depends(step.name, step.body.get("config") or {})
            self.log.append(f"update {step.name}")
            if step.patch:
                self.instances[step.name]["config"].update(step.body.get("config") or {})
            else:
                self.instances[step.name].update(step.body)
            return None
        if isinstance(step, s.Action):
            self.log.append(f"{step.action} {step.name}")
            self.instances[step.name]["status"] = "Running" if step.action == "start" \
                else "Stopped"
            return None
        if isinstance(step, s.Delete):
            users = [n for n, i in self.instances.items()
                     if step.name in str(i["config"].get("cove.depends") or "")]
            if users:
                raise BadRequest(f"{step.name} is needed by {users}")
            self.log.append(f"delete {step.name}")
            del self.instances[step.name]
            return None
        raise AssertionError(f"unexpected step {step!r}")

    def read(self, name: str, path: str) -> bytes:
        return {"/etc/passwd": b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
                }.get(path, b"")


class FakeDriver:
    def __init__(self, host: FakeHost) -> None:
        self.host = host

    def _perform(self, step: Any) -> Any:
        return self.host.do(step)

    def transport_for(self, name: str) -> Any:
        host = self.host

        class T:
            def read_file(self, path: str) -> bytes:
                return host.read(name, path)

        return T()


class FakeAsyncDriver(FakeDriver):
    async def _do(self, step: Any) -> Any:
        if isinstance(step, s.Action) and step.action == "start":
            self.host.running += 1
            self.host.most_running_starts = max(self.host.most_running_starts,
                                                self.host.running)
            await asyncio.sleep(0.05)
            self.host.running -= 1
        return self.host.do(step)

    def transport_for(self, name: str) -> Any:
        host = self.host

        class T:
            async def read_file(self, path: str) -> bytes:
                return host.read(name, path)

        return T()


def test_up_makes_everything_in_order_then_converges() -> None:
    host = FakeHost()
    stack = Stack(FakeDriver(host), DOC)  # type: ignore[arg-type]
    changes = stack.up()
    assert [(c.service, c.action) for c in changes] == [
        ("cache", "created"), ("db", "created"), ("web", "created")]
    assert host.log[:2] == ["network app", "volume app-data"]
    assert host.log.index("start app-db") < host.log.index("create app-web")
    assert host.log.index("start app-cache") < host.log.index("start app-web")
    web = host.instances["app-web"]
    assert web["config"]["cove.uid"] == "1000" and web["config"]["cove.gid"] == "1000"
    assert web["config"]["cove.depends"] == "app-db:started,app-cache:started"
    assert {i["status"] for i in host.instances.values()} == {"Running"}

    host.log.clear()
    assert [c.action for c in stack.up()] == ["unchanged"] * 3
    assert host.log == []

    edited = {**DOC, "services": {**DOC["services"],
                                  "db": {"image": "busybox", "environment": {"X": "1"},
                                         "volumes": ["data:/data"]}}}
    del edited["services"]["cache"]
    edited["services"]["web"] = {**DOC["services"]["web"], "depends_on": ["db"]}
    changes = Stack(FakeDriver(host), edited).up()  # type: ignore[arg-type]
    assert [(c.service, c.action) for c in changes] == [
        ("db", "recreated"), ("web", "recreated"), ("cache", "removed")]
    assert "app-cache" not in host.instances
    assert host.instances["app-db"]["config"]["environment.X"] == "1"
    # dependents stop first; a changed service keeps its instance (same image)
    assert host.log.index("stop app-web") < host.log.index("stop app-db")
    assert "create app-db" not in host.log

    assert sorted(Stack(FakeDriver(host), name="app").down(volumes=True)) == [  # type: ignore[arg-type]
        "app-db", "app-web"]
    assert host.instances == {} and host.networks == {} and host.volumes == {}


def test_checks_come_before_anything_is_made() -> None:
    host = FakeHost()
    bad = {**DOC, "services": {**DOC["services"], "x": {"image": "nosuch"}}}
    with pytest.raises(NotFound, match="Image 'nosuch' not found"):
        Stack(FakeDriver(host), bad).up()  # type: ignore[arg-type]
    host.instances["app-db"] = {"name": "app-db", "status": "Stopped", "config": {}}
    with pytest.raises(BadRequest, match="app-db exists and is not part of stack app"):
        Stack(FakeDriver(host), DOC).up()  # type: ignore[arg-type]
    assert host.log == [] and host.networks == {}


def test_down_keeps_what_the_stack_did_not_make() -> None:
    host = FakeHost()
    Stack(FakeDriver(host), DOC).up()  # type: ignore[arg-type]
    host.networks["app"]["description"] = "somebody's"
    Stack(FakeDriver(host), name="app").down()  # type: ignore[arg-type]
    assert "app" in host.networks and "app-data" in host.volumes  # no -v: volumes stay


def test_the_async_runner_starts_a_level_at_once() -> None:
    host = FakeHost()
    doc = {"name": "p", "services": {f"s{i}": {"image": "busybox"} for i in range(4)}}
    doc["services"]["top"] = {"image": "busybox", "depends_on": [f"s{i}" for i in range(4)]}

    async def main() -> list[str]:
        stack = AsyncStack(FakeAsyncDriver(host), doc)  # type: ignore[arg-type]
        return [c.service for c in await stack.up()]

    assert asyncio.run(main()) == ["s0", "s1", "s2", "s3", "top"]
    assert host.most_running_starts == 4
    assert host.log.index("start p-s3") < host.log.index("create p-top")


def test_an_edit_keeps_every_dependency_there_while_it_is_named() -> None:
    """web moves from cache to a new queue: queue is made before web names
    it, cache is deleted only after web stopped naming it."""
    host = FakeHost()
    Stack(FakeDriver(host), DOC).up()  # type: ignore[arg-type]
    host.log.clear()
    edited = {**DOC, "services": {
        "db": DOC["services"]["db"], "queue": {"image": "busybox"},
        "web": {**DOC["services"]["web"], "depends_on": ["db", "queue"]}}}
    changes = Stack(FakeDriver(host), edited).up()  # type: ignore[arg-type]
    assert [(c.service, c.action) for c in changes] == [
        ("db", "unchanged"), ("queue", "created"), ("web", "recreated"), ("cache", "removed")]
    assert host.log.index("create app-queue") < host.log.index("update app-web") < \
        host.log.index("delete app-cache")
    assert host.instances["app-web"]["config"]["cove.depends"] == \
        "app-db:started,app-queue:started"


def test_load_reads_the_file_dotenv_and_env_files(tmp_path: Any, monkeypatch: Any) -> None:
    from cove.client.stack import find_file, load

    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  a:\n    image: ${IMG}\n    env_file: conf/a.env\n"
        "    environment: {WHO: $WHO}\n")
    (tmp_path / ".env").write_text("IMG=busybox\nWHO=dotenv\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.env").write_text("FROM_FILE=${IMG}\n")
    monkeypatch.chdir(tmp_path)
    assert find_file() == "./docker-compose.yml"
    plan = load(env={"WHO": "shell"})  # the shell's variables win over .env
    assert plan.name == tmp_path.name.lower().replace("_", "-")
    a = plan.service("a")
    assert a.image == "busybox"
    assert a.config["environment.WHO"] == "shell"
    assert a.config["environment.FROM_FILE"] == "busybox"
    with pytest.raises(BadRequest, match="no such file"):
        load(tmp_path / "nope.yaml")
    (tmp_path / "docker-compose.yml").unlink()
    with pytest.raises(NotFound, match="No Compose file"):
        find_file()


def test_a_command_alone_goes_after_the_images_entrypoint() -> None:
    host = FakeHost()
    Stack(FakeDriver(host), {"name": "ep", "services": {  # type: ignore[arg-type]
        "cmd": {"image": "oci", "command": "postgres -c x=1"},
        "none": {"image": "oci", "command": []},
        "own": {"image": "oci", "entrypoint": ["/bin/sh", "-c"], "command": "true"},
        "plain": {"image": "busybox", "command": ["sleep", "1"]},
        "default": {"image": "oci"}}}).up()
    cmd = {n.split("-", 1)[1]: i["config"].get("cove.cmd") for n, i in host.instances.items()}
    assert cmd == {"cmd": "/entry.sh --flag postgres -c x=1", "none": "/entry.sh --flag",
                   "own": "/bin/sh -c true", "plain": "sleep 1", "default": None}


def test_a_stopped_service_with_a_restart_policy_is_sent_a_stop() -> None:
    """It may be waiting out its back-off: coved cancels that restart on a stop."""
    host = FakeHost()
    doc = {"name": "rs", "services": {"loop": {"image": "busybox", "restart": "always"},
                                      "plain": {"image": "busybox"}}}
    Stack(FakeDriver(host), doc).up()  # type: ignore[arg-type]
    for inst in host.instances.values():
        inst["status"] = "Stopped"  # both exited
    host.log.clear()
    Stack(FakeDriver(host), name="rs").down()  # type: ignore[arg-type]
    assert host.log[0] == "stop rs-loop", host.log  # and none for the one without
    assert sorted(host.log[1:]) == ["-network rs", "delete rs-loop", "delete rs-plain"]
