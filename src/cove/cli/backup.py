"""``cove export NAME [FILE]``, ``cove import FILE [NAME]`` and ``cove
backup list|delete|rename NAME ...``.

The same calls as ``lxc export`` and ``lxc import``: a backup is LXD's
tarball (``backup/index.yaml``, the instance's whole root filesystem and
each snapshot's), so one made by cove imports into LXD and one made by LXD
imports into cove. ``cove export`` makes a backup on the server, downloads
it and deletes it (``--keep NAME``: keeps it); ``cove backup`` manages
backups kept on the server. ``--since B`` (cove's own) exports only what
changed since the kept backup B; importing it into the instance restored
from B brings that instance up to date (a chain: base, then each increment
in order).
An imported instance is stopped; it has no image (its whole root
filesystem is its own).
"""

from __future__ import annotations

import argparse
import os

from cove.cli import render
from cove.cli.context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["register"]

_RAW = argparse.RawDescriptionHelpFormatter
HEADERS = ("NAME", "TAKEN AT", "EXPIRES AT", "INSTANCE ONLY")


def _progress(ctx: Context, label: str) -> Any:
    if ctx.quiet or not ctx.err.isatty():
        return None
    from cove.cli.images import Progress

    return Progress(ctx.err, label)


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli._progress import wait
    from cove.client import _backups

    target = args.file or "backup.tar.gz"  # lxc's default
    client = ctx.client()
    ctx.info(f"Backing up {args.name}")
    tmp = f"{target}.part"
    progress = _progress(ctx, "Exporting the backup")
    try:
        with open(tmp, "wb") as out:
            n = _backups.export_instance(client, args.name, out,
                                         instance_only=args.instance_only,
                                         compression=args.compression or "",
                                         since=args.since or "", keep=args.keep or "",
                                         progress=progress,
                                         wait=lambda op: wait(ctx, op, "Backing up"))
        os.replace(tmp, target)  # a whole file or none under the name asked for
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        if progress is not None:
            progress.done()
    ctx.info(f"Backup exported to {target} ({render.bytes_si(n)})")
    return 0


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli._progress import wait
    from cove.client import _backups

    client = ctx.client()
    progress = _progress(ctx, "Uploading the backup")
    try:
        op = _backups.import_backup(client, args.file, args.name or "", args.storage or "",
                                    progress=progress)
    finally:
        if progress is not None:
            progress.done()
    wait(ctx, op, "Importing")
    made = (op.resources.get("instances") or [""])[0].split("?")[0].rsplit("/", 1)[-1]
    ctx.info(f"Instance {made or args.name} imported")
    return 0


def _expiry(b: dict[str, Any]) -> str:
    value = str(b.get("expires_at") or "")
    return "" if not value or value.startswith("0001-01-01") else render.timestamp(value)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client import _backups

    items = _backups.backups(ctx.client(), args.name)
    rows = [[str(b.get("name", "")), render.timestamp(b.get("created_at")), _expiry(b),
             "yes" if b.get("instance_only") else "no"] for b in items]
    ctx.out.write(render.render(args.format, HEADERS, rows, items))
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client import _backups

    client = ctx.client()
    for b in args.backups:
        _backups.delete_backup(client, args.name, b).wait()
    return 0


def cmd_rename(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client import _backups

    _backups.rename_backup(ctx.client(), args.name, args.backup, args.new).wait()
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="Back up an instance into a tarball",
                       description=__doc__, formatter_class=_RAW,
                       epilog="examples:\n  cove export c1                 (backup.tar.gz)\n"
                              "  cove export c1 c1.tar.gz --instance-only\n"
                              "  cove export c1 c1.tar --compression none\n"
                              "  cove export c1 base.tar.gz --keep b0\n"
                              "  cove export c1 incr1.tar.gz --since b0 --keep b1\n"
                              "  (restore: cove import base.tar.gz c2; cove import incr1.tar.gz c2)")
    p.add_argument("name")
    p.add_argument("file", nargs="?", help="where to write it (default: backup.tar.gz)")
    p.add_argument("--instance-only", action="store_true",
                   help="without the instance's snapshots")
    p.add_argument("--compression", choices=("none", "gzip", "bzip2", "xz"),
                   help="the tarball's compression (default: gzip)")
    p.add_argument("--optimized-storage", action="store_true",
                   help="accepted for lxc's sake; cove's storage has no optimized format")
    p.add_argument("--keep", metavar="BACKUP",
                   help="keep the backup on the server under this name (a base for --since)")
    p.add_argument("--since", metavar="BACKUP",
                   help="only what changed since that kept backup (cove's own; no "
                        "snapshots); import the base, then each increment in order")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", parents=[common], help="Make an instance from a backup tarball",
                       description=__doc__, formatter_class=_RAW,
                       epilog="examples:\n  cove import backup.tar.gz\n"
                              "  cove import c1.tar.gz c2     (under another name)")
    p.add_argument("file")
    p.add_argument("name", nargs="?", help="the new instance's name (default: the backup's)")
    p.add_argument("-s", "--storage", help="the storage pool (cove has one: default)")
    p.set_defaults(func=cmd_import)

    top = sub.add_parser("backup", parents=[common], help="List, delete, rename kept backups",
                         description=__doc__, formatter_class=_RAW,
                         epilog="examples:\n  cove backup list c1\n  cove backup delete c1 b0")
    words = top.add_subparsers(title="commands", metavar="COMMAND", required=True)
    p = words.add_parser("list", aliases=["ls"], parents=[common],
                         help="List an instance's backups", formatter_class=_RAW,
                         epilog="examples:\n  cove backup list c1\n"
                                "  cove backup list c1 --format json")
    p.add_argument("name")
    p.add_argument("-f", "--format", default="table", choices=render.FORMATS)
    p.set_defaults(func=cmd_list)
    p = words.add_parser("delete", aliases=["rm"], parents=[common], help="Delete backups",
                         formatter_class=_RAW,
                         epilog="examples:\n  cove backup delete c1 backup0 backup1")
    p.add_argument("name")
    p.add_argument("backups", nargs="+", metavar="backup")
    p.set_defaults(func=cmd_delete)
    p = words.add_parser("rename", parents=[common], help="Rename a backup",
                         formatter_class=_RAW,
                         epilog="examples:\n  cove backup rename c1 backup0 before-upgrade")
    p.add_argument("name")
    p.add_argument("backup")
    p.add_argument("new")
    p.set_defaults(func=cmd_rename)
