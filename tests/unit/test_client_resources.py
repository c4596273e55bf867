"""The flows of the host's other resources (images, aliases, networks,
operations, certificates, containers) on a fake host; their REST requests on
scripted answers; the CLI driver's commands on a fake transport; the event
streams on a fake LXD and a real event bus.

The fakes are small typed handlers, not mocks: ``FakeResources._do`` keeps
each resource in a dict and answers every step the way a host would.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from test_client_fakelxd import FakeLXD, ServerWebSocket
from test_client_fakelxd import Request as FakeRequest

from cove import api
from cove.client import _wire as wire
from cove.client._exec import ExecResult
from cove.client._flow import drive
from cove.client._http import Response
from cove.client.drivers import _rest_steps
from cove.client.drivers import _steps as s
from cove.client.drivers.base import Driver, EventDriver, Progress, Step
from cove.client.drivers.cli import CliDriver
from cove.client.drivers.local import LocalEventStream
from cove.client.drivers.rest import RestDriver
from cove.client.transports.base import Transport
from cove.client.transports.local import LocalTransport
from cove.engine.events import EventBus
from cove.model.errors import BadRequest, Conflict, CoveError, InternalError, NotFound, Timeout

pytest_plugins = ("test_client_fakelxd",)

FP_A = "a" * 64
PEM_BODY = "MIIB" + "A" * 100  # base64 DER: starts with 0x30 (a SEQUENCE)


def _pem() -> str:
    return f"-----BEGIN CERTIFICATE-----\n{PEM_BODY}\n-----END CERTIFICATE-----\n"


class FakeResources(Driver):
    """A host's images, aliases, networks, operations and certificates in
    dicts; ``fail`` makes the next step of a kind raise (after ``then`` runs)."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.fail: dict[type, CoveError] = {}
        self.then: dict[type, Callable[[], None]] = {}
        self.image_db: dict[str, dict[str, Any]] = {
            FP_A: {"fingerprint": FP_A, "properties": {"os": "busybox"}, "aliases": []}}
        self.alias_db: dict[str, dict[str, Any]] = {}
        self.network_db: dict[str, dict[str, Any]] = {}
        self.op_db: dict[str, dict[str, Any]] = {}
        self.cert_db: dict[str, dict[str, Any]] = {}
        self.instance_db: dict[str, dict[str, Any]] = {}

    def transport_for(self, name: str) -> Transport:
        raise AssertionError("not used")

    def kinds(self) -> list[str]:
        return [type(st).__name__ for st in self.steps]

    def _do(self, step: Step) -> Any:
        self.steps.append(step)
        hook = self.then.pop(type(step), None)
        if hook is not None:
            hook()
        err = self.fail.pop(type(step), None)
        if err is not None:
            raise err
        return self._answer(step)

    def _answer(self, step: Step) -> Any:
        if isinstance(step, s.ListImages):
            return list(self.image_db.values())
        if isinstance(step, s.GetImage):
            found = [v for k, v in self.image_db.items() if k.startswith(step.fingerprint)]
            return found[0] if len(found) == 1 else None
        if isinstance(step, s.ImportImage):
            self.image_db[step.fingerprint] = {"fingerprint": step.fingerprint,
                                             "properties": {}, "aliases": []}
            return None
        if isinstance(step, s.UpdateImage):
            if step.properties is not None:
                self.image_db[step.fingerprint]["properties"].update(step.properties)
            return None
        if isinstance(step, s.DeleteImage):
            del self.image_db[step.fingerprint]
            return None
        if isinstance(step, s.ListAliases):
            return list(self.alias_db.values())
        if isinstance(step, s.GetAlias):
            return self.alias_db.get(step.name)
        if isinstance(step, s.CreateAlias):
            self.alias_db[step.name] = {"name": step.name, "target": step.target,
                                       "description": step.description}
            return None
        if isinstance(step, s.RenameAlias):
            self.alias_db[step.new_name] = dict(self.alias_db.pop(step.name), name=step.new_name)
            return None
        if isinstance(step, s.DeleteAlias):
            del self.alias_db[step.name]
            return None
        if isinstance(step, s.GetNetwork):
            return self.network_db.get(step.name)
        if isinstance(step, s.CreateNetwork):
            self.network_db[step.name] = {"name": step.name, "type": step.type,
                                        "config": dict(step.config),
                                        "description": step.description, "managed": True}
            return None
        if isinstance(step, s.UpdateNetwork):
            net = self.network_db[step.name]
            net["config"] = {**net["config"], **step.config} if step.patch else dict(step.config)
            if step.description is not None:
                net["description"] = step.description
            return None
        if isinstance(step, s.DeleteNetwork):
            del self.network_db[step.name]
            return None
        if isinstance(step, s.GetOperation):
            return self.op_db.get(step.id)
        if isinstance(step, s.WaitOperation):
            if step.id not in self.op_db:
                raise NotFound("Operation not found")
            return self.op_db[step.id]
        if isinstance(step, s.CancelOperation):
            self.op_db[step.id]["status"] = "Cancelled"
            return None
        if isinstance(step, s.GetCertificate):
            found = [v for k, v in self.cert_db.items() if k.startswith(step.fingerprint)]
            return found[0] if found else None
        if isinstance(step, s.AddCertificate):
            from cove.model import trust

            fp = trust.fingerprint(trust.cert_der(step.pem))
            self.cert_db[fp] = {"fingerprint": fp, "name": step.name, "certificate": step.pem,
                              "type": "client"}
            return None
        if isinstance(step, s.DeleteCertificate):
            del self.cert_db[step.fingerprint]
            return None
        if isinstance(step, s.ListInstances):
            return list(self.instance_db.values())
        if isinstance(step, s.GetInstance):
            return self.instance_db.get(step.name)
        if isinstance(step, s.Rename):
            self.instance_db[step.new_name] = dict(self.instance_db.pop(step.name),
                                                 name=step.new_name)
            return None
        raise AssertionError(step)


