"""``cove publish NAME[/SNAP] [--alias X] [--public] [KEY=VALUE ...]`` and
``cove image export IMAGE [DIR]``.

The same calls as ``lxc publish`` and ``lxc image export``. A published
image is the instance's own files (its upper layer, copied with a running
instance frozen) stacked on its image's layers, which are shared, not
copied; its export is LXD's unified tarball with the layers flattened, or
the very file(s) an imported image came from (two for a split image).
"""

from __future__ import annotations

import argparse
import os

from cove.cli._progress import wait
from cove.cli.context import Context
from cove.model.errors import BadRequest, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["cmd_export", "register"]

_RAW = argparse.RawDescriptionHelpFormatter


def _rest(args: argparse.Namespace) -> tuple[list[str], bool, dict[str, str]]:
    """Aliases, public and properties from the options and from the words
    after the name, in any order (``lxc publish`` takes them so)."""
    aliases, public, props = list(args.alias or []), bool(args.public), {}
    words = list(args.rest)
    while words:
        word = words.pop(0)
        if word == "--public":
            public = True
        elif word == "--alias":
            if not words:
                raise BadRequest("--alias needs a name")
            aliases.append(words.pop(0))
        elif word.startswith("--alias="):
            aliases.append(word.partition("=")[2])
        else:
            key, eq, value = word.partition("=")
            if not eq or not key or key.startswith("-"):
                raise BadRequest(f"Bad property {word!r}: use KEY=VALUE")
            props[key] = value
    return aliases, public, props


def cmd_publish(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client import _wire_publish as wpub
    from cove.client._rest import Operation
    from cove.client._wire import operation_of

    aliases, public, props = _rest(args)
    client = ctx.client()
    req = wpub.publish(args.source, aliases, props, public)
    ctx.info(f"Publishing {args.source}")
    op = wait(ctx, Operation.from_dict(operation_of(client.send(req)), client), "Publishing")
    fp = str(op.metadata.get("fingerprint") or "")
    ctx.out.write(f"Instance published with fingerprint: {fp}\n")
    return 0


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    """Streamed into the file(s), never held whole."""
    from cove.client import _wire_publish as wpub
    from cove.client._http import Response, parse_envelope

    directory = args.dir or "."
    if not os.path.isdir(directory):
        raise BadRequest(f"{directory!r} is not a directory")
    client = ctx.client()
    ref = args.image
    try:  # an alias, else a fingerprint or a prefix of one
        ref = str(client.alias(ref).get("target") or ref)
    except NotFound:
        pass
    fp = str(client.image(ref).get("fingerprint"))
    req = wpub.export_image(fp)
    with client.transport.stream(req.method, req.path) as resp:
        if resp.status != 200:
            parse_envelope(Response(resp.status, resp.headers, resp.read()))
        written = wpub.write_export(resp, resp.headers, fp, directory)
    for path in written:
        ctx.info(f"Image exported to {path}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("publish", parents=[common], help="Make an image of an instance",
                       description=__doc__,
                       epilog="examples:\n"
                              "  cove publish web --alias web-image\n"
                              "  cove publish web/snap0 --alias web-v1 --public\n"
                              "  cove publish web description='my web server'",
                       formatter_class=_RAW)
    p.add_argument("source", metavar="NAME[/SNAPSHOT]")
    p.add_argument("--alias", action="append", metavar="ALIAS", help="name it (repeatable)")
    p.add_argument("--public", action="store_true", help="make it public")
    p.add_argument("rest", metavar="KEY=VALUE", nargs=argparse.REMAINDER,
                   help="image properties (over the parent image's); the options may "
                        "come among them")
    p.set_defaults(func=cmd_publish)
