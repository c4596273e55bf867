"""The flows of the host's other resources: images, aliases, networks,
operations and trusted certificates.

Design notes:

* As the instance flows (``drivers._flows``), each public call is one
  generator of steps, free of I/O, run by every driver (sync and asyncio):
  the convergence is written once. Creating what exists (with the same
  target) and deleting what is gone succeed and do nothing; the flows look
  (a ``Get*`` step answers None for what is missing) before and, after a
  failure, again, so a race with another client converges too.
* Reports come out: every flow turns the wire dicts its steps return into
  the ``cove.api`` classes with their ``from_wire`` (tolerant of LXD's and
  Incus' answers), so every driver returns the same types.
* Checks that need no host run first (names, a local file, a PEM), so a bad
  call makes nothing and raises ``BadRequest`` on every driver alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from cove import api
from cove.client.drivers._steps import (
    AddCertificate,
    CancelOperation,
    CreateAlias,
    CreateNetwork,
    DeleteAlias,
    DeleteCertificate,
    DeleteImage,
    DeleteNetwork,
    Flow,
    GetAlias,
    GetCertificate,
    GetImage,
    GetNetwork,
    GetNetworkLeases,
    GetNetworkState,
    GetOperation,
    HashFile,
    ImportImage,
    ListAliases,
    ListCertificates,
    ListImages,
    ListInstances,
    ListNetworks,
    ListOperations,
    ProgressCallback,
    RenameAlias,
    UpdateImage,
    UpdateNetwork,
    WaitOperation,
)
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound, Timeout
from cove.model.names import validate_alias_name

__all__ = [
    "EVENT_TYPES",
    "add_certificate",
    "alias",
    "aliases",
    "cancel_operation",
    "certificate",
    "certificates",
    "check_event_types",
    "containers",
    "create_alias",
    "create_network",
    "delete_alias",
    "delete_certificate",
    "delete_image",
    "delete_network",
    "image",
    "images",
    "import_image",
    "network",
    "network_leases",
    "network_state",
    "networks",
    "operation",
    "operations",
    "rename_alias",
    "update_image",
    "update_network",
    "wait_operation",
]

#: The event types a host streams (LXD's names).
EVENT_TYPES = ("lifecycle", "operation", "logging")

_FINAL = ("Success", "Failure", "Cancelled")


def _text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"The {what} must be a non-empty string")
    return value


def _str_map(what: str, value: Mapping[str, Any] | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"The {what} must be a mapping of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        out[str(k)] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def check_event_types(types: Sequence[str]) -> tuple[str, ...]:
    """``types`` as a tuple, each one of ``EVENT_TYPES``.

    Raises:
        BadRequest: an unknown type, or none at all.
    """
    if isinstance(types, str):
        types = (types,)
    got = tuple(dict.fromkeys(str(t) for t in types))
    unknown = [t for t in got if t not in EVENT_TYPES]
    if unknown or not got:
        what = f"Unknown event type {unknown[0]!r}" if unknown else "No event type given"
        raise BadRequest(f"{what}: use {', '.join(EVENT_TYPES)}")
    return got


# -- instances (the lifecycle is drivers._flows') ------------------------------------

def containers() -> Flow[list[api.Instance]]:
    return [api.Instance.from_wire(d) for d in (yield ListInstances()) if isinstance(d, dict)]


# -- images ------------------------------------------------------------------------------------

def images() -> Flow[list[api.Image]]:
    return [api.Image.from_wire(d) for d in (yield ListImages()) if isinstance(d, dict)]


def _image(fingerprint: str) -> Flow[dict[str, Any]]:
    found = yield GetImage(_text("image fingerprint", fingerprint))
    if found is None:
        raise NotFound(f"Image not found: {fingerprint}")
    return dict(found)


def image(fingerprint: str) -> Flow[api.Image]:
    return api.Image.from_wire((yield from _image(fingerprint)))


def import_image(path: str | os.PathLike[str], *, aliases: Sequence[str],
                 progress: ProgressCallback | None) -> Flow[api.Image]:
    """Convergent: an image with the same fingerprint is not uploaded again
    (its missing aliases are added); see ``Driver.import_image``."""
    local = os.fspath(path)
    if not os.path.isfile(local):
        raise NotFound(f"No local image file {local!r}") if not os.path.exists(local) else \
            BadRequest(f"{local!r} is not a file")
    if isinstance(aliases, str):
        aliases = (aliases,)
    names = [validate_alias_name(a) for a in aliases]
    fp = str((yield HashFile(local)))
    for name in names:  # refused before anything is made
        taken = yield GetAlias(name)
        if taken is not None and str(taken.get("target")) != fp:
            raise Conflict(f"Alias {name} already names image {taken.get('target')}")
    if (yield GetImage(fp)) is None:
        try:
            yield ImportImage(local, fp, progress=progress)
        except CoveError:
            if (yield GetImage(fp)) is None:
                raise  # else: another client imported it meanwhile
    for name in names:
        yield from _create_alias(name, fp, "")
    return api.Image.from_wire((yield from _image(fp)))


def update_image(fingerprint: str, *, properties: Mapping[str, Any] | None,
                 public: bool | None) -> Flow[None]:
    found = yield from _image(fingerprint)
    if properties is None and public is None:
        return
    if public is not None and not isinstance(public, bool):
        raise BadRequest("public must be True or False")
    yield UpdateImage(str(found["fingerprint"]),
                      None if properties is None else _str_map("properties", properties), public)


def delete_image(fingerprint: str) -> Flow[None]:
    found = yield GetImage(_text("image fingerprint", fingerprint))
    if found is None:
        return
    fp = str(found["fingerprint"])
    try:
        yield DeleteImage(fp)
    except CoveError:
        if (yield GetImage(fp)) is None:
            return
        raise


# -- aliases ------------------------------------------------------------------------------------

def aliases() -> Flow[list[api.ImageAliasesEntry]]:
    return [api.ImageAliasesEntry.from_wire(d) for d in (yield ListAliases()) if isinstance(d, dict)]


def alias(name: str) -> Flow[api.ImageAliasesEntry]:
    found = yield GetAlias(_text("alias", name))
    if found is None:
        raise NotFound(f"Alias not found: {name}")
    return api.ImageAliasesEntry.from_wire(found)


def _create_alias(name: str, fp: str, description: str) -> Flow[None]:
    """Alias ``name`` -> full fingerprint ``fp``, unless it is so already."""
    taken = yield GetAlias(name)
    if taken is not None:
        if str(taken.get("target")) != fp:
            raise Conflict(f"Alias {name} already names image {taken.get('target')}")
        return
    try:
        yield CreateAlias(name, fp, description)
    except CoveError:
        taken = yield GetAlias(name)
        if taken is None or str(taken.get("target")) != fp:
            raise


def create_alias(name: str, target: str, description: str) -> Flow[api.ImageAliasesEntry]:
    validate_alias_name(name)
    img = yield from _image(target)
    yield from _create_alias(name, str(img["fingerprint"]), description)
    return (yield from alias(name))


def rename_alias(name: str, new_name: str) -> Flow[None]:
    """Convergent: ``name`` gone and ``new_name`` there is done already."""
    _text("alias", name)
    validate_alias_name(new_name)
    if (yield GetAlias(name)) is None:
        if name != new_name and (yield GetAlias(new_name)) is not None:
            return
        raise NotFound(f"Alias not found: {name}")
    if name == new_name:
        return
    try:
        yield RenameAlias(name, new_name)
    except CoveError:
        if (yield GetAlias(name)) is None and (yield GetAlias(new_name)) is not None:
            return
        raise


def delete_alias(name: str) -> Flow[None]:
    if (yield GetAlias(_text("alias", name))) is None:
        return
    try:
        yield DeleteAlias(name)
    except CoveError:
        if (yield GetAlias(name)) is None:
            return
        raise


# -- networks -----------------------------------------------------------------------------------

def networks() -> Flow[list[api.Network]]:
    return [api.Network.from_wire(d) for d in (yield ListNetworks()) if isinstance(d, dict)]


def _network(name: str) -> Flow[dict[str, Any]]:
    found = yield GetNetwork(_text("network name", name))
    if found is None:
        raise NotFound(f"Network not found: {name}")
    return dict(found)


def network(name: str) -> Flow[api.Network]:
    return api.Network.from_wire((yield from _network(name)))


def network_state(name: str) -> Flow[api.NetworkState]:
    return api.NetworkState.from_wire((yield GetNetworkState(_text("network name", name))))


def network_leases(name: str) -> Flow[list[api.NetworkLease]]:
    found = yield GetNetworkLeases(_text("network name", name))
    return [api.NetworkLease.from_wire(d) for d in found or [] if isinstance(d, dict)]


def create_network(name: str, *, config: Mapping[str, Any] | None, description: str,
                   type: str) -> Flow[api.Network]:
    """Convergent: a network of that name and type is left as it is."""
    _text("network name", name)
    _text("network type", type)
    conf = _str_map("config", config)
    existing = yield GetNetwork(name)
    if existing is None:
        try:
            yield CreateNetwork(name, conf, str(description or ""), type)
        except CoveError:
            existing = yield GetNetwork(name)
            if existing is None:
                raise
    if existing is not None and str(existing.get("type") or type) != type:
        raise Conflict(f"Network {name} exists with type {existing.get('type')}, not {type}")
    return (yield from network(name))


def update_network(name: str, *, config: Mapping[str, Any] | None,
                   description: str | None) -> Flow[None]:
    """Set the given keys (a None value removes one) and the description."""
    if config is not None and not isinstance(config, Mapping):
        raise BadRequest("The config must be a mapping of strings")
    current = yield from _network(name)
    changes = dict(config or {})
    if not changes and description is None:
        return
    if not any(v is None for v in changes.values()):
        yield UpdateNetwork(name, _str_map("config", changes), description, patch=True)
        return
    new = dict(current.get("config") or {})
    for k, v in changes.items():
        if v is None:
            new.pop(str(k), None)
        else:
            new.update(_str_map("config", {k: v}))
    yield UpdateNetwork(name, new, str(current.get("description") or "")
                        if description is None else description, patch=False)


def delete_network(name: str) -> Flow[None]:
    if (yield GetNetwork(_text("network name", name))) is None:
        return
    try:
        yield DeleteNetwork(name)
    except CoveError:
        if (yield GetNetwork(name)) is None:
            return
        raise


# -- operations ---------------------------------------------------------------------------------

def operations() -> Flow[list[api.Operation]]:
    return [api.Operation.from_wire(d) for d in (yield ListOperations()) if isinstance(d, dict)]


def operation(op_id: str) -> Flow[api.Operation]:
    found = yield GetOperation(_text("operation id", op_id))
    if found is None:
        raise NotFound(f"Operation not found: {op_id}")
    return api.Operation.from_wire(found)


def wait_operation(op_id: str, timeout: float | None) -> Flow[api.Operation]:
    """The operation once it ended; its failure raised as the error it names."""
    from cove.client._rest import Operation

    _text("operation id", op_id)
    if timeout is not None and (isinstance(timeout, bool) or timeout < 0):
        raise BadRequest("timeout must be None or a number of seconds, not negative")
    found = yield WaitOperation(op_id, timeout)
    if str(found.get("status")) not in _FINAL:
        raise Timeout(f"Operation {op_id} did not end within {timeout:g}s"
                      if timeout is not None else f"Operation {op_id} did not end")
    Operation.from_dict(found).raise_for_error()
    return api.Operation.from_wire(found)


def cancel_operation(op_id: str) -> Flow[None]:
    """Convergent: an operation that ended, or is gone, is left as it is."""
    found = yield GetOperation(_text("operation id", op_id))
    if found is None or str(found.get("status")) in _FINAL:
        return
    try:
        yield CancelOperation(op_id)
    except CoveError:
        found = yield GetOperation(op_id)
        if found is None or str(found.get("status")) in _FINAL:
            return
        raise


# -- trusted certificates --------------------------------------------------------------------------

def certificates() -> Flow[list[api.Certificate]]:
    return [api.Certificate.from_wire(d) for d in (yield ListCertificates())
            if isinstance(d, dict)]


def certificate(fingerprint: str) -> Flow[api.Certificate]:
    found = yield GetCertificate(_text("certificate fingerprint", fingerprint))
    if found is None:
        raise NotFound(f"Certificate not found: {fingerprint}")
    return api.Certificate.from_wire(found)


def add_certificate(pem: str, *, name: str) -> Flow[api.Certificate]:
    """Convergent: a certificate trusted already is left as it is."""
    from cove.model import trust

    if not isinstance(pem, str | bytes):
        raise BadRequest("The certificate must be PEM text")
    der = trust.cert_der(pem)  # BadRequest for what is no certificate
    fp = trust.fingerprint(der)
    if (yield GetCertificate(fp)) is None:
        try:
            yield AddCertificate(trust.der_to_pem(der), str(name or ""))
        except CoveError:
            if (yield GetCertificate(fp)) is None:
                raise
    return (yield from certificate(fp))


def delete_certificate(fingerprint: str) -> Flow[None]:
    found = yield GetCertificate(_text("certificate fingerprint", fingerprint))
    if found is None:
        return
    fp = str(found.get("fingerprint") or fingerprint)
    try:
        yield DeleteCertificate(fp)
    except CoveError:
        if (yield GetCertificate(fp)) is None:
            return
        raise
