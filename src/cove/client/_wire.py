"""The LXD API 1.0 requests the client makes, and how their answers are read.

Design note: this module does no I/O. Every request is built here as a
``Request`` (its JSON body from a ``cove.api`` request class's
``to_wire()``, so the client sends what coved's ``parse`` reads) and every
answer is read here from a ``Response``; the sync
``Client`` sends them over its socket, the asyncio driver over aiohttp, and
the drivers' flows (``cove.client.drivers._rest_steps``) chain them. So there
is exactly one place that knows a path, a body or a header of the protocol,
and the sync and async clients cannot drift apart (httpx's 2,000-line sync
and async twins are the warning). Standard library only: the CLI imports it.
"""

from __future__ import annotations

from cove import api
from cove.client._http import Response, parse_envelope
from cove.client._url import quote, urlencode
from cove.model.errors import InternalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "InstanceFile",
    "Request",
    "add_certificate",
    "alias",
    "aliases",
    "as_dict",
    "as_list",
    "cancel_operation",
    "certificate",
    "certificates",
    "change_state",
    "create_alias",
    "create_instance",
    "create_network",
    "create_profile",
    "delete_alias",
    "delete_certificate",
    "delete_image",
    "delete_instance",
    "delete_network",
    "delete_profile",
    "events_path",
    "exec_command",
    "file_delete",
    "file_get",
    "file_put",
    "image",
    "images",
    "import_image",
    "instance",
    "instance_file",
    "instance_state",
    "instances",
    "metadata",
    "network",
    "networks",
    "operation",
    "operation_of",
    "operations",
    "operations_in",
    "profile",
    "profiles",
    "q",
    "rename_alias",
    "rename_instance",
    "rename_profile",
    "server",
    "update_image",
    "update_instance",
    "update_network",
    "update_profile",
    "update_server",
    "wait_operation",
]


def q(name: str) -> str:
    """One path segment, escaped."""
    return quote(name, safe="")


class Request:
    """One HTTP request: ``body`` is JSON-able, bytes, a binary file or None.

    (A plain class: ``dataclasses`` costs the CLI ~6 ms of imports.)
    """

    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.headers = headers or {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.method, self.path, self.body, self.headers) == \
            (other.method, other.path, other.body, other.headers)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


# -- requests ------------------------------------------------------------------------

def server() -> Request:
    return Request("GET", "/1.0")


def update_server(config: dict[str, Any], *, patch: bool = True) -> Request:
    """``PATCH`` (merge) or ``PUT`` (replace) the server's ``config``."""
    return Request("PATCH" if patch else "PUT", "/1.0", {"config": config})


def instances(recursion: int = 1, fields: list[str] | None = None,
              keys: list[str] | None = None) -> Request:
    """``fields``: the state parts a recursion=2 listing needs (LXD's
    ``instances_state_selective_recursion``); sent as ``?fields=``, which a
    server without it ignores (it sends them all). ``keys``: only these
    keys of each object (``state.X`` for the state's), cove's
    ``cove_instances_keys``, which LXD and an older coved ignore (whole
    objects)."""
    extra = "".join(f"&fields={q(f)}" for f in fields or ())
    if keys:
        extra += f"&cove-keys={q(','.join(keys))}"
    return Request("GET", f"/1.0/instances?recursion={int(recursion)}{extra}")


def instance(name: str) -> Request:
    return Request("GET", f"/1.0/instances/{q(name)}")


def instance_state(name: str) -> Request:
    return Request("GET", f"/1.0/instances/{q(name)}/state")


def create_instance(post: api.InstancesPost) -> Request:
    """``POST /1.0/instances``. An empty name lets the server pick one."""
    return Request("POST", "/1.0/instances", post.to_wire())


def update_instance(name: str, put: api.InstancePut, *, patch: bool = False) -> Request:
    """``PUT`` (replace with) or ``PATCH`` (merge) the fields ``put`` sets."""
    return Request("PATCH" if patch else "PUT", f"/1.0/instances/{q(name)}", put.to_wire())


def rename_instance(name: str, new_name: str) -> Request:
    return Request("POST", f"/1.0/instances/{q(name)}",
                   api.InstancePost(name=new_name).to_wire())


