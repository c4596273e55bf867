"""Session steps as LXD API requests: one request flow per step, run over a
``Client``'s ``send`` (``SessionManager``) or an ``AsyncRestDriver``'s
(``AsyncSessionManager``)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import quote

from cove.client import _wire as wire
from cove.client._http import Response
from cove.client.drivers._rest_steps import wait
from cove.sessions import _steps as st

__all__ = ["RequestFlow", "perform"]

RequestFlow = Generator[wire.Request, Response, Any]


def _in(path: str, project: str | None) -> str:
    """``path`` with ``?project=`` (explicit, also ``default``: a driver's
    own project must not stand in for it)."""
    if project is None:
        return path
    return f"{path}{'&' if '?' in path else '?'}project={quote(project, safe='')}"


def _req(method: str, path: str, project: str | None, body: Any = None) -> wire.Request:
    return wire.Request(method, _in(path, project), body)


def _get(path: str, project: str | None, what: str, missing: tuple[int, ...] = (404,)
         ) -> RequestFlow:
    resp = yield _req("GET", path, project)
    return None if resp.status in missing else wire.as_dict(resp, what)


def _change(req: wire.Request) -> RequestFlow:
    """Send a change and wait for its operation (a synchronous answer is a
    finished one); a failure raises its ``cove.model.errors`` class."""
    yield from wait(wire.operation_of((yield req)))


def _has_projects(step: st.HasProjects) -> RequestFlow:
    info = wire.as_dict((yield wire.Request("GET", "/1.0?project=default")), "server")
    return "projects" in (info.get("api_extensions") or [])


def _list(step: st.ListInstances) -> RequestFlow:
    path = "/1.0/instances?recursion=1&filter=" + quote(step.filter, safe="")
    found = wire.as_list((yield _req("GET", path, step.project)), "instances")
    return [o for o in found if isinstance(o, dict)]


def _project(step: st.GetProject) -> RequestFlow:
    return (yield from _get(f"/1.0/projects/{wire.q(step.name)}", "default", "project"))


def _alias(step: st.GetAlias) -> RequestFlow:
    return (yield from _get(wire.alias(step.name).path, step.project, "alias"))


def _image(step: st.GetImage) -> RequestFlow:
    return (yield from _get(wire.image(step.fingerprint).path, step.project, "image",
                            (400, 404)))


def _state(step: st.ChangeState) -> RequestFlow:
    req = wire.change_state(step.name, step.action, force=step.force)
    yield from _change(_req(req.method, req.path, step.project, req.body))


_PERFORM: dict[type, Callable[[Any], RequestFlow]] = {
    st.HasProjects: _has_projects,
    st.GetProject: _project,
    st.CreateProject: lambda s: _change(_req("POST", "/1.0/projects", "default", s.body)),
    st.GetAlias: _alias,
    st.GetImage: _image,
    st.GetInstance: lambda s: _get(wire.instance(s.name).path, s.project, f"instance {s.name}"),
    st.ListInstances: _list,
    st.CreateInstance: lambda s: _change(_req("POST", "/1.0/instances", s.project,
                                              s.post.to_wire())),
    st.ChangeState: _state,
    st.PatchInstance: lambda s: _change(_req("PATCH", wire.instance(s.name).path, s.project,
                                             s.body)),
    st.DeleteInstance: lambda s: _change(_req("DELETE", wire.instance(s.name).path,
                                              s.project)),
}


def perform(step: st.SessionStep) -> RequestFlow:
    """The requests that do ``step``; the flow returns the step's answer."""
    return _PERFORM[type(step)](step)
