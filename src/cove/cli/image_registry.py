"""``cove image pull REMOTE:REF`` and ``cove image push IMAGE REMOTE:REPO:TAG``:
images from and to OCI registries (remotes of protocol ``oci``, ``cove
remote add``). coved does the transfer; the CLI names the registry, the
certificate the user accepted and the remote's credentials, and draws the
operation's progress."""

from __future__ import annotations

import argparse

from cove.cli._progress import wait
from cove.cli.context import Context, UsageError
from cove.model.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["cmd_pull", "cmd_push", "register"]

_RAW = argparse.RawDescriptionHelpFormatter


def _remote_ref(spec: str, what: str) -> tuple[Any, str]:
    from cove.cli._remotes import split_image_ref

    remote, ref = split_image_ref(spec)
    if remote is None:
        raise UsageError(f"{what} must be REMOTE:REF on a remote ('cove remote list'), "
                         f"got {spec!r}")
    return remote, ref


def cmd_pull(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client._rest import Operation
    from cove.client._wire import operation_of
    from cove.client._wire_registry import pull_image

    remote, ref = _remote_ref(args.image, "the image")
    client = ctx.client()
    req = pull_image(remote.source(ref), list(args.alias or []), bool(args.public))
    ctx.info(f"Pulling {args.image}")
    op = wait(ctx, Operation.from_dict(operation_of(client.send(req)), client), "Pulling")
    fp = str(op.metadata.get("fingerprint") or "")
    ctx.out.write(f"Image pulled with fingerprint: {fp}\n")
    return 0


def cmd_push(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client._rest import Operation
    from cove.client._wire import operation_of
    from cove.client._wire_registry import push_image

    remote, ref = _remote_ref(args.target, "the target")
    if remote.protocol != "oci":
        raise UsageError(f"remote {remote.name!r} is not an OCI registry (protocol "
                         f"{remote.protocol}): push goes to --protocol=oci remotes")
    client = ctx.client()
    image = args.image
    try:  # an alias, else a fingerprint or a prefix of one
        image = str(client.alias(image).get("target") or image)
    except NotFound:
        pass
    fp = str(client.image(image).get("fingerprint"))
    req = push_image(fp, remote.source(ref))
    ctx.info(f"Pushing {args.image} to {args.target}")
    op = wait(ctx, Operation.from_dict(operation_of(client.send(req)), client), "Pushing")
    ctx.out.write(f"Image pushed with digest: {op.metadata.get('digest') or ''}\n")
    return 0


def register(isub: Any, common: argparse.ArgumentParser) -> None:
    """``pull`` and ``push`` under ``cove image``."""
    p = isub.add_parser("pull", parents=[common], help="Pull an image from a remote",
                        description="Fetch an image from a remote image server into "
                                    "coved's store (an OCI registry's layers are kept as "
                                    "layers: an image sharing a base fetches only its "
                                    "own). A second pull of the same manifest fetches "
                                    "nothing.",
                        epilog="examples:\n"
                               "  cove remote add hub https://registry.example "
                               "--protocol=oci\n"
                               "  cove image pull hub:library/alpine:3.20 --alias alpine\n"
                               "  cove image pull hub:library/alpine@sha256:<digest>",
                        formatter_class=_RAW)
    p.add_argument("image", metavar="REMOTE:REF")
    p.add_argument("--alias", action="append", metavar="ALIAS", help="name it (repeatable)")
    p.add_argument("--public", action="store_true", help="make it public")
    p.set_defaults(func=cmd_pull)

    p = isub.add_parser("push", parents=[common], help="Push an image to an OCI registry",
                        description="Publish a local image (a pulled, imported or "
                                    "published one) to an OCI registry as OCI layers: its "
                                    "layer chain as gzip'd tar blobs, a config and a "
                                    "manifest. Blobs the registry has are not sent again.",
                        epilog="examples:\n"
                               "  cove publish web --alias web-v1\n"
                               "  cove image push web-v1 hub:me/web:1",
                        formatter_class=_RAW)
    p.add_argument("image", metavar="IMAGE", help="an alias or fingerprint")
    p.add_argument("target", metavar="REMOTE:REPO:TAG")
    p.set_defaults(func=cmd_push)