@pytest.fixture
def host() -> FakeResources:
    return FakeResources()


# -- images --------------------------------------------------------------------------------------

def _tarball(tmp_path: Path, data: bytes = b"an image") -> tuple[Path, str]:
    p = tmp_path / "image.tar.gz"
    p.write_bytes(data)
    return p, hashlib.sha256(data).hexdigest()


def test_import_uploads_a_new_image_and_names_it(host: FakeResources, tmp_path: Path) -> None:
    path, fp = _tarball(tmp_path)
    img = host.import_image(path, aliases=["web"])
    assert isinstance(img, api.Image) and img.fingerprint == fp
    imports = [st for st in host.steps if isinstance(st, s.ImportImage)]
    assert imports == [s.ImportImage(str(path), fp)]
    assert host.alias_db["web"]["target"] == fp


def test_import_of_an_image_the_host_has_uploads_nothing(host: FakeResources,
                                                         tmp_path: Path) -> None:
    path, fp = _tarball(tmp_path)
    host.image_db[fp] = {"fingerprint": fp, "properties": {}, "aliases": []}
    assert host.import_image(path, aliases=("web",)).fingerprint == fp
    assert "ImportImage" not in host.kinds() and host.alias_db["web"]["target"] == fp


def test_import_refuses_an_alias_of_another_image_before_uploading(
        host: FakeResources, tmp_path: Path) -> None:
    path, _ = _tarball(tmp_path)
    host.alias_db["web"] = {"name": "web", "target": FP_A}
    with pytest.raises(Conflict, match="web"):
        host.import_image(path, aliases=["web"])
    assert "ImportImage" not in host.kinds()


def test_import_raced_by_another_importer_converges(host: FakeResources,
                                                    tmp_path: Path) -> None:
    path, fp = _tarball(tmp_path)

    def other_importer() -> None:
        host.image_db[fp] = {"fingerprint": fp, "properties": {}, "aliases": []}
    host.then[s.ImportImage] = other_importer
    host.fail[s.ImportImage] = InternalError("Image with same fingerprint already exists")
    assert host.import_image(path).fingerprint == fp
    host2 = FakeResources()
    host2.fail[s.ImportImage] = BadRequest("not an image")
    with pytest.raises(BadRequest, match="not an image"):
        host2.import_image(path)


