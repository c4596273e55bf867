"""LXD image templates: the ``templates:`` rules of an image's
``metadata.yaml``, the triggers, and what a template is rendered with (pure).

Design note: an LXD image may list files to render into an instance's
root filesystem (``/etc/hostname``, ``/etc/hosts``, cloud-init's seed in
every image of LXD's image servers)::

    templates:
      /etc/hostname:
        when: [create, copy]
        create_only: false
        template: hostname.tpl
        properties: {}

``when`` names the triggers: ``create`` (an instance made from the image),
``copy`` (made as a copy of another), ``rename`` and ``start`` (every
start). LXD records a pending trigger in ``volatile.apply_template`` (the
first one stays until applied) and applies it at the next start, before
that start's own ``start`` templates (``DeferTemplateApply``,
``templateApplyNow``). The template itself is pongo2 (``cove.model.pongo``)
rendered with :func:`context`. The engine side (files, the key) is
``cove.engine._templates``.

Paths are hostile input: a target is a path inside the instance's root (a
leading ``/`` optional, as LXD trims it) with no ``..`` component, a
template is a name inside the image's ``templates/`` with none either;
anything else is refused with an error naming the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cove.model.errors import BadRequest

__all__ = ["TRIGGERS", "TRIGGER_KEY", "TemplateRule", "config_get", "context", "metadata_wire",
           "parse_rules", "template_parts"]

TRIGGER_KEY = "volatile.apply_template"
TRIGGERS = ("create", "copy", "start", "rename")
_TRUE = ("true", "1", "yes", "on")


@dataclass(frozen=True)
class TemplateRule:
    """One entry of ``templates:``: render ``template`` to ``path`` on ``when``."""

    path: str  # as metadata.yaml names it (what errors and ``{{ path }}`` show)
    parts: tuple[str, ...]  # the target's components below the root
    template: str
    when: tuple[str, ...]
    create_only: bool = False
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The target as an absolute path inside the instance."""
        return "/" + "/".join(self.parts)


def _components(path: str, what: str) -> tuple[str, ...]:
    if "\0" in path:
        raise BadRequest(f"{what}: a NUL byte in the path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise BadRequest(f"{what}: '..' in the path is refused")
    if not parts:
        raise BadRequest(f"{what}: the path names no file")
    return parts


def template_parts(name: str, rule: str) -> tuple[str, ...]:
    """The components of template file ``name`` inside ``templates/``.

    Raises:
        BadRequest: empty, absolute, or with a ``..`` component.
    """
    if name.startswith("/"):
        raise BadRequest(f"Template {rule}: template {name!r} must be a name in templates/")
    return _components(name, f"Template {rule}: template {name!r}")


def _strings(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"{what} must be a mapping")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, (Mapping, list)):
            raise BadRequest(f"{what}: {k!r} must be a string")
        out[str(k)] = "" if v is None else ("true" if v is True else
                                             "false" if v is False else str(v))
    return out


def _rule(path: object, spec: object) -> TemplateRule:
    if not isinstance(path, str):
        raise BadRequest(f"Template {path!r}: the target must be a path")
    if not isinstance(spec, Mapping):
        raise BadRequest(f"Template {path}: must be a mapping")
    name = spec.get("template")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"Template {path}: 'template' must name a file in templates/")
    when = spec.get("when") or []
    if not isinstance(when, list) or not all(isinstance(w, str) for w in when):
        raise BadRequest(f"Template {path}: 'when' must be a list of triggers")
    create_only = spec.get("create_only", False)
    if not isinstance(create_only, bool):
        raise BadRequest(f"Template {path}: 'create_only' must be true or false")
    template_parts(name, path)
    return TemplateRule(path=path, parts=_components(path, f"Template {path}"),
                        template=name, when=tuple(when), create_only=create_only,
                        properties=_strings(spec.get("properties"),
                                            f"Template {path}: 'properties'"))


def parse_rules(metadata: Mapping[str, Any]) -> list[TemplateRule]:
    """The ``templates:`` of a parsed ``metadata.yaml``, in path order
    (LXD's order is a Go map's: none). An image without any gives [].

    A trigger LXD does not know is kept (it never fires), as LXD does.

    Raises:
        BadRequest: a malformed rule, or a target or template path that is
            absolute where it must not be or climbs with ``..``; the
            message names the rule.
    """
    raw = metadata.get("templates")
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise BadRequest("metadata.yaml: 'templates' must be a mapping")
    return sorted((_rule(p, s) for p, s in raw.items()), key=lambda r: r.path)


def context(*, name: str, architecture: str, ephemeral: bool, config: Mapping[str, str],
            devices: Mapping[str, Mapping[str, str]], rule: TemplateRule,
            trigger: str) -> dict[str, object]:
    """What LXD renders ``rule`` with (``templateApplyNow``), but the
    ``config_get`` function, which the engine adds: ``instance`` (and its
    old name ``container``) with ``name``, ``type``, ``architecture``,
    ``ephemeral`` and ``privileged`` as the strings LXD gives; the
    instance's expanded ``config`` and ``devices``; the rule's
    ``properties``; ``trigger`` and ``path``."""
    privileged = config.get("security.privileged", "").strip().lower() in _TRUE
    meta = {"name": name, "type": "container", "architecture": architecture,
            "ephemeral": "true" if ephemeral else "false",
            "privileged": "true" if privileged else "false"}
    return {"trigger": trigger, "path": rule.path, "container": meta, "instance": meta,
            "config": dict(config), "devices": {k: dict(v) for k, v in devices.items()},
            "properties": dict(rule.properties)}


def config_get(config: Mapping[str, str]) -> Any:
    """LXD's ``config_get(key, default)``: the key's value without trailing
    newlines, or ``default`` when it is not set."""

    def get(key: object, default: object) -> object:
        value = config.get(key) if isinstance(key, str) else None
        return default if value is None else value.rstrip("\r\n")

    return get


def _int(value: object, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"metadata: '{what}' must be an integer")
    return value


def metadata_wire(doc: object) -> dict[str, Any]:
    """A ``metadata.yaml`` (parsed) or a ``PUT .../metadata`` body as LXD's
    ``ImageMetadata`` (every field present, absent maps null, as Go's
    encoder writes them); the template rules checked as :func:`parse_rules`
    does, so a hostile path is refused before anything is written.

    Raises:
        BadRequest: not a mapping, a field of the wrong type, a bad rule
            (the message names the field or the rule).
    """
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise BadRequest("metadata must be an object")
    arch = doc.get("architecture") or ""
    if not isinstance(arch, str):
        raise BadRequest("metadata: 'architecture' must be a string")
    props = doc.get("properties")
    out: dict[str, Any] = {
        "architecture": arch,
        "creation_date": _int(doc.get("creation_date"), "creation_date"),
        "expiry_date": _int(doc.get("expiry_date"), "expiry_date"),
        "properties": None if props is None else _strings(props, "metadata: 'properties'"),
        "templates": None}
    rules = parse_rules(doc)
    raw = doc.get("templates")
    if isinstance(raw, Mapping):  # absent lists and maps stay null, as Go's decoder leaves them
        out["templates"] = {r.path: {
            "when": list(r.when) if raw[r.path].get("when") is not None else None,
            "create_only": r.create_only, "template": r.template,
            "properties": (dict(r.properties) if raw[r.path].get("properties") is not None
                           else None)} for r in rules}
    return out
