"""Requests of OCI registry pulls and pushes: ``POST /1.0/images`` with
``source {type: image, mode: pull, protocol: oci, server, alias, ...}``
(LXD's pull, Incus' ``instance_oci`` protocol) and cove's ``POST
/1.0/images/FP/push``. Standard library only, no ``typing`` at run time:
the CLI imports it.
"""

from __future__ import annotations

from cove.client._wire import Request, q

__all__ = ["pull_image", "push_image"]


def pull_image(source: dict[str, str], aliases: list[str] | tuple[str, ...] = (),
               public: bool = False) -> Request:
    """``source``: LXD's image source on a remote (``Remote.source``)."""
    body: dict[str, object] = {"source": {**source, "mode": "pull"},
                               "aliases": [{"name": a} for a in aliases]}
    if public:
        body["public"] = True
    return Request("POST", "/1.0/images", body)


def push_image(fingerprint: str, target: dict[str, str]) -> Request:
    """``target``: ``server``, ``alias`` (REPO:TAG), ``certificate``, ``secret``."""
    keep = ("server", "alias", "certificate", "secret")
    return Request("POST", f"/1.0/images/{q(fingerprint)}/push",
                   {"target": {k: v for k, v in target.items() if k in keep and v}})
