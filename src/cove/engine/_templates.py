"""Applying an image's templates to an instance's root filesystem, as LXD does.

Design notes:

* When (LXD's ``DeferTemplateApply`` and ``onStart``): a create, copy,
  rename or rebuild records its trigger in ``volatile.apply_template``
  (:func:`defer`; a trigger already pending stays); the next start, with
  the root filesystem mounted and before the container exists, renders
  that trigger's templates, clears the key, then renders the ``start``
  templates (:func:`apply_at_start`). Rendering is idempotent, so a coved
  killed before the key is cleared renders the same files again; a rename
  records its trigger before it moves anything, so a rename that fails
  leaves at most a re-render of the same files.
* What: the rules and the templates are the instance's own once it has
  a copy (``_inst_metadata``: made on its first edit through
  ``/1.0/instances/NAME/metadata``, or by a backup import), else its
  image's (its ``metadata.yaml`` and ``templates/`` in the image store,
  kept as long as an instance uses the layers, also after the image is
  deleted); an instance with neither has none. See ``cove.model.templates`` for the rules, ``cove.model.pongo``
  for the renderer.
* Files as LXD writes them: an existing target is truncated and rewritten
  in place (its owner, mode and hardlinks stay); a missing one is created
  root-owned 0644, with missing parents root-owned 0755; ``create_only``
  leaves an existing target alone.
* Hostile input. Everything is written through a ``RootFS`` on the
  mounted root (``openat2`` with ``RESOLVE_IN_ROOT``), so nothing lands
  outside it whatever the image or the container did. On top of that a
  target whose path holds a symlink (the file or a parent directory), or a
  directory, is refused, as is a template file that is a symlink or a rule
  whose paths climb with ``..``: the start fails with an error naming the
  rule and nothing of that rule is written (LXD fails the start on a
  template error too). A template is rendered before its target is
  opened, so a template that does not render leaves the file as it was.
* cove bind-mounts its own ``/etc/hosts`` over an instance with a NIC
  (``_nics``: its address and FQDN); a template for ``/etc/hosts`` is
  rendered into the root filesystem underneath, as LXD would, and when
  the instance's rules have one (:func:`mark_hosts`), cove's file is that
  rendered file with cove's lines for the instance's addresses appended,
  so the instance sees its image's hosts file as under LXD.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Protocol

import yaml

from cove.engine._failpoints import failpoint
from cove.engine._inst_metadata import own_files
from cove.model.errors import BadRequest, CoveError, NotFound
from cove.model.pongo import function, render
from cove.model.projects import split_key
from cove.model.records import Instance
from cove.model.templates import (
    TRIGGER_KEY,
    TemplateRule,
    config_get,
    context,
    parse_rules,
    template_parts,
)
from cove.storage.images import host_architecture
from cove.storage.safefs import RootFS
from cove.store import Store

__all__ = ["HOSTS_MARK", "TemplateFiles", "TemplateProfiles", "apply_at_start", "defer",
           "mark_hosts"]

log = logging.getLogger("cove.engine")

#: in an instance's directory: its templates write /etc/hosts (see mark_hosts)
HOSTS_MARK = "hosts.templated"
_TEMPLATE_LIMIT = 1 << 20  # LXD reads a template whole; so do we, up to this
_METADATA_LIMIT = 1 << 20
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~6x faster


class TemplateFiles(Protocol):
    """Where an image's ``metadata.yaml`` and ``templates/`` are (the images service)."""

    def template_files(self, fingerprint: str) -> tuple[bytes | None, Path | None]:
        """The image's metadata.yaml and templates directory, each None if absent."""
        ...


class TemplateProfiles(Protocol):
    """The expanded config and devices an instance is rendered with."""

    def expanded_config(self, inst: Instance) -> dict[str, str]:
        """Profile config overlaid by the instance's own."""
        ...

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """Profile devices overlaid by the instance's own."""
        ...


def defer(store: Store, key: str, trigger: str) -> None:
    """Record ``trigger`` for the next start of instance ``key``, unless a
    trigger is pending already (LXD's ``DeferTemplateApply``). Idempotent.

    Raises:
        NotFound: no such instance.
    """
    inst = store.get_instance(key)
    if inst.config.get(TRIGGER_KEY):
        return
    inst.config[TRIGGER_KEY] = trigger
    store.update_instance(inst)


def mark_hosts(instance_dir: Path, templated: bool) -> None:
    """Record whether the instance's templates write ``/etc/hosts``: a start
    then bases the ``/etc/hosts`` cove bind-mounts for a NIC on the root
    filesystem's (``_nics``), so the instance sees what its image's
    template wrote, as under LXD (which mounts no /etc/hosts). Idempotent."""
    mark = instance_dir / HOSTS_MARK
    if templated:
        mark.touch(mode=0o600)
    else:
        mark.unlink(missing_ok=True)


