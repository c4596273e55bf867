"""The small interfaces one engine service holds another by.

Design note: a service is handed only what it needs, typed as one of these
``Protocol``s, so it cannot reach past them and a unit test can fake them
(no ``cast``). The composition root (``Engine``) passes the real services,
which satisfy them structurally.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, Protocol

from cove.engine._net_base import NetPlan
from cove.engine.operations import Operation
from cove.model.records import Image, Instance

__all__ = ["NO_HOOKS", "DeviceSource", "DiskPort", "ImageSource", "LifecycleHooks",
           "NetworkPort", "ProfileSource", "ProfileUsers", "ProjectProfiles", "ProjectSource", "StackInstances"]


class ImageSource(Protocol):
    """What the instances service needs of images."""

    def resolve(self, ref: str, *, project: str = "default") -> Image:
        """An alias, a fingerprint or a unique prefix (of ``project``'s
        images). Raises BadRequest, NotFound."""
        ...

    def find(self, fingerprint: str) -> Image | None:
        """Exactly this fingerprint, or None."""
        ...

    def rootfs(self, fingerprint: str) -> Path:
        """The image's unpacked root filesystem (a lower layer)."""
        ...

    def lowers(self, fingerprint: str) -> list[Path]:
        """The image's layers, topmost first. Raises NotFound."""
        ...

    def run_config(self, fingerprint: str) -> tuple[list[str], dict[str, str]]:
        """The image's command and environment, kept after the image is deleted."""
        ...

    def mark_used(self, fingerprint: str) -> None:
        """An instance was made from it: set its ``last_used_at``. Never raises."""
        ...

    def instance_keys(self, fingerprint: str) -> dict[str, str]:
        """Config keys a new instance of the image starts with (an OCI image's). Never raises."""
        ...

    def collect(self, fingerprint: str) -> bool:
        """Drop its layers if no image and no instance refers to them. Idempotent."""
        ...

    def template_files(self, fingerprint: str) -> tuple[bytes | None, Path | None]:
        """The image's ``metadata.yaml`` and ``templates/`` (each None if
        absent), kept while instances use its layers. Never raises."""
        ...


class ProfileSource(Protocol):
    """What the instances service needs of profiles."""

    def owner(self, project: str) -> str:
        """The project whose profiles ``project`` uses (``features.profiles``)."""
        ...

    def check(self, profiles: list[str], project: str = "default") -> None:
        """Raises NotFound for a profile that does not exist."""
        ...

    @property
    def generation(self) -> int:
        """Moves on after every change of a profile (what expansions are keyed by)."""
        ...

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """Profile devices overlaid by the instance's own."""
        ...

    def expanded_config(self, inst: Instance) -> dict[str, str]:
        """Profile config overlaid by the instance's own."""
        ...

    def expand(self, profiles: list[str], devices: dict[str, dict[str, str]],
               project: str = "default") -> dict[str, dict[str, str]]:
        """``devices`` over the devices of ``profiles`` (in order)."""
        ...

    def expand_config(self, profiles: list[str], config: dict[str, str],
                      project: str = "default") -> dict[str, str]:
        """``config`` over the config of ``profiles`` (in order)."""
        ...


