"""``cove copy SRC[/SNAP] DST``, ``cove move OLD NEW``, ``cove rebuild NAME [IMAGE]``.

The same calls as ``lxc copy``, ``lxc move`` (on one host: a rename) and
``lxc rebuild``. A copy lies on the same image as its source with a copy
of its own files, its config (but its ``volatile.*`` keys: a new MAC and
addresses), devices, profiles and snapshots; a running source is frozen
while its files are copied. A rebuild gives a stopped instance a new, empty
root filesystem from an image (or none with ``--empty``), keeping its name,
config, devices and snapshots.
"""

from __future__ import annotations

import argparse

from cove.cli._progress import wait
from cove.cli.context import Context, UsageError, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["register"]

_RAW = argparse.RawDescriptionHelpFormatter


def cmd_copy(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client import _wire_copies as wcopy

    if args.no_profiles and args.profile:
        raise UsageError("--no-profiles and --profile exclude each other")
    if args.instance_only and "/" in args.source:
        raise UsageError("--instance-only cannot be passed when the source is a snapshot")
    config = parse_kv(args.config, "KEY=VALUE for -c")
    profiles = [] if args.no_profiles else (args.profile or None)
    ctx.info(f"Copying {args.source} to {args.target}")
    wait(ctx, ctx.client().send_op(wcopy.copy_instance(
        args.source, args.target, instance_only=args.instance_only, profiles=profiles,
        config=config)), "Copying")
    return 0


def cmd_move(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().rename_instance(args.old, args.new).wait()
    return 0


def cmd_rebuild(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client import _wire_copies as wcopy

    if bool(args.image) == bool(args.empty):
        raise UsageError("give an IMAGE or --empty")
    wait(ctx, ctx.client().send_op(wcopy.rebuild_instance(args.name, args.image or "")),
         "Rebuilding")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("copy", aliases=["cp"], parents=[common],
                       help="Copy an instance or a snapshot to a new instance",
                       description=__doc__, formatter_class=_RAW,
                       epilog="examples:\n  cove copy c1 c2\n"
                              "  cove copy c1/snap0 c3          from a snapshot\n"
                              "  cove copy c1 c4 --instance-only -c user.role=test")
    p.add_argument("source", metavar="SRC", help="an instance, or INSTANCE/SNAPSHOT")
    p.add_argument("target", metavar="DST")
    p.add_argument("--instance-only", action="store_true",
                   help="without the source's snapshots")
    p.add_argument("-c", "--config", action="append", metavar="KEY=VALUE",
                   help="a config key over the source's (repeatable)")
    p.add_argument("--profile", action="append", metavar="PROFILE",
                   help="instead of the source's profiles (repeatable)")
    p.add_argument("--no-profiles", action="store_true", help="no profile at all")
    p.set_defaults(func=cmd_copy)

    p = sub.add_parser("move", aliases=["mv"], parents=[common],
                       help="Rename a stopped instance (lxc move on one host)",
                       formatter_class=_RAW, epilog="examples:\n  cove move c1 web1")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.set_defaults(func=cmd_move)

    p = sub.add_parser("rebuild", parents=[common],
                       help="Give a stopped instance a new root filesystem",
                       formatter_class=_RAW,
                       epilog="examples:\n  cove rebuild c1 busybox\n"
                              "  cove rebuild c1 --empty   an empty root filesystem")
    p.add_argument("name", metavar="NAME")
    p.add_argument("image", metavar="IMAGE", nargs="?", help="an alias or a fingerprint")
    p.add_argument("--empty", action="store_true", help="no image: an empty root filesystem")
    p.set_defaults(func=cmd_rebuild)