def delete_instance(name: str, force: bool = False) -> Request:
    """``force``: cove's ``?force=1`` (a running instance, or one others depend on)."""
    return Request("DELETE", f"/1.0/instances/{q(name)}" + ("?force=1" if force else ""))


def change_state(name: str, action: str, *, timeout: int = -1, force: bool = False,
                 stateful: bool = False, command: list[str] | None = None) -> Request:
    """``command``: cove's start once with another command."""
    body = api.InstanceStatePut(action=action, timeout=timeout, force=force,
                                stateful=stateful, command=command).to_wire()
    return Request("PUT", f"/1.0/instances/{q(name)}/state", body)


def exec_command(name: str, command: list[str], *, environment: dict[str, str] | None = None,
                 user: int | str | None = None, group: int | str | None = None,
                 cwd: str | None = None, interactive: bool = False,
                 width: int | None = None, height: int | None = None,
                 websockets: bool = True, stopped: bool = False) -> Request:
    """``POST .../exec``: with ``websockets`` the answer carries the fd
    secrets; without, the output is recorded and only the exit code matters.
    A size of None (or 0) is left to the server (80x24)."""
    post = api.InstanceExecPost(command=command, environment=environment,
                                wait_for_websocket=websockets, interactive=interactive,
                                record_output=not websockets, width=width or 0,
                                height=height or 0, user=user, group=group, cwd=cwd,
                                stopped=stopped)
    return Request("POST", f"/1.0/instances/{q(name)}/exec", post.to_wire())


def _file_path(name: str, path: str) -> str:
    return f"/1.0/instances/{q(name)}/files?{urlencode({'path': path})}"


def file_get(name: str, path: str) -> Request:
    return Request("GET", _file_path(name, path))


def file_put(name: str, path: str, data: Any = None, *, uid: int | None = None,
             gid: int | None = None, mode: int | None = None, type: str = "file",
             write: str = "overwrite") -> Request:
    """``POST .../files?path=P`` with the X-LXD-* headers. For a symlink
    ``data`` is its target; for a directory it is ignored."""
    headers = {"X-LXD-type": type, "X-LXD-write": write,
               "Content-Type": "application/octet-stream"}
    if uid is not None:
        headers["X-LXD-uid"] = str(uid)
    if gid is not None:
        headers["X-LXD-gid"] = str(gid)
    if mode is not None:
        headers["X-LXD-mode"] = f"{mode:04o}"
    body: Any = b"" if type == "directory" or data is None else data
    if isinstance(body, str):
        body = body.encode()
    return Request("POST", _file_path(name, path), body, headers)


def file_delete(name: str, path: str) -> Request:
    return Request("DELETE", _file_path(name, path))


def images() -> Request:
    return Request("GET", "/1.0/images?recursion=1")


def image(fingerprint: str) -> Request:
    return Request("GET", f"/1.0/images/{q(fingerprint)}")


def import_image(body: Any, *, filename: str, public: bool = False,
                 size: int | None = None) -> Request:
    """``POST /1.0/images`` with the tarball as the body (bytes or a binary
    file), named by ``X-LXD-filename``; ``size`` sets ``Content-Length``."""
    headers = {"Content-Type": "application/octet-stream", "X-LXD-filename": filename,
               "X-LXD-public": "1" if public else "0"}
    if size is not None:
        headers["Content-Length"] = str(size)
    return Request("POST", "/1.0/images", body, headers)


def update_image(fingerprint: str, *, properties: dict[str, str] | None = None,
                 public: bool | None = None) -> Request:
    """``PATCH /1.0/images/FP``: the given properties are merged, ``public`` set."""
    put = api.ImagePut(properties=properties, public=public)
    return Request("PATCH", f"/1.0/images/{q(fingerprint)}", put.to_wire())


def delete_image(fingerprint: str) -> Request:
    return Request("DELETE", f"/1.0/images/{q(fingerprint)}")


def aliases() -> Request:
    return Request("GET", "/1.0/images/aliases?recursion=1")