class ProfileUsers(Protocol):
    """What the profiles service needs of the instances that use profiles."""

    def using_profile(self, profile: str, project: str) -> list[Instance]:
        """The instances of ``project`` that list ``profile``."""
        ...

    def validate_devices(self, devices: Any) -> dict[str, dict[str, str]]:
        """The shape check of a devices object. Raises: BadRequest."""
        ...

    def check_expansion(self, inst: Instance, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        """Raises BadRequest or Conflict if ``inst`` cannot run with this
        expanded config and devices (nothing is changed)."""
        ...

    def apply_expansion(self, inst: Instance,
                        old: tuple[dict[str, str], dict[str, dict[str, str]]],
                        config: dict[str, str], devices: dict[str, dict[str, str]]) -> None:
        """Apply a new expansion to ``inst`` where it is live (limits and
        proxies of a running instance; ``old``: the expanded config and
        devices it runs with); the rest takes effect at its next start."""
        ...


class NetworkPort(Protocol):
    """The networks side of an instance's life (``InstanceNetworks``)."""

    def check_devices(self, name: str, devices: dict[str, dict[str, str]],
                      profiles: list[str]) -> None:
        """Raises BadRequest or Conflict for devices the host cannot give."""
        ...

    def check_expanded(self, name: str, expanded: dict[str, dict[str, str]]) -> None:
        """``check_devices`` of devices already expanded with their profiles."""
        ...

    def check_nics_unchanged(self, inst: Instance, new: dict[str, dict[str, str]]) -> None:
        """Raises BadRequest if the NICs of running ``inst`` would change."""
        ...

    def apply_expanded(self, inst: Instance, new: dict[str, dict[str, str]]) -> None:
        """Apply changed proxies of expanded devices live. Raises BadRequest, Conflict."""
        ...

    def prepare(self, inst: Instance, undo: ExitStack) -> NetPlan:
        """Lease and write files before the container exists (undo registered)."""
        ...

    def rebase_hosts(self, inst: Instance, plan: NetPlan, rootfs: Path) -> None:
        """Base the bind-mounted /etc/hosts on the templated one in ``rootfs``."""
        ...

    def attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """Attach the planned NICs inside ``pid``'s namespace (undo registered)."""
        ...

    def release(self, name: str) -> None:
        """Withdraw all the run held. Idempotent."""
        ...

    def apply_devices(self, inst: Instance, new_devices: dict[str, dict[str, str]]) -> None:
        """Apply changed proxy devices live. Raises BadRequest, Conflict."""
        ...

    def state(self, inst: Instance) -> dict[str, Any]:
        """LXD's ``state.network`` of a running instance."""
        ...

    def states(self, insts: list[Instance]) -> dict[str, dict[str, Any]]:
        """``state`` of many running instances, by key, in one pass."""
        ...


class ProjectSource(Protocol):
    """What the instances service needs of projects (``engine._projects``)."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held from a limit's check to the change it allowed."""
        ...

    def check(self, name: str) -> str:
        """``name`` if the project exists. Raises: NotFound."""
        ...

    def check_instance(self, project: str, config: dict[str, str], *,
                       replacing: str | None = None) -> None:
        """Raises BadRequest when a new (or the changed ``replacing``)
        instance with ``config`` would pass one of the project's limits."""
        ...


class ProjectProfiles(Protocol):
    """What the projects service needs of profiles (``engine._profiles``)."""

    def ensure_default(self, project: str = "default") -> None:
        """Make ``project``'s ``default`` profile if it has none. Idempotent."""
        ...

    def own_names(self, project: str) -> list[str]:
        """The profiles stored under ``project`` itself."""
        ...

    def drop_project(self, project: str) -> None:
        """Remove every profile stored under ``project``. Idempotent."""
        ...

    def rename_project(self, old: str, new: str) -> None:
        """Move ``old``'s profiles to ``new``. Idempotent."""


class DiskPort(Protocol):
    """The storage side of an instance's life (``Storage``): its disk devices."""

    def check_disks(self, devices: dict[str, dict[str, str]], *,
                    project: str = "default") -> None:
        """Raises BadRequest (a bad disk) or NotFound (a missing volume)."""
        ...

    def mounts(self, devices: dict[str, dict[str, str]], rootfs: Path, *,
               project: str = "default") -> tuple[dict[str, Any], ...]:
        """The disks' OCI bind mounts, targets made inside ``rootfs``. Raises
        BadRequest, NotFound."""
        ...

    def apply_disks(self, pid: int, rootfs: Path, old: dict[str, dict[str, str]],
                    new: dict[str, dict[str, str]], *, project: str = "default") -> None:
        """Hot-plug: mount and unmount a running instance's changed disks.
        Raises BadRequest, NotFound."""
        ...


class DeviceSource(Protocol):
    """What storage needs of profiles: the devices an instance runs with."""

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """Profile devices overlaid by the instance's own."""
        ...


class LifecycleHooks(Protocol):
    """What the instances service asks of the app-stack service (``_deps``)
    at the points of an instance's life where ``cove.*`` keys act. Every
    ``name`` is an instance key."""

    def check_config(self, name: str, config: dict[str, str]) -> None:
        """Raises BadRequest if ``name`` cannot have this expanded config
        (an unknown dependency, a cycle). Nothing is changed."""
        ...

    def before_start(self, name: str) -> None:
        """Start what ``name`` depends on and wait for each condition.
        Raises: BadRequest, Timeout (naming the dependency and its probe)."""
        ...

    def before_stop(self, name: str, timeout: float, force: bool) -> None:
        """A stop asked for by a client: stop ``name``'s dependents first."""
        ...

    def before_delete(self, name: str, force: bool) -> None:
        """Raises BadRequest if others depend on ``name`` and not ``force``."""
        ...

    def cancel_restart(self, name: str) -> bool:
        """A client stops ``name``: True if it was waiting for a restart by
        policy or its restart's start is in flight; the stop
        then waits for ``name``'s operation and is done if it is stopped."""
        ...

    def state(self, name: str) -> dict[str, Any]:
        """Extra keys of ``name``'s LXD state (``{"cove": {...}}``), or {}."""
        ...

    def run_config(self, name: str, config: dict[str, str]) -> dict[str, str]:
        """The expanded config ``name`` starts with now (a command given
        for this start only replaces ``cove.cmd``)."""
        ...


class _NoHooks:
    def check_config(self, name: str, config: dict[str, str]) -> None:
        pass

    def before_start(self, name: str) -> None:
        pass

    def before_stop(self, name: str, timeout: float, force: bool) -> None:
        pass

    def before_delete(self, name: str, force: bool) -> None:
        pass

    def cancel_restart(self, name: str) -> bool:
        return False

    def state(self, name: str) -> dict[str, Any]:
        return {}

    def run_config(self, name: str, config: dict[str, str]) -> dict[str, str]:
        return config


NO_HOOKS: LifecycleHooks = _NoHooks()


class StackInstances(Protocol):
    """What the app-stack service needs of the instances service."""

    def all(self, *, project: str | None = "default") -> list[Instance]:
        """Every instance of ``project`` (None: all), expanded, ``name`` the key."""
        ...

    def change_state(self, name: str, action: str, *, project: str = "default",
                     timeout: float = -1, force: bool = False,
                     wait_for_lock: float = 0) -> Operation:
        """Start, stop, restart ... as an operation. Raises: BadRequest,
        NotFound, Conflict."""
        ...

    def expanded_config(self, inst: Instance) -> dict[str, str]:
        """The config ``inst`` runs with."""
        ...
