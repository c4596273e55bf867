"""Profiles: LXD's named sets of config and devices that instances apply in
order, and the expansion every other service reads an instance through.

Design note: every profile is a row of ``store.profiles``, the ``default``
one included. The ``default`` profile of the ``default`` project is made
when a root first meets this code, with what it implied before profiles were
stored: ``eth0`` on the root's default network (``DefaultNetwork``) when
there is one. From then on it is an ordinary profile a user may edit; the
networks service calls ``set_default_network`` only when it picks the
default network (a fresh root's first start), which points ``eth0`` of the
default profile at it. So a root that nobody edits behaves as it did.

Profiles are read on every instance read (expansion), so they are cached in
memory, keyed by (project, name), and the cache is written through under
the service's lock. A change to a profile is checked against every instance
that uses it before anything is saved (a change that would make one invalid
is refused), then saved, then applied live to the running ones where the key
is live (limits, proxy devices), through ``ProfileUsers`` (the instances
service).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from cove.engine.events import EventBus
from cove.engine.ports import ProfileUsers
from cove.model import config as cfg
from cove.model.errors import BadRequest, CoveError, Forbidden, InternalError, NotFound
from cove.model.profiles import (
    DEFAULT_PROFILE,
    Profile,
    expand_config,
    expand_devices,
    validate_profile_config,
    validate_profile_name,
)
from cove.model.projects import instance_url
from cove.model.records import Instance
from cove.store import Store

__all__ = ["DefaultNetwork", "Profiles", "project_of"]

_META_DEFAULT = "network.default"


class DefaultNetwork:
    """The root's default network, kept in the store's meta table and cached
    (written only through ``Profiles.set_default_network``, which the
    networks service calls, so the default profile's eth0 follows it)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cached: str | None | bool = False  # False: not read yet

    def get(self) -> str | None:
        """The network's name, None when there is none."""
        if self._cached is False:
            self._cached = self._store.get_meta(_META_DEFAULT) or None
        return self._cached if isinstance(self._cached, str) else None

    def recorded(self) -> bool:
        """Whether a default was ever chosen (even "none")."""
        return self._store.get_meta(_META_DEFAULT) is not None

    def set(self, name: str | None) -> None:
        """Record ``name`` (None: no default network). Idempotent."""
        self._store.set_meta(_META_DEFAULT, name or "")
        self._cached = name


def project_of(inst: Instance) -> str:
    """The project ``inst`` lives in ("default" until records carry one)."""
    return str(getattr(inst, "project", "default") or "default")


def _default_nic(network: str | None) -> dict[str, dict[str, str]]:
    return {"eth0": {"type": "nic", "network": network, "name": "eth0"}} if network else {}


class Profiles:
    """The profiles of one root (see module note). Thread-safe."""

    def __init__(self, store: Store, default_network: DefaultNetwork,
                 events: EventBus | None = None) -> None:
        self._rows = store.profiles
        self._default_network = default_network
        self._events = events
        self._lock = threading.RLock()
        self._users: ProfileUsers | None = None
        self._owner_of: Callable[[str], str] | None = None
        self._cache = {(p.project, p.name): p for p in self._rows.list()}
        # Moved on after every change of ``_cache`` (never before it): a cache
        # of expansions keyed by it (``_listing``) is never stale once a
        # change returned.
        self._generation = 0
        self.ensure_default("default")

    def bind(self, users: ProfileUsers) -> None:
        """Hand over the instances service (built after this one)."""
        self._users = users

    def bind_projects(self, owner_of: Callable[[str], str]) -> None:
        """Hand over the projects' answer to "whose profiles does project P
        use" (``features.profiles``: its own, or the default project's)."""
        self._owner_of = owner_of

    def owner(self, project: str) -> str:
        """The project whose profiles ``project`` uses. Every call that takes a
        project resolves it through this first, as LXD does: with
        ``features.profiles=false`` a project reads and writes the default
        project's profiles. Raises: NotFound (no such project)."""
        if project == "default" or self._owner_of is None:
            return project
        return self._owner_of(project)

    def _users_or_fail(self) -> ProfileUsers:
        if self._users is None:  # pragma: no cover - the engine binds at construction
            raise InternalError("profiles are not bound to the instances service")
        return self._users

    def ensure_default(self, project: str = "default") -> None:
        """Make ``project``'s ``default`` profile if it has none (the default
        project's gets eth0 on the default network; see module note). Idempotent."""
        with self._lock:
            if (project, DEFAULT_PROFILE) in self._cache:
                return
            # A new project's default profile has eth0 on the default network
            # too (LXD's is empty, leaving its instances without a NIC).
            devices = _default_nic(self._default_network.get())
            p = Profile(name=DEFAULT_PROFILE, project=project, devices=devices,
                        description=f"Default cove profile for project {project}"
                        if project != "default" else "Default cove profile")
            self._rows.add(p)
            self._cache[(project, p.name)] = p
            self._generation += 1

    def set_default_network(self, name: str | None) -> None:
        """Record the default network and point the default profile's eth0 at
        it (None: remove that eth0), unless the user gave that eth0 another
        network: theirs is kept. Idempotent."""
        with self._lock:
            before = self._default_network.get()
            self._default_network.set(name)
            self.ensure_default("default")
            p = self._copy(self._cache[("default", DEFAULT_PROFILE)])
            eth0 = p.devices.get("eth0")
            if eth0 is not None and (before is None or eth0.get("network") != before):
                return  # the user's own eth0
            p.devices.pop("eth0", None)
            p.devices.update(_default_nic(name))
            self._rows.update(p)
            self._cache[("default", p.name)] = p
            self._generation += 1

    # -- reads -----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """A number that moves on after every change of a profile (not of
        whose profiles a project uses: that is ``owner``'s answer)."""
        return self._generation

    @staticmethod
    def _copy(p: Profile) -> Profile:
        return Profile(name=p.name, description=p.description, config=dict(p.config),
                       devices={k: dict(v) for k, v in p.devices.items()}, project=p.project)

    def names(self, project: str = "default") -> list[str]:
        """The names of the profiles of ``project``, sorted."""
        project = self.owner(project)
        with self._lock:
            return sorted(n for (pr, n) in self._cache if pr == project)

    def all(self, project: str = "default") -> list[Profile]:
        """The profiles of ``project`` by name (copies). Never raises."""
        project = self.owner(project)
        with self._lock:
            return [self._copy(self._cache[(project, n)]) for n in self.names(project)]

    def get(self, name: str, project: str = "default") -> Profile:
        """One profile (a copy). Raises: NotFound."""
        project = self.owner(project)
        with self._lock:
            p = self._cache.get((project, name))
            if p is None:
                raise NotFound(f"Profile not found: {name}")
            return self._copy(p)

    def used_by(self, name: str, project: str = "default") -> list[str]:
        """LXD's ``used_by``: the URLs of the instances that list ``name``."""
        project = self.owner(project)
        return [instance_url(i.name) for i in self._users_or_fail().using_profile(
            name, project)]

    def check(self, profiles: list[str], project: str = "default") -> None:
        """Raises NotFound for a profile that does not exist (LXD's message),
        BadRequest for one listed twice."""
        project = self.owner(project)
        with self._lock:
            for p in profiles:
                if (project, p) not in self._cache:
                    raise NotFound(f'Requested profile "{p}" doesn\'t exist')
        if len(set(profiles)) != len(profiles):
            raise BadRequest("Duplicate profile found in request")

    def _listed(self, profiles: Iterable[str], project: str,
                override: Profile | None = None) -> list[Profile]:
        with self._lock:
            out = []
            for n in profiles:
                if override is not None and override.name == n:
                    out.append(override)
                elif (project, n) in self._cache:
                    out.append(self._cache[(project, n)])
            return out

    def expand(self, profiles: list[str], devices: dict[str, dict[str, str]],
               project: str = "default") -> dict[str, dict[str, str]]:
        """Profile devices in list order, overlaid by ``devices``; ``type: none`` hides."""
        project = self.owner(project)
        return expand_devices(self._listed(profiles, project), devices)

    def expand_config(self, profiles: list[str], config: dict[str, str],
                      project: str = "default") -> dict[str, str]:
        """Profile config in list order, overlaid by ``config``."""
        project = self.owner(project)
        return expand_config(self._listed(profiles, project), config)

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """The devices ``inst`` runs with."""
        return self.expand(inst.profiles, inst.devices, project_of(inst))

    def expanded_config(self, inst: Instance) -> dict[str, str]:
        """The config ``inst`` runs with."""
        return self.expand_config(inst.profiles, inst.config, project_of(inst))

    # -- changes ---------------------------------------------------------------------------
    def create(self, name: str, *, config: dict[str, Any] | None = None,
               devices: dict[str, Any] | None = None, description: str = "",
               project: str = "default") -> Profile:
        """Make a profile (sync, as LXD). Not idempotent.

        Raises:
            BadRequest: a bad name (LXD's messages), config key or device.
            Conflict: the name is taken in the project.
            NotFound: no such project.
        """
        project = self.owner(project)
        validate_profile_name(name)
        conf = cfg.validate_config(config or {})
        validate_profile_config(conf)
        p = Profile(name=name, description=str(description or ""), config=conf,
                    devices=self._users_or_fail().validate_devices(devices), project=project)
        with self._lock:
            self._rows.add(p)  # Conflict with LXD's message when taken
            self._cache[(project, name)] = p
            self._generation += 1
        self._lifecycle("profile-created", name, project)
        return self._copy(p)

    def update(self, name: str, *, config: dict[str, Any] | None = None,
               devices: dict[str, Any] | None = None, description: str | None = None,
               patch: bool = False, project: str = "default") -> None:
        """Replace (PUT: absent fields become empty) or merge (PATCH: keys and
        devices are added or replaced, an empty value removes a config key)
        a profile, then apply it to the instances that use it. Idempotent.

        Raises:
            NotFound: no such profile.
            BadRequest: a bad key or device, or the change would make an
                instance that uses the profile invalid (nothing is saved).
            Conflict: a published host port of a proxy device is taken.
            InternalError: saved, but applying it to a running instance failed.
        """
        project = self.owner(project)
        users = self._users_or_fail()
        with self._lock:
            old = self.get(name, project)
            new = self._copy(old)
            if config is not None:
                checked = cfg.validate_config(config)
                if patch:
                    new.config.update(checked)
                    new.config = {k: v for k, v in new.config.items()
                                  if not (v == "" and k in checked)}
                else:
                    new.config = checked
            elif not patch:
                new.config = {}
            validate_profile_config(new.config)
            if devices is not None:
                devs = users.validate_devices(devices)
                new.devices = {**new.devices, **devs} if patch else devs
            elif not patch:
                new.devices = {}
            if description is not None:
                new.description = str(description)
            affected = []
            for inst in users.using_profile(name, project):
                listed = self._listed(inst.profiles, project, override=new)
                exp_config = expand_config(listed, inst.config)
                exp_devices = expand_devices(listed, inst.devices)
                users.check_expansion(inst, exp_config, exp_devices)
                before = (self.expanded_config(inst), self.expanded_devices(inst))
                affected.append((inst, before, exp_config, exp_devices))
            self._rows.update(new)
            self._cache[(project, name)] = new
            self._generation += 1
        failures = []
        for inst, before, exp_config, exp_devices in affected:
            try:
                users.apply_expansion(inst, before, exp_config, exp_devices)
            except CoveError as e:  # saved: report every instance that did not take it
                failures.append(f" - Instance: {inst.name}: {e}")
            if self._events is not None:  # LXD's inst.Update says so for each one
                self._events.lifecycle("instance-updated", f"/1.0/instances/{inst.name}")
        self._lifecycle("profile-updated", name, project)
        if failures:
            raise InternalError("The following instances failed to update (profile change "
                                "still saved):\n" + "\n".join(failures))

    def rename(self, name: str, new_name: str, project: str = "default") -> None:
        """Rename a profile; instances that list it follow. Not idempotent.

        Raises:
            Forbidden: ``default`` cannot be renamed.
            BadRequest: a bad new name.  NotFound: no such profile.
            Conflict: ``new_name`` is taken.
        """
        project = self.owner(project)
        if name == DEFAULT_PROFILE:
            raise Forbidden('The "default" profile cannot be renamed')
        validate_profile_name(new_name)
        with self._lock:
            old = self.get(name, project)
            # instances of other projects that read this project's profiles follow too
            users = sorted({project_of(i) for i in self._users_or_fail().using_profile(
                name, project)})
            self._rows.rename(name, new_name, project, users)
            old.name = new_name
            del self._cache[(project, name)]
            self._cache[(project, new_name)] = old
            self._generation += 1
        self._lifecycle("profile-renamed", new_name, project, old_name=name)

    def delete(self, name: str, project: str = "default") -> None:
        """Delete an unused profile. Not idempotent.

        Raises:
            Forbidden: ``default`` cannot be deleted.
            NotFound: no such profile.
            BadRequest: an instance uses it (LXD's message).
        """
        project = self.owner(project)
        if name == DEFAULT_PROFILE:
            raise Forbidden('The "default" profile cannot be deleted')
        with self._lock:
            self.get(name, project)
            if self._users_or_fail().using_profile(name, project):
                raise BadRequest("Profile is currently in use")
            self._rows.delete(name, project)
            self._cache.pop((project, name), None)
            self._generation += 1
        self._lifecycle("profile-deleted", name, project)

    # -- what the projects service needs (``ProjectProfiles``) -------------------------------
    def own_names(self, project: str) -> list[str]:
        """The profiles stored under ``project`` itself (no owner resolved)."""
        with self._lock:
            return sorted(n for (pr, n) in self._cache if pr == project)

    def drop_project(self, project: str) -> None:
        """Remove every profile stored under ``project`` (it is being deleted,
        or stops having its own). Idempotent."""
        with self._lock:
            for (pr, n) in [k for k in self._cache if k[0] == project]:
                self._rows.delete(n, pr)
                del self._cache[(pr, n)]
            self._generation += 1

    def rename_project(self, old: str, new: str) -> None:
        """Move ``old``'s profiles to ``new`` (a project rename). Idempotent."""
        with self._lock:
            moved = [self._cache.pop(k) for k in [k for k in self._cache if k[0] == old]]
            for p in moved:
                self._rows.delete(p.name, old)
                p.project = new
                self._rows.add(p)
                self._cache[(new, p.name)] = p
            self._generation += 1

    def _lifecycle(self, action: str, name: str, project: str, **context: Any) -> None:
        if self._events is not None:
            suffix = "" if project == "default" else f"?project={project}"
            self._events.lifecycle(action, f"/1.0/profiles/{name}{suffix}", **context)
