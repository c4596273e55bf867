"""``cove file push|pull|delete``: copy files in and out of instances.

Design note: the rules follow ``lxc file``. A target that ends in ``/``, or
several sources, means "into this directory". A pushed file keeps its local
mode (``--mode`` overrides); its owner is set only with ``--uid``/``--gid``
(otherwise the server keeps the existing owner or uses root). ``-r`` copies
trees both ways, keeping modes and symlinks. ``-p`` creates missing parent
directories (0755), probing from the deepest so existing ones are never
touched.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import stat

from cove.cli.context import Context, UsageError, split_target
from cove.model.errors import CoveError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cove.client import Client

__all__ = ["register"]

_RAW = argparse.RawDescriptionHelpFormatter


def _mode_arg(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 8)
    except ValueError:
        raise UsageError(f"--mode takes an octal mode like 0644, got {text!r}") from None


def _mkdir_parents(client: Client, name: str, path: str) -> None:
    """Create ``path`` and its missing parents as directories (0755)."""
    missing: list[str] = []
    cur = posixpath.normpath(path)
    while cur not in ("/", ""):
        try:
            f = client.file_get(name, cur)
        except NotFound:
            missing.append(cur)
            cur = posixpath.dirname(cur)
            continue
        if f.type != "directory":
            raise CoveError(f"{name}{cur} exists and is not a directory")
        break
    for d in reversed(missing):
        client.file_put(name, d, type="directory", mode=0o755)


# -- push --------------------------------------------------------------------------

def _push_one(client: Client, name: str, src: str, dest: str, args: argparse.Namespace) -> None:
    uid, gid, mode = args.uid, args.gid, _mode_arg(args.mode)
    if src == "-":
        import sys

        client.file_put(name, dest, sys.stdin.buffer.read(), uid=uid, gid=gid,
                        mode=0o644 if mode is None else mode)
        return
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode) and args.recursive:
        client.file_put(name, dest, os.readlink(src).encode(), type="symlink", uid=uid, gid=gid)
        return
    st = os.stat(src)
    if stat.S_ISDIR(st.st_mode):
        if not args.recursive:
            raise UsageError(f"{src} is a directory (use -r)")
        _push_tree(client, name, src, dest, args)
        return
    with open(src, "rb") as f:
        client.file_put(name, dest, f, uid=uid, gid=gid,
                        mode=stat.S_IMODE(st.st_mode) if mode is None else mode)


def _push_tree(client: Client, name: str, src: str, dest: str, args: argparse.Namespace) -> None:
    st = os.stat(src)
    client.file_put(name, dest, type="directory", uid=args.uid, gid=args.gid,
                    mode=stat.S_IMODE(st.st_mode))
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        target = posixpath.join(dest, entry.name)
        if entry.is_symlink():
            client.file_put(name, target, os.readlink(entry.path).encode(), type="symlink",
                            uid=args.uid, gid=args.gid)
        elif entry.is_dir():
            _push_tree(client, name, entry.path, target, args)
        elif entry.is_file():
            _push_one(client, name, entry.path, target, args)
        # sockets, fifos and devices are not copied, as with lxc


def cmd_push(ctx: Context, args: argparse.Namespace) -> int:
    sources: list[str] = args.sources
    name, path = split_target(args.target)
    into_dir = path.endswith("/") or len(sources) > 1 or args.recursive
    client = ctx.client()
    if args.create_dirs:
        _mkdir_parents(client, name, path if into_dir else posixpath.dirname(path))
    for src in sources:
        base = os.path.basename(src.rstrip("/")) or src
        dest = posixpath.join(path, base) if into_dir else path
        _push_one(client, name, src, dest, args)
    return 0


# -- pull --------------------------------------------------------------------------

def _write_local(dest: str, content: bytes, mode: int) -> None:
    with open(dest, "wb") as f:
        f.write(content)
    os.chmod(dest, mode & 0o7777 or 0o644)


def _pull_one(client: Client, name: str, path: str, dest: str, recursive: bool) -> None:
    f = client.file_get(name, path)
    if f.type == "directory":
        if not recursive:
            raise UsageError(f"{name}{path} is a directory (use -r)")
        os.makedirs(dest, exist_ok=True)
        for entry in sorted(f.entries or []):
            _pull_one(client, name, posixpath.join(path, entry), os.path.join(dest, entry),
                      recursive)
        os.chmod(dest, f.mode & 0o7777 or 0o755)
    elif f.type == "symlink":
        if os.path.lexists(dest):
            os.unlink(dest)
        os.symlink(f.target, dest)
    else:
        _write_local(dest, f.content, f.mode)


def cmd_pull(ctx: Context, args: argparse.Namespace) -> int:
    dest: str = args.dest
    specs = [split_target(s) for s in args.sources]
    client = ctx.client()
    if dest == "-":
        out = ctx.binary_out()
        for name, path in specs:
            f = client.file_get(name, path)
            if f.type == "directory":
                raise UsageError(f"{name}{path} is a directory; cannot write it to stdout")
            out.write(f.content)
        out.flush()
        return 0
    if args.create_dirs:
        os.makedirs(dest if len(specs) > 1 or dest.endswith("/") else
                    os.path.dirname(dest) or ".", exist_ok=True)
    into_dir = os.path.isdir(dest) or len(specs) > 1
    for name, path in specs:
        base = posixpath.basename(path.rstrip("/")) or name
        target = os.path.join(dest, base) if into_dir else dest
        _pull_one(client, name, path, target, args.recursive)
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    for spec in args.paths:
        name, path = split_target(spec)
        client.file_delete(name, path)
    return 0


# -- parsers -----------------------------------------------------------------------

def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("file", parents=[common], help="Copy files in and out of instances",
                           description="Copy files in and out of instances.",
                           epilog="commands:\n  push, pull, delete\n\n"
                                  "Run 'cove file COMMAND --help' for examples.",
                           formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    fsub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = fsub.add_parser("push", parents=[common], help="Copy local files into an instance",
                        description="Copy local files into an instance.",
                        epilog="examples:\n"
                               "  cove file push app.conf c1/etc/app.conf\n"
                               "  cove file push a.txt b.txt c1/root/         into /root/\n"
                               "  cove file push -p run.sh c1/opt/app/ --mode 0755\n"
                               "  cove file push -r ./site c1/srv/            makes /srv/site\n"
                               "  echo hi | cove file push - c1/tmp/hi        from stdin",
                        formatter_class=_RAW)
    p.add_argument("sources", metavar="SOURCE", nargs="+", help="local files ('-': stdin)")
    p.add_argument("target", metavar="NAME/PATH", help="instance and path (a dir if ends in /)")
    p.add_argument("-r", "--recursive", action="store_true", help="copy directories")
    p.add_argument("-p", "--create-dirs", action="store_true",
                   help="create missing parent directories")
    p.add_argument("--mode", metavar="MODE", help="octal mode (default: the local file's)")
    p.add_argument("--uid", type=int, metavar="UID", help="owner uid inside the instance")
    p.add_argument("--gid", type=int, metavar="GID", help="owner gid inside the instance")
    p.set_defaults(func=cmd_push)

    p = fsub.add_parser("pull", parents=[common], help="Copy files out of an instance",
                        description="Copy files out of an instance.",
                        epilog="examples:\n"
                               "  cove file pull c1/etc/hosts .\n"
                               "  cove file pull c1/etc/hosts ./hosts.c1\n"
                               "  cove file pull -r c1/etc/app ./backup/      makes ./backup/app\n"
                               "  cove file pull c1/etc/os-release -          to stdout",
                        formatter_class=_RAW)
    p.add_argument("sources", metavar="NAME/PATH", nargs="+", help="instance and path")
    p.add_argument("dest", metavar="DESTINATION", help="local file or directory ('-': stdout)")
    p.add_argument("-r", "--recursive", action="store_true", help="copy directories")
    p.add_argument("-p", "--create-dirs", action="store_true",
                   help="create missing local directories")
    p.set_defaults(func=cmd_pull)

    p = fsub.add_parser("delete", aliases=["rm"], parents=[common],
                        help="Delete files in an instance",
                        description="Delete files (or empty directories) in an instance.",
                        epilog="examples:\n  cove file delete c1/tmp/scratch.txt",
                        formatter_class=_RAW)
    p.add_argument("paths", metavar="NAME/PATH", nargs="+")
    p.set_defaults(func=cmd_delete)