@pytest.mark.parametrize(("make", "error"), [
    (lambda p: p / "none.tar.gz", NotFound), (lambda p: p, BadRequest)])
def test_import_checks_the_local_file_first(host: FakeResources, tmp_path: Path,
                                           make: Callable[[Path], Path],
                                           error: type[CoveError]) -> None:
    with pytest.raises(error):
        host.import_image(make(tmp_path))
    path, _ = _tarball(tmp_path)
    with pytest.raises(BadRequest):
        host.import_image(path, aliases=["a/b"])
    assert host.steps == []


def test_image_reads_update_and_delete(host: FakeResources) -> None:
    assert [i.fingerprint for i in host.images()] == [FP_A]
    assert host.image("aaaa").properties == {"os": "busybox"}
    with pytest.raises(NotFound):
        host.image("bbbb")
    host.update_image("aaa", properties={"n": 1, "flag": True})
    assert host.steps[-1] == s.UpdateImage(FP_A, {"n": "1", "flag": "true"}, None)
    host.steps.clear()
    host.update_image(FP_A)  # nothing to change: only looked
    assert host.kinds() == ["GetImage"]
    host.delete_image("aaa")
    host.delete_image("aaa")  # gone: nothing
    assert host.kinds().count("DeleteImage") == 1 and FP_A not in host.image_db
    host.image_db[FP_A] = {"fingerprint": FP_A}
    host.fail[s.DeleteImage] = BadRequest("Image is in use by instances: c1")
    with pytest.raises(BadRequest, match="in use"):
        host.delete_image(FP_A)


# -- aliases ----------------------------------------------------------------------------------

def test_aliases_converge(host: FakeResources) -> None:
    made = host.create_alias("web", "aaaa", "the web image")
    assert isinstance(made, api.ImageAliasesEntry)
    assert (made.name, made.target, made.description) == ("web", FP_A, "the web image")
    host.steps.clear()
    host.create_alias("web", FP_A)  # names it already
    assert "CreateAlias" not in host.kinds()
    host.image_db["b" * 64] = {"fingerprint": "b" * 64}
    with pytest.raises(Conflict):
        host.create_alias("web", "b" * 64)
    with pytest.raises(NotFound):
        host.create_alias("db", "c" * 64)
    host.rename_alias("web", "www")
    host.rename_alias("web", "www")  # done already
    assert host.kinds().count("RenameAlias") == 1 and host.alias("www").target == FP_A
    with pytest.raises(NotFound):
        host.rename_alias("nope", "nope2")
    assert [a.name for a in host.aliases()] == ["www"]
    host.delete_alias("www")
    host.delete_alias("www")
    assert host.kinds().count("DeleteAlias") == 1
    with pytest.raises(NotFound):
        host.alias("www")


def test_alias_created_meanwhile_by_another_client(host: FakeResources) -> None:
    def other() -> None:
        host.alias_db["web"] = {"name": "web", "target": FP_A}
    host.then[s.CreateAlias] = other
    host.fail[s.CreateAlias] = Conflict("Alias already exists")
    host.create_alias("web", FP_A)


# -- networks -----------------------------------------------------------------------------------

def test_networks_converge(host: FakeResources) -> None:
    net = host.create_network("lab", config={"ipv4.nat": False, "ipv4.address": "auto"},
                              description="d")
    assert isinstance(net, api.Network)
    assert net.config == {"ipv4.nat": "false", "ipv4.address": "auto"}
    host.steps.clear()
    assert host.create_network("lab", config={"x": "y"}).config["ipv4.nat"] == "false"
    assert "CreateNetwork" not in host.kinds()
    with pytest.raises(Conflict, match="type bridge"):
        host.create_network("lab", type="cni")
    host.update_network("lab", config={"user.a": "1"})
    assert host.steps[-1] == s.UpdateNetwork("lab", {"user.a": "1"}, None, patch=True)
    host.update_network("lab", config={"ipv4.nat": None}, description="new")
    put = host.steps[-1]
    assert put == s.UpdateNetwork("lab", {"ipv4.address": "auto", "user.a": "1"}, "new",
                                  patch=False)
    host.steps.clear()
    host.update_network("lab")  # nothing to change
    assert host.kinds() == ["GetNetwork"]
    host.delete_network("lab")
    host.delete_network("lab")
    assert host.kinds().count("DeleteNetwork") == 1
    for call in (lambda: host.network("lab"), lambda: host.update_network("lab", config={})):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(BadRequest):
        host.create_network("")