def alias(name: str) -> Request:
    return Request("GET", f"/1.0/images/aliases/{q(name)}")


def create_alias(name: str, target: str, description: str = "") -> Request:
    """``POST /1.0/images/aliases``: ``name`` for the image ``target`` (a fingerprint)."""
    return Request("POST", "/1.0/images/aliases",
                   api.ImageAliasesPost(name=name, target=target,
                                        description=description).to_wire())


def rename_alias(name: str, new_name: str) -> Request:
    return Request("POST", f"/1.0/images/aliases/{q(name)}",
                   api.ImageAliasesEntryPost(name=new_name).to_wire())


def delete_alias(name: str) -> Request:
    return Request("DELETE", f"/1.0/images/aliases/{q(name)}")


def operations() -> Request:
    return Request("GET", "/1.0/operations?recursion=1")


def operation(op_id: str) -> Request:
    return Request("GET", f"/1.0/operations/{q(op_id)}")


def cancel_operation(op_id: str) -> Request:
    return Request("DELETE", f"/1.0/operations/{q(op_id)}")


def wait_operation(op_id: str, timeout: float | None = None) -> Request:
    """``GET /1.0/operations/ID/wait?timeout=N`` (N -1: no limit; whole seconds,
    rounded up, as LXD takes them)."""
    secs = -1 if timeout is None else max(0, int(timeout + 0.999))
    return Request("GET", f"/1.0/operations/{q(op_id)}/wait?timeout={secs}")


def certificates(recursion: int = 1) -> Request:
    return Request("GET", f"/1.0/certificates?recursion={int(recursion)}")


def certificate(fingerprint: str) -> Request:
    return Request("GET", f"/1.0/certificates/{q(fingerprint)}")


def add_certificate(certificate_pem: str | None, *, name: str = "", type: str = "client",
                    password: str | None = None) -> Request:
    """``POST /1.0/certificates``. ``certificate`` goes as LXD wants it: the
    base64 DER (a PEM body without its armour); None trusts the caller's own
    TLS certificate (with ``password``)."""
    post = api.CertificatesPost(type=type, name=name, password=password or "")
    if certificate_pem:
        lines = [ln.strip() for ln in certificate_pem.strip().splitlines()]
        post.certificate = "".join(ln for ln in lines if ln and not ln.startswith("-----"))
    return Request("POST", "/1.0/certificates", post.to_wire())


def delete_certificate(fingerprint: str) -> Request:
    return Request("DELETE", f"/1.0/certificates/{q(fingerprint)}")


def networks(recursion: int = 1) -> Request:
    return Request("GET", f"/1.0/networks?recursion={int(recursion)}")


def network(name: str, sub: str = "") -> Request:
    """``GET /1.0/networks/NAME`` (``sub``: ``state`` or ``leases``)."""
    return Request("GET", f"/1.0/networks/{q(name)}" + (f"/{sub}" if sub else ""))


def create_network(name: str, config: dict[str, str] | None = None, *,
                   description: str = "", type: str = "bridge") -> Request:
    post = api.NetworksPost(name=name, type=type, description=description, config=config)
    return Request("POST", "/1.0/networks", post.to_wire())


def update_network(name: str, *, config: dict[str, str] | None = None,
                   description: str | None = None, patch: bool = True) -> Request:
    """``PATCH`` (merge) or ``PUT`` (replace) a network's config and description."""
    put = api.NetworkPut(config=config, description=description)
    return Request("PATCH" if patch else "PUT", f"/1.0/networks/{q(name)}", put.to_wire())


def delete_network(name: str) -> Request:
    return Request("DELETE", f"/1.0/networks/{q(name)}")


def profiles(recursion: int = 1) -> Request:
    return Request("GET", f"/1.0/profiles?recursion={int(recursion)}")


def profile(name: str) -> Request:
    return Request("GET", f"/1.0/profiles/{q(name)}")


def create_profile(name: str, config: dict[str, str] | None = None,
                   devices: dict[str, dict[str, str]] | None = None, *,
                   description: str = "") -> Request:
    post = api.ProfilesPost(name=name, description=description, config=config, devices=devices)
    return Request("POST", "/1.0/profiles", post.to_wire())


