"""Projects: create, read, update, rename, delete, their state and limits.

Design note: a project is a row (``store.projects``) and a namespace: an
instance of it is keyed ``PROJECT_NAME`` (``cove.model.projects``), so
everything below the API keeps working on keys. This service answers
"does P exist", "whose images/profiles/networks does P use" (LXD's
``features.*``: off means the default project's) and "may P take one more
instance with this config" (LXD's ``limits.*``); the instances service asks
it before it makes or changes anything.
"""

from __future__ import annotations

import threading
from typing import Any

from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.ports import ProjectProfiles
from cove.model import config as cfg
from cove.model.errors import BadRequest, Forbidden
from cove.model.projects import (
    DEFAULT,
    FEATURES,
    NEW_PROJECT_FEATURES,
    Project,
    instance_url,
    split_key,
    validate_project_config,
    validate_project_name,
)
from cove.model.records import Instance
from cove.store import Store

__all__ = ["Projects"]

# what GET /1.0/projects/NAME/state reports, in LXD's order
_RESOURCES = ("containers", "cpu", "disk", "instances", "memory", "networks", "processes",
              "virtual-machines")


def _url(name: str) -> str:
    return f"/1.0/projects/{name}"


# the project limits check_instance counts instances against
_INSTANCE_LIMITS = ("instances", "containers", "memory", "cpu", "processes")


def _limit(project: Project, key: str) -> int | None:
    raw = project.config.get(f"limits.{key}", "")
    if not raw:
        return None
    return cfg.parse_memory(raw) if key == "memory" else int(raw)


def _instance_value(inst_config: dict[str, str], key: str) -> int | None:
    """What an instance's config counts against the project's ``limits.KEY``."""
    raw = inst_config.get(f"limits.{key}", "")
    if not raw:
        return None
    if key == "memory":
        if raw.strip().endswith("%"):
            raise BadRequest(f"Instance limits.memory {raw!r} must be a size, not a percentage, "
                             "in a project that limits memory")
        return cfg.parse_memory(raw)
    if key == "cpu":
        if not raw.isdigit():
            raise BadRequest(f"Instance limits.cpu {raw!r} must be a number of CPUs "
                             "in a project that limits CPUs")
        return int(raw)
    return cfg.parse_processes(raw)


