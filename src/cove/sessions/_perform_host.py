"""Session steps on the drivers that have no HTTP answer to give:
``CliDriver`` (``lxc`` or ``cove``, through ``query`` and the everyday
commands) and ``LocalDriver`` (engine calls).

Design notes:

* A step of another project than the driver's runs on a *view* of the
  driver: a shallow copy with that project (the same transport, or the
  same engine and root lock), so the driver's own steps are reused as they
  are and the caller's driver is never changed.
* A command line says a failure only as an exit status and a message, so
  after a failed change the CLI performer looks at the instance (as
  ``CliDriver`` does): gone is ``NotFound``, a stop that found it stopped
  is done; anything else stays the command's ``InternalError``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from cove import api
from cove.client.drivers import _steps as s
from cove.client.drivers.cli import CliDriver
from cove.client.drivers.local import LocalDriver
from cove.model.errors import BadRequest, InternalError, NotFound
from cove.sessions import _steps as st

__all__ = ["perform_cli", "perform_local"]

D = TypeVar("D", CliDriver, LocalDriver)


def _view(driver: D, project: str | None) -> D:
    if project is None or project == (driver.project or "default"):
        return driver
    view = copy.copy(driver)
    view.project = project
    return view


def _image(view: CliDriver | LocalDriver, step: st.GetImage) -> Any:
    try:
        return view._do(s.GetImage(step.fingerprint))
    except BadRequest:  # no fingerprint, or one that names several: none
        return None


# -- CliDriver ----------------------------------------------------------------------------------

def _cli_state(d: CliDriver, step: st.ChangeState) -> None:
    view = _view(d, step.project)
    try:
        view._do(s.Action(step.name, step.action, force=step.force))
    except InternalError:
        now = view.find_instance(step.name)
        if now is None:
            raise NotFound(f"Instance not found: {step.name}") from None
        if step.action == "stop" and now.get("status") == "Stopped":
            return  # stopped meanwhile by another: what was asked
        raise


def _cli_project(d: CliDriver, step: st.GetProject) -> Any:
    found = d.query("/1.0/projects?recursion=1") or []
    return next((p for p in found if isinstance(p, dict) and p.get("name") == step.name), None)


def _cli_list(d: CliDriver, step: st.ListInstances) -> list[Any]:
    found = _view(d, step.project).query("/1.0/instances?recursion=1&filter="
                                         + quote(step.filter, safe=""))
    return [o for o in found or [] if isinstance(o, dict)]


_CLI: dict[type, Callable[[CliDriver, Any], Any]] = {
    st.HasProjects: lambda d, x: "projects" in ((d.query("/1.0") or {}).get("api_extensions")
                                                or []),
    st.GetProject: _cli_project,
    st.CreateProject: lambda d, x: _view(d, "default").query("/1.0/projects", method="POST",
                                                             data=x.body),
    st.GetAlias: lambda d, x: _view(d, x.project)._do(s.GetAlias(x.name)),
    st.GetImage: lambda d, x: _image(_view(d, x.project), x),
    st.GetInstance: lambda d, x: _view(d, x.project).find_instance(x.name),
    st.ListInstances: _cli_list,
    st.CreateInstance: lambda d, x: _view(d, x.project).query(
        "/1.0/instances", method="POST", data=x.post.to_wire(), wait=True),
    st.ChangeState: _cli_state,
    st.PatchInstance: lambda d, x: _view(d, x.project)._do(s.Update(x.name, x.body)),
    st.DeleteInstance: lambda d, x: _view(d, x.project)._do(s.Delete(x.name)),
}


def perform_cli(driver: CliDriver, step: st.SessionStep) -> Any:
    """Do ``step`` with ``driver``'s command; its answer (see ``_steps``)."""
    return _CLI[type(step)](driver, step)


# -- LocalDriver --------------------------------------------------------------------------------

def _local_project(d: LocalDriver, step: st.GetProject) -> Any:
    try:
        d.engine.projects.get(step.name)
    except NotFound:
        return None
    return {"name": step.name}


def _local_new_project(d: LocalDriver, step: st.CreateProject) -> None:
    body = step.body
    d.engine.projects.create(str(body.get("name")), config=dict(body.get("config") or {}),
                             description=str(body.get("description") or ""))


def _local_list(d: LocalDriver, step: st.ListInstances) -> list[Any]:
    project = step.project or d.project
    found = [api.instance(i) for i in d.engine.instances.all(project=project)]
    return list(api.filter_objects(found, step.filter))


def _local_create(d: LocalDriver, step: st.CreateInstance) -> None:
    d._wait(d.engine.instances.create(step.post, project=step.project or d.project))


_LOCAL: dict[type, Callable[[LocalDriver, Any], Any]] = {
    st.HasProjects: lambda d, x: True,
    st.GetProject: _local_project,
    st.CreateProject: _local_new_project,
    st.GetAlias: lambda d, x: _view(d, x.project)._do(s.GetAlias(x.name)),
    st.GetImage: lambda d, x: _image(_view(d, x.project), x),
    st.GetInstance: lambda d, x: _view(d, x.project)._do(s.GetInstance(x.name)),
    st.ListInstances: _local_list,
    st.CreateInstance: _local_create,
    st.ChangeState: lambda d, x: _view(d, x.project)._do(
        s.Action(x.name, x.action, force=x.force)),
    st.PatchInstance: lambda d, x: _view(d, x.project)._do(s.Update(x.name, x.body)),
    st.DeleteInstance: lambda d, x: _view(d, x.project)._do(s.Delete(x.name)),
}


def perform_local(driver: LocalDriver, step: st.SessionStep) -> Any:
    """Do ``step`` with ``driver``'s engine; its answer (see ``_steps``)."""
    return _LOCAL[type(step)](driver, step)