def apply_at_start(store: Store, images: TemplateFiles, profiles: TemplateProfiles,
                   inst: Instance, rootfs: Path, instance_dir: Path | None = None) -> None:
    """Render the pending trigger's templates then the ``start`` ones into
    ``rootfs`` (the instance's mounted root), clearing the pending key in
    between. The rules and templates are ``instance_dir``'s own when it has
    them (``_inst_metadata``), else the image's. Called by a start, which
    holds the instance's lock.

    Raises:
        BadRequest: a malformed rule or metadata, a template that does not
            render, or a target or template refused as unsafe; the message
            names the rule. What was written before it stays (as in LXD).
    """
    pending = inst.config.get(TRIGGER_KEY, "")
    rules = _rules(images, inst, instance_dir)
    if instance_dir is not None:  # what _nics bases a NIC's /etc/hosts on
        mark_hosts(instance_dir, any(r.target == "/etc/hosts" for r, _ in rules))
    if rules:
        config = profiles.expanded_config(inst)
        devices = profiles.expanded_devices(inst)
        if pending:
            _apply(rootfs, rules, pending, inst, config, devices)
    failpoint("templates.after-apply")  # rendered, still pending: rendered again
    if pending:
        row = store.get_instance(inst.name)
        row.config.pop(TRIGGER_KEY, None)
        store.update_instance(row)
        inst.config.pop(TRIGGER_KEY, None)
    if rules:
        _apply(rootfs, rules, "start", inst, config, devices)


def _rules(images: TemplateFiles, inst: Instance,
           instance_dir: Path | None) -> list[tuple[TemplateRule, Path | None]]:
    """The instance's own rules or else its image's, each with its
    templates directory; [] without any."""
    own = own_files(instance_dir) if instance_dir is not None else None
    if own is not None:
        metadata, templates = own
    else:
        metadata, templates = images.template_files(inst.image) if inst.image else (None, None)
    if metadata is None or b"templates" not in metadata:  # most images: no YAML to parse
        return []
    if len(metadata) > _METADATA_LIMIT:
        raise BadRequest("The instance's metadata.yaml is too large")
    return [(rule, templates) for rule in _parsed(metadata)]


@functools.lru_cache(maxsize=16)  # metadata.yaml is at most 1 MiB
def _parsed(metadata: bytes) -> tuple[TemplateRule, ...]:
    """The rules of a metadata.yaml (cached: every start of every instance
    of an image reads the same bytes)."""
    try:
        doc = yaml.load(metadata, Loader=_LOADER)  # a safe loader (libyaml or Python)
    except yaml.YAMLError as exc:
        raise BadRequest(f"Failed reading the image's metadata.yaml: {exc}") from None
    return tuple(parse_rules(doc)) if isinstance(doc, dict) else ()


def _apply(rootfs: Path, rules: list[tuple[TemplateRule, Path | None]], trigger: str,
           inst: Instance, config: dict[str, str], devices: dict[str, dict[str, str]]) -> None:
    chosen = [(r, t) for r, t in rules if trigger in r.when]
    if not chosen:
        return
    base: dict[str, Any] = {"name": split_key(inst.name)[1],
                            "architecture": inst.architecture or host_architecture(),
                            "ephemeral": inst.ephemeral, "config": config, "devices": devices}
    with RootFS(rootfs) as root:
        for rule, templates in chosen:
            try:
                _apply_one(root, templates, rule, trigger, base)
            except CoveError as exc:
                raise BadRequest(f"Template {rule.path}: {exc}") from None
            log.debug("%s: rendered %s (%s)", inst.name, rule.path, trigger)


def _apply_one(root: RootFS, templates: Path | None, rule: TemplateRule, trigger: str,
               base: dict[str, Any]) -> None:
    exists = _check_target(root, rule)
    if exists and rule.create_only:
        return
    source = _read_template(templates, rule)
    ctx = context(rule=rule, trigger=trigger, **base)
    ctx["config_get"] = function(config_get(base["config"]), 2)
    data = render(source, ctx, name=rule.template).encode("utf-8", "surrogateescape")
    if exists:  # truncated in place: owner, mode and hardlinks stay
        root.write_file(rule.target, data)
    else:
        root.write_file(rule.target, data, uid=0, gid=0, mode=0o644, make_parents=True)


def _check_target(root: RootFS, rule: TemplateRule) -> bool:
    """Whether the target exists (a regular file); refuses a symlink on the
    way or at the end, a non-directory parent and a non-file target.

    Raises:
        BadRequest: refused (the message says why).
    """
    for i in range(1, len(rule.parts) + 1):
        path = "/" + "/".join(rule.parts[:i])
        try:
            kind = root.stat(path, follow=False).type
        except NotFound:
            return False  # created below (with its missing parents)
        if kind == "symlink":
            raise BadRequest(f"{path} is a symbolic link: templates are not written "
                             "through symlinks")
        if i < len(rule.parts) and kind != "directory":
            raise BadRequest(f"{path} is not a directory")
        if i == len(rule.parts) and kind != "file":
            raise BadRequest(f"target {path} is not a regular file ({kind})")
    return True


def _read_template(templates: Path | None, rule: TemplateRule) -> str:
    name = "/" + "/".join(template_parts(rule.template, rule.path))
    if templates is None:
        raise BadRequest(f"the image has no templates/ directory for {rule.template}")
    with RootFS(templates) as tree:
        try:
            kind = tree.stat(name, follow=False).type
        except NotFound:
            raise BadRequest(f"template file {rule.template} is not in the image") from None
        if kind == "symlink":
            raise BadRequest(f"template file {rule.template} is a symbolic link")
        data = tree.read_bytes(name, _TEMPLATE_LIMIT)
    return data.decode("utf-8", "surrogateescape")
