"""``cove image copy REMOTE:IMAGE [local:] [--alias A] [--auto-update] [--public]``.

``lxc image copy``'s call: ``POST /1.0/images`` with LXD's pull source
(``{type: image, mode: pull, server, protocol, alias|fingerprint,
certificate}``, from the remote's entry: ``cove remote``); coved fetches the
image itself and the CLI draws the operation's progress. The image is not
``cached`` (it was asked for, so it never expires); ``--auto-update``
refreshes it from its source every ``images.auto_update_interval`` hours.
"""

from __future__ import annotations

import argparse

from cove.cli._progress import wait
from cove.cli.context import Context, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["cmd_copy", "register"]


def cmd_copy(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli._remotes import split_image_ref
    from cove.client._rest import Operation
    from cove.client._wire import Request, operation_of

    remote, ref = split_image_ref(args.source)
    if remote is None:
        raise UsageError(f"{args.source!r} names no remote: copy from REMOTE:IMAGE "
                         "(see 'cove remote list')")
    if args.target not in ("local:", "local", ""):
        raise UsageError(f"cove copies images into the local store only, not {args.target!r}")
    body: dict[str, Any] = {"source": {**remote.source(ref), "mode": "pull"},
                            "aliases": [{"name": a, "description": ""} for a in args.alias or []],
                            "auto_update": bool(args.auto_update), "public": bool(args.public)}
    client = ctx.client()
    ctx.info(f"Copying {args.source}")
    op = Operation.from_dict(operation_of(client.send(Request("POST", "/1.0/images", body))),
                             client)
    op = wait(ctx, op, "Copying image")
    fp = str(op.metadata.get("fingerprint") or "")
    ctx.out.write(f"Image copied successfully: {fp}\n")
    return 0


def register(isub: Any, common: argparse.ArgumentParser) -> None:
    """``image copy``, under ``cove image``'s subcommands ``isub``."""
    p = isub.add_parser("copy", aliases=["cp"], parents=[common],
                        help="Copy an image from a remote image server",
                        description=__doc__,
                        epilog="examples:\n"
                               "  cove remote add images https://images.example "
                               "--protocol simplestreams\n"
                               "  cove image copy images:debian/12 local: --alias deb12\n"
                               "  cove image copy lxdhost:busybox --auto-update",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="REMOTE:IMAGE")
    p.add_argument("target", metavar="local:", nargs="?", default="local:")
    p.add_argument("--alias", action="append", metavar="ALIAS", help="name it (repeatable)")
    p.add_argument("--auto-update", action="store_true",
                   help="refresh it from its source (images.auto_update_interval)")
    p.add_argument("--public", action="store_true", help="make it public")
    p.set_defaults(func=cmd_copy)