def update_profile(name: str, *, config: dict[str, str] | None = None,
                   devices: dict[str, dict[str, str]] | None = None,
                   description: str | None = None, patch: bool = True) -> Request:
    """``PATCH`` (merge) or ``PUT`` (replace) a profile's fields (None: not sent)."""
    put = api.ProfilePut(config=config, devices=devices, description=description)
    return Request("PATCH" if patch else "PUT", f"/1.0/profiles/{q(name)}", put.to_wire())


def rename_profile(name: str, new_name: str) -> Request:
    return Request("POST", f"/1.0/profiles/{q(name)}", api.ProfilePost(name=new_name).to_wire())


def delete_profile(name: str) -> Request:
    return Request("DELETE", f"/1.0/profiles/{q(name)}")


def events_path(types: tuple[str, ...] | list[str] = ()) -> str:
    """The websocket path of ``/1.0/events`` for ``types`` (none: all)."""
    return "/1.0/events" + (f"?{urlencode({'type': ','.join(types)})}" if types else "")


def operations_in(groups: Any) -> list[dict[str, Any]]:
    """The operations of ``GET /1.0/operations?recursion=1``, whose answer is
    grouped by status (``{"running": [...], "success": [...]}``), as one list."""
    if not isinstance(groups, dict):
        return []
    out: list[dict[str, Any]] = []
    for ops in groups.values():
        out += [op for op in ops or [] if isinstance(op, dict)]
    return out


# -- answers -------------------------------------------------------------------------

def metadata(resp: Response) -> Any:
    """The ``metadata`` of a successful envelope (raises the error of a failed one)."""
    return parse_envelope(resp).get("metadata")


def as_dict(resp: Response, what: str) -> dict[str, Any]:
    md = metadata(resp)
    if not isinstance(md, dict):
        raise InternalError(f"{what}: the server sent no object")
    return md


def as_list(resp: Response, what: str) -> list[Any]:
    md = metadata(resp)
    if md is None:
        return []
    if not isinstance(md, list):
        raise InternalError(f"{what}: the server sent no list")
    return md


def operation_of(resp: Response) -> dict[str, Any]:
    """The operation a long action answered with, as a wire dict.

    A server that answered synchronously gets a finished one made from its
    answer, so callers always have an operation to wait on.
    """
    env = parse_envelope(resp)
    if env.get("type") == "async" and isinstance(env.get("metadata"), dict):
        return dict(env["metadata"])
    op_id = str(env.get("operation") or "").rsplit("/", 1)[-1]
    md = env.get("metadata")
    return {"id": op_id, "class": "task", "status": "Success", "status_code": 200,
            "metadata": md if isinstance(md, dict) else {"result": md}}


class InstanceFile:
    """A path in an instance as ``GET .../files`` answers.

    ``type`` is ``file``, ``directory`` or ``symlink``; ``content`` the file's
    bytes (for a symlink, its target); ``entries`` the names in a directory.
    """

    __slots__ = ("content", "entries", "gid", "mode", "path", "type", "uid")

    def __init__(self, path: str, type: str, uid: int, gid: int, mode: int,
                 content: bytes = b"", entries: list[str] | None = None) -> None:
        self.path = path
        self.type = type
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.content = content
        self.entries = entries

    @property
    def target(self) -> str:
        return self.content.decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"<InstanceFile {self.path} {self.type} {self.uid}:{self.gid} {self.mode:04o}>"


def instance_file(resp: Response, path: str) -> InstanceFile:
    """Read ``GET .../files``: a file's bytes, a folder's names, a link's target."""
    if resp.status >= 400:
        parse_envelope(resp)
    ftype = resp.header("x-lxd-type") or "file"
    f = InstanceFile(path, ftype, int(resp.header("x-lxd-uid") or 0),
                     int(resp.header("x-lxd-gid") or 0),
                     int(resp.header("x-lxd-mode") or "0", 8))
    if ftype == "directory":
        f.entries = [str(e) for e in (parse_envelope(resp).get("metadata") or [])]
    else:
        f.content = resp.body
    return f