# -- operations -------------------------------------------------------------------------------

def test_wait_operation(host: FakeResources) -> None:
    host.op_db["o1"] = {"id": "o1", "status": "Success", "class": "task"}
    done = host.wait_operation("o1", timeout=5)
    assert isinstance(done, api.Operation) and (done.id, done.status) == ("o1", "Success")
    assert host.steps[-1] == s.WaitOperation("o1", 5)
    host.op_db["o2"] = {"id": "o2", "status": "Running"}
    with pytest.raises(Timeout, match="within 1s"):
        host.wait_operation("o2", timeout=1)
    host.op_db["o3"] = {"id": "o3", "status": "Failure", "err": "Instance is running",
                      "metadata": {"cove.error_code": 400}}
    with pytest.raises(BadRequest, match="Instance is running"):
        host.wait_operation("o3")
    with pytest.raises(NotFound):
        host.wait_operation("o4")
    with pytest.raises(BadRequest):
        host.wait_operation("o1", timeout=-1)


def test_cancel_operation_converges(host: FakeResources) -> None:
    host.op_db["o1"] = {"id": "o1", "status": "Success"}
    host.cancel_operation("o1")  # ended
    host.cancel_operation("gone")
    assert "CancelOperation" not in host.kinds()
    host.op_db["o2"] = {"id": "o2", "status": "Running"}
    host.cancel_operation("o2")
    assert host.op_db["o2"]["status"] == "Cancelled"

    def ends() -> None:
        host.op_db["o3"]["status"] = "Success"
    host.op_db["o3"] = {"id": "o3", "status": "Running"}
    host.then[s.CancelOperation] = ends
    host.fail[s.CancelOperation] = InternalError("Only running operations can be cancelled")
    host.cancel_operation("o3")
    host.op_db["o4"] = {"id": "o4", "status": "Running"}
    host.fail[s.CancelOperation] = Conflict("Operation o4 cannot be cancelled")
    with pytest.raises(Conflict):
        host.cancel_operation("o4")


# -- certificates -------------------------------------------------------------------------------

def test_certificates_converge(host: FakeResources) -> None:
    from cove.model import trust

    fp = trust.fingerprint(trust.cert_der(_pem()))
    cert = host.add_certificate(_pem(), name="me")
    assert isinstance(cert, api.Certificate) and (cert.fingerprint, cert.name) == (fp, "me")
    assert host.add_certificate(_pem(), name="other").name == "me"
    assert host.kinds().count("AddCertificate") == 1
    assert host.certificate(fp[:8]).fingerprint == fp
    host.delete_certificate(fp[:8])
    assert host.steps[-1] == s.DeleteCertificate(fp)  # the full fingerprint
    host.delete_certificate(fp)
    assert host.kinds().count("DeleteCertificate") == 1
    host.steps.clear()
    with pytest.raises(BadRequest):
        host.add_certificate("no certificate")
    assert host.steps == []


# -- containers -----------------------------------------------------------------------------------

def test_containers_and_rename(host: FakeResources) -> None:
    host.instance_db["c1"] = {"name": "c1", "status": "Stopped", "status_code": 102}
    got = host.containers()
    assert [type(c) for c in got] == [api.Instance] and got[0].status == "Stopped"
    host.rename_container("c1", "c2")
    host.rename_container("c1", "c2")  # done already
    assert host.kinds().count("Rename") == 1 and "c2" in host.instance_db
    with pytest.raises(NotFound):
        host.rename_container("c9", "c8")
    with pytest.raises(BadRequest):
        host.rename_container("c2", "bad name")


