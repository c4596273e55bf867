"""``cove query [-X METHOD] [-d DATA] [--wait] PATH``: one raw API request, as
``lxc query`` does it.

It prints the ``metadata`` of the answer as indented JSON; with ``--wait``
an answer that is an operation is waited for and the operation's metadata
printed instead. Errors are the usual ``Error: <message>`` (exit 1). This is
what ``cove.client.CliDriver`` reads and writes through, since it is the one
command that takes and prints the API's own JSON.
"""

from __future__ import annotations

import argparse
import json

from cove.cli.context import Context, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["register"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def cmd_query(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client._http import parse_envelope

    method = args.request.upper()
    if method not in _METHODS:
        raise UsageError(f"unknown method {args.request!r}: use one of {', '.join(_METHODS)}")
    path = args.path
    if not path.startswith("/"):
        raise UsageError(f"the API path must start with '/': {path!r}")
    body: Any = None
    if args.data is not None:
        try:
            body = json.loads(args.data)
        except ValueError as e:
            raise UsageError(f"--data is not JSON: {e}") from None
    client = ctx.client()
    env = parse_envelope(client.raw(method, path, body))
    metadata = env.get("metadata")
    if args.wait and env.get("type") == "async" and isinstance(metadata, dict):
        op = client.wait_operation(str(metadata.get("id", "")))
        metadata = op.metadata or None
    if args.raw:
        ctx.out.write(json.dumps(env, indent="\t") + "\n")
    elif metadata is not None:
        ctx.out.write(json.dumps(metadata, indent="\t") + "\n")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("query", parents=[common], help="Send a raw API request",
                       description="Send one request to coved's API and print the answer's "
                                   "metadata as JSON (as 'lxc query' does).",
                       epilog="examples:\n"
                              "  cove query /1.0\n"
                              "  cove query '/1.0/instances?recursion=1'\n"
                              "  cove query -X PATCH -d '{\"config\": {\"limits.cpu\": \"1\"}}' "
                              "/1.0/instances/c1\n"
                              "  cove query -X DELETE --wait /1.0/instances/c1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", metavar="PATH", help="API path, e.g. /1.0/instances")
    p.add_argument("-X", "--request", default="GET", metavar="METHOD",
                   help="HTTP method (default GET)")
    p.add_argument("-d", "--data", metavar="JSON", help="request body")
    p.add_argument("--wait", action="store_true",
                   help="wait for an operation to end and print its metadata")
    p.add_argument("--raw", action="store_true", help="print the whole answer")
    p.set_defaults(func=cmd_query)
