"""Projects: names, config keys and how an instance of a project is keyed.

Design note: an instance ``web`` of project ``dev`` is stored, run and
mounted under the key ``dev_web`` (LXD's ``project.Instance()``); the
``default`` project's instances keep their plain name as key. ``_`` is
allowed in neither instance nor project names, so a key splits back into
``(project, name)`` without ambiguity, and every per-instance resource on
the host (directory, cgroup, runc id, veth, lease) stays globally unique
without knowing about projects. Only the API shows the plain name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cove.model import config as cfg
from cove.model.errors import BadRequest

__all__ = [
    "DEFAULT",
    "DEFAULT_CONFIG",
    "DEFAULT_DESCRIPTION",
    "FEATURES",
    "NEW_PROJECT_FEATURES",
    "Project",
    "alias_key",
    "display_name",
    "dns_name",
    "instance_key",
    "instance_url",
    "split_alias",
    "split_key",
    "validate_project_config",
    "validate_project_name",
]

DEFAULT = "default"

# LXD's features; a new project gets those marked True set to "true"
# (LXD 5.0's ``cluster.ProjectFeatures[...].DefaultEnabled``), the rest stay
# unset (false). Later LXDs' buckets and zones are known keys, off.
FEATURES = {
    "features.images": True,
    "features.profiles": True,
    "features.storage.volumes": True,
    "features.networks": False,
    "features.storage.buckets": False,
    "features.networks.zones": False,
}
NEW_PROJECT_FEATURES = {k: "true" for k, on in FEATURES.items() if on}
# the default project owns every kind of thing, networks included
DEFAULT_CONFIG = {**NEW_PROJECT_FEATURES, "features.networks": "true"}
DEFAULT_DESCRIPTION = "Default LXD project"

# cove keeps a project's name in instance keys, directories and URLs, so it
# allows fewer characters than LXD (which takes any printable ASCII but a
# few): letters, digits, '-' and '.', not starting with '.' or '-'.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")

_COUNT_LIMITS = ("limits.instances", "limits.containers", "limits.virtual-machines",
                 "limits.networks", "limits.processes", "limits.cpu")


@dataclass
class Project:
    """A project as stored."""

    name: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    id: int = 0

    def feature(self, key: str) -> bool:
        """Whether ``features.<key>`` is on (the default project has its own everything)."""
        if self.name == DEFAULT:
            return True
        return cfg.truthy(self.config.get(f"features.{key}"))


def validate_project_name(name: object) -> str:
    """Return ``name`` if it is a valid project name, else raise BadRequest
    with LXD's wording for the cases LXD names."""
    if not isinstance(name, str) or not name:
        raise BadRequest("No name provided")
    if name == "*":
        raise BadRequest("Reserved project name")
    if name in (".", ".."):
        raise BadRequest(f"Invalid project name {name!r}")
    for ch, what in (("\\", "back slashes"), ("/", "slashes"), (" ", "spaces"),
                     ("_", "underscores"), ("'", "quotes"), ('"', "quotes")):
        if ch in name:
            raise BadRequest(f"Project names may not contain {what}")
    if not _NAME.match(name):
        raise BadRequest(f"Invalid project name {name!r}: use up to 63 letters, digits, "
                         "'-' and '.', starting with a letter or digit")
    return name


def _check_bool(key: str, value: str) -> None:
    if value.strip().lower() not in ("", "true", "false", "1", "0", "yes", "no", "on", "off"):
        raise BadRequest(f"Invalid project configuration key {key!r} value: "
                         f"invalid value for a boolean {value!r}")


def _check_count(key: str, value: str) -> None:
    if value != "" and not (value.isdigit() and len(value) < 10):
        raise BadRequest(f"Invalid project configuration key {key!r} value: "
                         f"{value!r} is not a non-negative integer")


def _check_value(key: str, value: str) -> None:
    if key in FEATURES or key == "restricted":
        _check_bool(key, value)
    elif key in _COUNT_LIMITS:
        _check_count(key, value)
    elif key == "limits.memory":
        if value and value.strip().endswith("%"):
            raise BadRequest(f"Invalid project configuration key {key!r} value: "
                             "a project's memory limit is a size, not a percentage")
        if value:
            cfg.parse_memory(value)
    elif key.startswith(("user.", "restricted.")) or key == "limits.disk":
        return
    else:
        raise BadRequest(f"Invalid project configuration key {key!r}")


def validate_project_config(config: Mapping[str, object]) -> dict[str, str]:
    """The config with every key known and every value well-formed.

    Raises:
        BadRequest: an unknown key (``Invalid project configuration key
            "x"``, LXD's words) or a bad value, naming the key.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        if not isinstance(value, str):
            raise BadRequest(f"Invalid project configuration key {key!r} value: "
                             "must be a string")
        _check_value(str(key), value)
        out[str(key)] = value
    return out


def instance_key(project: str, name: str) -> str:
    """The key ``name`` of ``project`` is stored and run under."""
    return name if project == DEFAULT else f"{project}_{name}"


def split_key(key: str) -> tuple[str, str]:
    """``(project, name)`` of an instance key (inverse of ``instance_key``)."""
    project, sep, name = key.partition("_")
    return (project, name) if sep else (DEFAULT, key)


def alias_key(project: str, name: str) -> str:
    """The key an image alias of ``project`` is stored under: ``/`` is in no
    alias name nor project name, so ``PROJECT/NAME`` never collides."""
    return name if project == DEFAULT else f"{project}/{name}"


def split_alias(key: str) -> tuple[str, str]:
    """``(project, name)`` of an alias key (inverse of ``alias_key``)."""
    project, sep, name = key.partition("/")
    return (project, name) if sep else (DEFAULT, key)


def display_name(key: str) -> str:
    """The instance keyed ``key`` as messages name it: ``web``, or
    ``web (project dev)``."""
    project, name = split_key(key)
    return name if project == DEFAULT else f"{name} (project {project})"


def dns_name(key: str) -> str:
    """The name the instance keyed ``key`` has in its networks' DNS: ``web``,
    or ``web.dev`` for ``web`` of project ``dev`` (LXD's ``project.DNS``), so
    one project's ``web`` never answers for another's."""
    project, name = split_key(key)
    return name if project == DEFAULT else f"{name}.{project}"


def instance_url(key: str, sub: str = "", *, base: str = "/1.0/instances") -> str:
    """The URL of the instance keyed ``key`` (and ``sub``, a path below it),
    with ``?project=`` as LXD writes it."""
    project, name = split_key(key)
    path = f"{base}/{name}{sub}"
    return path if project == DEFAULT else f"{path}?project={project}"