# -- REST steps on scripted answers ---------------------------------------------------------------

def _env(md: Any, *, type_: str = "sync", status: int = 200) -> Response:
    body = {"type": type_, "status": "Success", "status_code": 200, "metadata": md,
            "error_code": 0, "error": "", "operation": ""}
    return Response(status, {}, json.dumps(body).encode())


def _script(answers: list[Response]) -> tuple[list[wire.Request], Callable[[wire.Request],
                                                                            Response]]:
    sent: list[wire.Request] = []

    def send(req: wire.Request) -> Response:
        sent.append(req)
        body = req.body
        if isinstance(body, _rest_steps.Upload):
            while body.read(3):
                pass  # as the HTTP client does: the whole body
        return answers.pop(0)
    return sent, send


def test_rest_get_of_a_missing_object_is_none() -> None:
    for step in (s.GetImage("ab"), s.GetAlias("x"), s.GetNetwork("n"), s.GetOperation("o"),
                 s.GetCertificate("cd")):
        _, send = _script([Response(404, {}, b'{"type": "error", "error_code": 404}')])
        assert drive(_rest_steps.perform(step), send) is None


def test_rest_operations_are_one_list() -> None:
    groups = {"running": [{"id": "1"}], "success": [{"id": "2"}, {"id": "3"}]}
    _, send = _script([_env(groups)])
    assert [o["id"] for o in drive(_rest_steps.perform(s.ListOperations()), send)] == \
        ["1", "2", "3"]


def test_rest_import_sends_the_file_with_its_size_and_reports_progress(
        tmp_path: Path) -> None:
    path, fp = _tarball(tmp_path, b"0123456789")
    op = {"id": "op1", "status": "Success", "metadata": {"fingerprint": fp}}
    sent, send = _script([_env(op, type_="async", status=202)])
    seen: list[Progress] = []
    drive(_rest_steps.perform(s.ImportImage(str(path), fp, progress=seen.append)), send)
    req = sent[0]
    assert (req.method, req.path) == ("POST", "/1.0/images")
    assert req.headers["X-LXD-filename"] == "image.tar.gz"
    assert req.headers["Content-Length"] == "10"
    assert [p.percent for p in seen] == [30, 60, 90, 100]


def test_rest_wait_and_change_requests() -> None:
    sent, send = _script([_env({"id": "o1", "status": "Running"}), _env({})])
    drive(_rest_steps.perform(s.WaitOperation("o1", 2.5)), send)
    drive(_rest_steps.perform(s.CreateAlias("web", FP_A, "d")), send)
    assert sent[0].path == "/1.0/operations/o1/wait?timeout=3"
    assert (sent[1].method, sent[1].path, sent[1].body) == (
        "POST", "/1.0/images/aliases", {"name": "web", "target": FP_A, "description": "d"})
    with pytest.raises(InternalError, match="not a request"):
        drive(_rest_steps.perform(s.Sleep(1)), send)


# -- the CLI driver on a fake transport -------------------------------------------------------------

