"""``cove snapshot create|list|restore|delete|rename NAME [SNAP]``.

The same calls as ``lxc snapshot``, ``lxc restore`` and ``lxc delete
NAME/SNAP``. A snapshot is a copy of the instance's own files (its upper
layer; the image is shared) with its config; a snapshot of a running
instance is taken with it frozen for the copy. Restoring a running instance
stops it, restores and starts it again.
"""

from __future__ import annotations

import argparse

from cove.cli import render
from cove.cli._progress import wait
from cove.cli.context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HEADERS", "register", "snapshot_lines"]

_RAW = argparse.RawDescriptionHelpFormatter
HEADERS = ("NAME", "TAKEN AT", "EXPIRES AT", "SIZE")
_ZERO = "0001-01-01T00:00:00Z"


def _expiry(snap: dict[str, Any]) -> str:
    value = snap.get("expires_at") or _ZERO
    return "" if str(value).startswith("0001-01-01") else render.timestamp(value)


def _rows(snaps: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(s.get("name", "")), render.timestamp(s.get("created_at")), _expiry(s),
             render.bytes_si(int(s.get("size") or 0))] for s in snaps]


def snapshot_lines(snaps: list[dict[str, Any]]) -> list[str]:
    """The ``Snapshots:`` part of ``cove info`` (empty without snapshots)."""
    if not snaps:
        return []
    return ["", "Snapshots:"] + [
        f"  {name} (taken at {taken}{', expires at ' + exp if exp else ''}, {size})"
        for name, taken, exp, size in _rows(snaps)]


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    op = wait(ctx, ctx.client().create_snapshot(args.name, args.snap or ""), "Snapshotting")
    made = (op.resources.get("instances_snapshots") or [""])[0].rsplit("/", 1)[-1]
    ctx.info(f"Snapshot {made or args.snap} of {args.name} taken")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    snaps = ctx.client().snapshots(args.name)
    ctx.out.write(render.render(args.format, HEADERS, _rows(snaps), snaps))
    return 0


def cmd_restore(ctx: Context, args: argparse.Namespace) -> int:
    wait(ctx, ctx.client().restore_snapshot(args.name, args.snap), "Restoring")
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    for snap in args.snaps:
        client.delete_snapshot(args.name, snap).wait()
    return 0


def cmd_rename(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().rename_snapshot(args.name, args.snap, args.new).wait()
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    top = sub.add_parser("snapshot", parents=[common], help="Take, list, restore, delete snapshots",
                         description=__doc__, formatter_class=_RAW,
                         epilog="examples:\n  cove snapshot create c1 before-upgrade\n"
                                "  cove snapshot list c1\n"
                                "  cove snapshot restore c1 before-upgrade")
    words = top.add_subparsers(title="commands", metavar="COMMAND", required=True)
    p = words.add_parser("create", parents=[common], help="Take a snapshot",
                         epilog="examples:\n  cove snapshot create c1\n"
                                "  cove snapshot create c1 before-upgrade",
                         formatter_class=_RAW)
    p.add_argument("name")
    p.add_argument("snap", nargs="?", help="its name (default: snapshots.pattern, snap%%d)")
    p.set_defaults(func=cmd_create)
    p = words.add_parser("list", aliases=["ls"], parents=[common],
                         help="List an instance's snapshots", formatter_class=_RAW,
                         epilog="examples:\n  cove snapshot list c1\n"
                                "  cove snapshot list c1 --format json")
    p.add_argument("name")
    p.add_argument("-f", "--format", default="table", choices=render.FORMATS)
    p.set_defaults(func=cmd_list)
    p = words.add_parser("restore", parents=[common],
                         help="Put the instance back to a snapshot", formatter_class=_RAW,
                         epilog="examples:\n  cove snapshot restore c1 snap0   "
                                "(a running c1 is stopped and started again)")
    p.add_argument("name")
    p.add_argument("snap")
    p.set_defaults(func=cmd_restore)
    p = words.add_parser("delete", aliases=["rm"], parents=[common], help="Delete snapshots",
                         formatter_class=_RAW,
                         epilog="examples:\n  cove snapshot delete c1 snap0 snap1")
    p.add_argument("name")
    p.add_argument("snaps", nargs="+", metavar="snap")
    p.set_defaults(func=cmd_delete)
    p = words.add_parser("rename", parents=[common], help="Rename a snapshot",
                         formatter_class=_RAW,
                         epilog="examples:\n  cove snapshot rename c1 snap0 before-upgrade")
    p.add_argument("name")
    p.add_argument("snap")
    p.add_argument("new")
    p.set_defaults(func=cmd_rename)