class Projects:
    """The projects of one root. Thread-safe (one lock for changes, so two
    creates cannot both pass a limit with one slot left)."""

    def __init__(self, store: Store, operations: Operations, events: EventBus) -> None:
        self._store = store
        self._rows = store.projects
        self._operations = operations
        self._events = events
        self.lock = threading.RLock()
        self._profiles: ProjectProfiles | None = None

    def bind(self, profiles: ProjectProfiles) -> None:
        """Hand over the profiles service: a project with ``features.profiles``
        has a default profile of its own, and its profiles go with it. Every
        project that needs one gets it now (a root from before profiles)."""
        self._profiles = profiles
        for project in self._rows.all():
            if project.name != DEFAULT and project.feature("profiles"):
                profiles.ensure_default(project.name)

    # -- reads ---------------------------------------------------------------------
    def all(self) -> list[Project]:
        """Every project, ``default`` first. Never raises."""
        return self._rows.all()

    def get(self, name: str) -> Project:
        """Raises: NotFound ("Project not found", LXD's words)."""
        return self._rows.get(name)

    def check(self, name: str) -> str:
        """``name`` if the project exists. Raises: NotFound."""
        self._rows.get(name)
        return name

    def images_project(self, name: str) -> str:
        """Whose images and aliases project ``name`` uses (``features.images``)."""
        return name if self._rows.get(name).feature("images") else DEFAULT

    def profiles_project(self, name: str) -> str:
        """Whose profiles project ``name`` uses (``features.profiles``)."""
        return name if self._rows.get(name).feature("profiles") else DEFAULT

    def volumes_project(self, name: str) -> str:
        """Whose custom volumes project ``name`` uses (``features.storage.volumes``)."""
        return name if self._rows.get(name).feature("storage.volumes") else DEFAULT

    def networks_project(self, name: str) -> str:
        """Whose networks project ``name`` uses (``features.networks``; LXD's
        default for a new project is off: the default project's)."""
        return name if self._rows.get(name).feature("networks") else DEFAULT

    def used_by(self, name: str) -> list[str]:
        """LXD's ``used_by``: the project's instances and its own profiles (and,
        for ``default``, its networks and images), ``?project=`` as LXD writes
        it. Raises: NotFound."""
        project = self._rows.get(name)
        query = "" if name == DEFAULT else f"?project={name}"
        out = [instance_url(k) for k in self._rows.instance_keys(name)]
        out += [f"/1.0/images/{fp}{query}" for fp in self._images_of(name)]
        if project.feature("profiles"):
            out += [f"/1.0/profiles/{p}{query}" for p in self._own_profiles(name) or ["default"]]
        if name == DEFAULT:
            out += [f"/1.0/networks/{n.name}" for n in self._store.list_networks()]
        return out

    def _images_of(self, name: str) -> list[str]:
        """The fingerprints of the images project ``name`` holds itself."""
        return [i.fingerprint for i in self._store.list_images()
                if name in self._rows.image_projects(i.fingerprint)]

    def _own_profiles(self, name: str) -> list[str]:
        return self._profiles.own_names(name) if self._profiles is not None else []

    def _empty(self, name: str) -> bool:
        # the project's own default profile does not count (LXD's rule)
        return (not self._rows.instance_keys(name) and not self._images_of(name)
                and set(self._own_profiles(name)) <= {"default"})

    def state(self, name: str) -> dict[str, Any]:
        """LXD's ``ProjectState``: each resource's ``limit`` (-1: none) and
        ``usage``. Raises: NotFound."""
        project = self._rows.get(name)
        insts = self._store.list_instances(name)
        usage = {
            "containers": len(insts), "instances": len(insts), "virtual-machines": 0,
            "cpu": sum(self._quiet_value(i, "cpu") for i in insts),
            "memory": sum(self._quiet_value(i, "memory") for i in insts),
            "processes": sum(self._quiet_value(i, "processes") for i in insts),
            "disk": 0,
            "networks": len(self._store.list_networks()) if project.feature("networks") else 0,
        }
        resources = {}
        for key in _RESOURCES:
            raw = project.config.get(f"limits.{key}", "")
            try:
                limit = _limit(project, key) if raw else -1
            except (BadRequest, ValueError):
                limit = -1
            resources[key] = {"limit": limit if limit is not None else -1, "usage": usage[key]}
        return {"resources": resources}

    @staticmethod
    def _quiet_value(inst: Instance, key: str) -> int:
        try:
            return _instance_value(inst.config, key) or 0
        except BadRequest:
            return 0

    # -- limits -----------------------------------------------------------------------
    def check_instance(self, project: str, config: dict[str, str], *,
                       replacing: str | None = None) -> None:
        """May ``project`` hold an instance with ``config`` (a new one, or the
        one keyed ``replacing`` changed to it)? LXD's ``limits.instances``,
        ``limits.containers``, ``limits.memory``, ``limits.cpu`` and
        ``limits.processes``; call under ``lock`` with the change that follows.

        Raises:
            NotFound: no such project.
            BadRequest: a limit would be passed, or the project sets an
                aggregate limit the instance does not set (LXD's words).
        """
        proj = self._rows.get(project)
        if not any(_limit(proj, k) is not None for k in _INSTANCE_LIMITS):
            # Nothing to count: reading every row of the project (under the
            # lock every create takes) would make each launch cost O(N).
            return
        others = [i for i in self._store.list_instances(project) if i.name != replacing]
        _, plain = split_key(replacing or "")
        if replacing is None:
            for key in ("instances", "containers"):
                limit = _limit(proj, key)
                if limit is not None and len(others) + 1 > limit:
                    raise BadRequest(
                        f"Reached maximum number of instances in project {project!r}"
                        if key == "instances" else
                        f"Reached maximum number of instances of type 'container' in "
                        f"project {project!r}")
        for key in ("memory", "cpu", "processes"):
            limit = _limit(proj, key)
            if limit is None:
                continue
            total = 0
            for inst_name, inst_config in [(split_key(i.name)[1], i.config) for i in others] \
                    + [(plain or "(new)", config)]:
                value = _instance_value(inst_config, key)
                if value is None:
                    raise BadRequest(f"Instance {inst_name!r} in project {project!r} has no "
                                     f"'limits.{key}' config, either directly or via a profile")
                total += value
            if total > limit:
                raise BadRequest(f"Reached maximum aggregate value "
                                 f"{proj.config[f'limits.{key}']!r} for 'limits.{key}' in "
                                 f"project {project!r}")

    def _check_limits_fit(self, name: str, config: dict[str, str]) -> None:
        """A new limit must hold what the project has now (LXD refuses too)."""
        insts = self._store.list_instances(name)
        trial = Project(name=name, config=config)
        for key in ("instances", "containers"):
            limit = _limit(trial, key)
            if limit is not None and len(insts) > limit:
                raise BadRequest(f"'limits.{key}' is too low: current instance count "
                                 f"({len(insts)}) would exceed the new limit ({limit})")
        for key in ("memory", "cpu", "processes"):
            limit = _limit(trial, key)
            if limit is None:
                continue
            total = 0
            for inst in insts:
                value = _instance_value(inst.config, key)
                if value is None:
                    raise BadRequest(f"Cannot change 'limits.{key}' in project {name!r}: "
                                     f"instance {split_key(inst.name)[1]!r} has no "
                                     f"'limits.{key}' config")
                total += value
            if total > limit:
                raise BadRequest(f"Cannot change 'limits.{key}' in project {name!r}: "
                                 f"its instances already use {total}")

    # -- changes -------------------------------------------------------------------
    def create(self, name: str, *, config: dict[str, Any] | None = None,
               description: str = "") -> Project:
        """Make a project (sync, as LXD). Features not given get LXD's
        defaults for a new project. Not idempotent.

        Raises:
            BadRequest: a bad name, config key or value.
            Conflict: the name is taken.
        """
        validate_project_name(name)
        full = {**NEW_PROJECT_FEATURES, **validate_project_config(config or {})}
        _check_supported(full)
        project = self._rows.add(Project(name=name, description=description, config=full))
        if self._profiles is not None and project.feature("profiles"):
            self._profiles.ensure_default(name)
        self._events.lifecycle("project-created", _url(name), project=name)
        return project

    def update(self, name: str, *, config: dict[str, Any] | None = None,
               description: str | None = None, patch: bool = False) -> None:
        """Replace (PUT) or merge (PATCH) a project's config and description.
        Idempotent.

        Raises:
            NotFound: no such project.
            BadRequest: a bad key or value; a feature changed on ``default``
                or on a project that holds instances; a limit below what the
                project already uses.
        """
        with self.lock:
            project = self._rows.get(name)
            if config is not None:
                new = {**project.config, **config} if patch else dict(config)
                new = {k: v for k, v in validate_project_config(new).items()
                       if not (patch and v == "" and k in config)}
                if name != DEFAULT:
                    _check_supported(new)
                changed = [k for k in FEATURES
                           if cfg.truthy(new.get(k)) != cfg.truthy(project.config.get(k))]
                if changed and name == DEFAULT:
                    raise BadRequest("You can't change the features of the default project")
                if changed and not self._empty(name):
                    how = "disabled" if cfg.truthy(project.config.get(changed[0])) else "enabled"
                    raise BadRequest(f"Project feature {changed[0]!r} cannot be {how} on "
                                     "non-empty projects")
                self._check_limits_fit(name, new)
                if "features.profiles" in changed and self._profiles is not None:
                    if cfg.truthy(new.get("features.profiles")):
                        self._profiles.ensure_default(name)
                    else:  # back to the default project's profiles
                        self._profiles.drop_project(name)
                project.config = new
            if description is not None:
                project.description = description
            self._rows.update(project)
        self._events.lifecycle("project-updated", _url(name), project=name)

    def rename(self, name: str, new_name: str) -> Operation:
        """Rename an empty project, as an operation (LXD's). Not idempotent.

        Raises:
            Forbidden: ``default``.
            BadRequest: a bad new name, or the project holds instances.
            NotFound: no such project.  Conflict: the new name is taken.
        """
        if name == DEFAULT:
            raise Forbidden("The 'default' project cannot be renamed")
        validate_project_name(new_name)
        self._rows.get(name)
        if not self._empty(name):
            raise BadRequest("Only empty projects can be renamed")

        def work(op: Operation) -> None:
            with self.lock:
                if not self._empty(name):
                    raise BadRequest("Only empty projects can be renamed")
                self._rows.rename(name, new_name)
                if self._profiles is not None:
                    self._profiles.rename_project(name, new_name)
            self._events.lifecycle("project-renamed", _url(new_name), project=new_name,
                                   old_name=name)

        return self._operations.run(work, description="Renaming project",
                                    resources={"projects": [_url(name)]})

    def delete(self, name: str) -> None:
        """Remove an empty project (sync, as LXD 5.0). Not idempotent.

        Raises:
            Forbidden: ``default``.
            BadRequest: the project holds instances.
            NotFound: no such project.
        """
        if name == DEFAULT:
            raise Forbidden("The 'default' project cannot be deleted")
        with self.lock:
            self._rows.get(name)
            if not self._empty(name):
                raise BadRequest("Only empty projects can be removed")
            self._rows.delete(name)
            if self._profiles is not None:
                self._profiles.drop_project(name)
        self._events.lifecycle("project-deleted", _url(name), project=name)


def _check_supported(config: dict[str, str]) -> None:
    """What cove cannot do yet is refused, not silently ignored.

    Raises:
        BadRequest: ``features.networks`` on (a project's own networks).
    """
    if cfg.truthy(config.get("features.networks")):
        raise BadRequest("Invalid project configuration key 'features.networks' value: "
                         "cove's projects use the default project's networks (false)")