class FakeCommands(Transport):
    """Where a CLI driver's commands run: ``query PATH`` is answered from
    ``api`` (path -> JSON, or a callable), every argv recorded; files
    uploaded here are recorded too."""

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)
        self.argv: list[list[str]] = []
        self.uploads: list[tuple[str, str]] = []

    def execute(self, command: Any, **kwargs: Any) -> ExecResult:  # type: ignore[override]
        argv = [str(a) for a in command]
        self.argv.append(argv)
        if argv[:2] == ["mktemp", "-d"]:
            return ExecResult(0, b"/stage\n", b"", argv)
        if "query" in argv:
            answer = self.answers.get(argv[-1])
            if answer is None:
                return ExecResult(1, b"", b"Error: not found\n", argv)
            return ExecResult(0, json.dumps(answer).encode(), b"", argv)
        return ExecResult(0, b"", b"", argv)

    def upload_file(self, local_path: Any, path: str, **kwargs: Any) -> None:
        self.uploads.append((str(local_path), path))

    # The primitives the fake never needs.
    def _exec(self, *a: Any, **k: Any) -> int:
        raise AssertionError("not used")

    def _read(self, path: str) -> bytes:
        raise AssertionError("not used")

    def _write(self, *a: Any) -> None:
        raise AssertionError("not used")

    def _names_in(self, folder: str) -> list[str] | None:
        raise AssertionError("not used")

    def _download_file(self, *a: Any) -> None:
        raise AssertionError("not used")

    def _upload_file(self, *a: Any) -> None:
        raise AssertionError("not used")

    def _download_folder(self, *a: Any) -> None:
        raise AssertionError("not used")

    def _upload_folder(self, *a: Any) -> None:
        raise AssertionError("not used")


def test_cli_reads_by_looking_at_listings() -> None:
    images = [{"fingerprint": "ab" + "0" * 62}, {"fingerprint": "ab" + "1" * 62}]
    t = FakeCommands({"/1.0/images?recursion=1": images,
                      "/1.0/networks?recursion=1": [{"name": "lab", "type": "bridge"}]})
    d = CliDriver(t, "lxc")
    assert d.image("ab1").fingerprint == "ab" + "1" * 62
    with pytest.raises(BadRequest, match="More than one"):
        d.image("ab")
    with pytest.raises(NotFound):
        d.image("cd")
    with pytest.raises(NotFound, match="Network nope"):
        d.network_state("nope")  # the state query failed; the listing lacks it
    with pytest.raises(InternalError):
        d.network_state("lab")  # it exists: the failure is the command's


def test_cli_import_stages_the_file_where_the_command_runs(tmp_path: Path) -> None:
    path, fp = _tarball(tmp_path)
    listed: list[dict[str, Any]] = []
    t = FakeCommands({"/1.0/images?recursion=1": listed,
                      "/1.0/images/aliases?recursion=1": []})
    d = CliDriver(t, ["cove", "--root", "/srv/cove"], remote=None)
    original = t.execute

    def execute(command: Any, **kwargs: Any) -> ExecResult:
        result = original(command, **kwargs)
        if list(command)[3:5] == ["image", "import"]:
            listed.append({"fingerprint": fp})  # the host has it now
        return result
    t.execute = execute  # type: ignore[method-assign]
    seen: list[Progress] = []
    assert d.import_image(path, progress=seen.append).fingerprint == fp
    assert t.uploads == [(str(path), "/stage/image.tar.gz")]
    assert ["cove", "--root", "/srv/cove", "image", "import", "/stage/image.tar.gz"] in t.argv
    assert ["rm", "-rf", "--", "/stage"] in t.argv
    assert [p.stage for p in seen] == ["upload", "upload"]


def test_cli_import_on_this_host_names_the_file_and_the_remote(tmp_path: Path) -> None:
    path, _ = _tarball(tmp_path)
    d = CliDriver(LocalTransport(), "lxc", remote="far")
    got: list[tuple[str, ...]] = []

    def run(*args: str, **kwargs: Any) -> ExecResult:
        got.append(args)
        return ExecResult(0, b"", b"")
    d.run = run  # type: ignore[method-assign]
    d._do(s.ImportImage(str(path), "f" * 64, public=True))
    assert got == [("image", "import", str(path), "far:", "--public")]


def test_only_the_cli_driver_lacks_events() -> None:
    assert not issubclass(CliDriver, EventDriver) and not hasattr(CliDriver, "events")
    assert issubclass(RestDriver, EventDriver)
    for cls in (CliDriver, RestDriver):
        assert hasattr(cls, "networks") and hasattr(cls, "wait_operation")


# -- event streams ------------------------------------------------------------------------------------

def test_rest_event_stream(fake: FakeLXD) -> None:
    sent = threading.Event()
    queries: list[dict[str, str]] = []

    def events(req: FakeRequest, ws: ServerWebSocket) -> None:
        queries.append(req.query)
        for action in ("instance-started", "instance-stopped"):
            ws.send(0x1, json.dumps({"type": "lifecycle", "timestamp": "t",
                                     "metadata": {"action": action}}).encode())
        sent.set()
        ws.recv()  # until the client goes
    fake.websockets["/1.0/events"] = events
    d = RestDriver(fake.socket_path)
    with pytest.raises(BadRequest, match="Unknown event type 'weather'"):
        d.events(["weather"])
    with d.events(("lifecycle",)) as stream:
        got = [stream.get(timeout=5), next(stream)]
        assert [e.metadata["action"] for e in got if e is not None] == \
            ["instance-started", "instance-stopped"]
        assert all(isinstance(e, api.Event) for e in got)
        with pytest.raises(Timeout):
            stream.get(timeout=0.1)
    assert queries == [{"type": "lifecycle"}]
    assert stream.get(timeout=0.1) is None and list(stream) == []


def test_local_event_stream_on_the_bus() -> None:
    bus = EventBus()
    stream = LocalEventStream(bus.subscribe({"lifecycle"}))
    bus.publish("operation", {"id": "x"})  # not subscribed
    bus.lifecycle("instance-started", "/1.0/instances/c1")
    event = stream.get(timeout=1)
    assert event is not None and (event.type, event.metadata["action"]) == \
        ("lifecycle", "instance-started")
    with pytest.raises(Timeout):
        stream.get(timeout=0.05)
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(stream.get()))
    reader.start()
    time.sleep(0.05)
    stream.close()  # wakes the blocked reader: the stream has ended
    reader.join(5)
    assert got == [None] and not reader.is_alive()


# -- one surface -------------------------------------------------------------------------------------

def test_every_driver_has_the_same_surface() -> None:
    """The public calls of ``EventDriver`` are on every driver (``events``
    only where a stream can be held), with the same parameters; on the
    asyncio driver as coroutines."""
    import inspect

    from cove.client.aio import AsyncRestDriver
    from cove.client.drivers.local import LocalDriver

    names = [n for n in dir(EventDriver) if not n.startswith("_")]
    assert {"images", "import_image", "aliases", "create_alias", "networks", "network_state",
            "operations", "wait_operation", "certificates", "add_certificate", "events",
            "containers", "rename_container"} <= set(names)
    for cls in (RestDriver, LocalDriver, CliDriver, AsyncRestDriver):
        for name in names:
            if name == "events" and cls is CliDriver:
                continue
            ours, base = getattr(cls, name), getattr(EventDriver, name)
            assert list(inspect.signature(ours).parameters) == \
                list(inspect.signature(base).parameters), (cls.__name__, name)
            # stack() only builds a Stack (its calls are the coroutines)
            if cls is AsyncRestDriver and name not in ("close", "transport_for", "events",
                                                       "stack"):
                assert inspect.iscoroutinefunction(ours), name


def test_every_driver_performs_every_step() -> None:
    """Each driver's table names every step but the two the Driver base does
    itself, so no flow can reach a driver that lacks a call for its step."""
    import typing

    from cove.client.drivers import cli, local

    steps = set(typing.get_args(s.Step)) - {s.Sleep, s.HashFile}
    assert len(steps) == 65  # 34, profiles (6), resources, metrics, storage (7), snapshots (6),
    # copies (2), publish and export (2), backups (6)
    for table in (_rest_steps._PERFORM, cli._PERFORM, local._PERFORM):
        assert set(table) == steps


def test_import_of_a_known_image_refuses_a_taken_alias_before_naming_it(
        host: FakeResources, tmp_path: Path) -> None:
    path, fp = _tarball(tmp_path)
    host.image_db[fp] = {"fingerprint": fp, "properties": {}, "aliases": []}
    host.alias_db["db"] = {"name": "db", "target": FP_A}
    with pytest.raises(Conflict, match="db"):
        host.import_image(path, aliases=["web", "db"])
    assert "web" not in host.alias_db and "CreateAlias" not in host.kinds()
