"""``cove image import|list|delete|export|alias``: the image store."""

from __future__ import annotations

import argparse
import os
import time

from cove.cli import render
from cove.cli.context import Context
from cove.model.errors import CoveError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TextIO

    from cove.client import Client

__all__ = ["Progress", "alias_rows", "image_rows", "register"]

_RAW = argparse.RawDescriptionHelpFormatter

IMAGE_HEADERS = ("ALIAS", "FINGERPRINT", "PUBLIC", "DESCRIPTION", "ARCHITECTURE", "SIZE",
                 "UPLOAD DATE")
ALIAS_HEADERS = ("ALIAS", "FINGERPRINT", "DESCRIPTION")


class Progress:
    """``Uploading image: 42% (12.50MiB/s)`` redrawn on one line, at most 10 times a second."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, sent: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or sent < total):
            return
        self._last = now
        rate = sent / max(now - self.started, 1e-6)
        pct = f"{sent * 100 // total}% " if total else f"{render.bytes_iec(sent)} "
        self.stream.write(f"\r\033[K{self.label}: {pct}({render.bytes_iec(rate)}/s)")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()


def _tar_directory(path: str) -> BinaryIO:
    """A rootfs directory as a plain (uncompressed) tarball in a temp file.

    Entries are sorted and owners kept, so the same tree gives the same bytes
    (and so the same fingerprint) except for mtimes, which are part of the tree.
    """
    import tarfile
    import tempfile

    out = tempfile.TemporaryFile(prefix="cove-image-")  # noqa: SIM115 - returned open
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for entry in sorted(dirnames + filenames):
                full = os.path.join(dirpath, entry)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, path))
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                elif info.isdir() or info.issym() or info.islnk() or info.isfifo():
                    tar.addfile(info)
    out.seek(0)
    return out


def _import_oci(ctx: Context, args: argparse.Namespace) -> int:
    """``cove image import DIR`` of an OCI image layout: packed, uploaded,
    unpacked by coved with a progress bar (layers, bytes)."""
    from cove.cli._progress import wait
    from cove.client._oci import pack_layout, upload_layout

    client = ctx.client()
    body = pack_layout(args.file)
    progress = Progress(ctx.err, "Uploading image") \
        if not ctx.quiet and ctx.err.isatty() else None
    try:
        op = upload_layout(client, body, ref=args.ref, public=args.public,
                           filename=os.path.basename(os.path.normpath(args.file)),
                           progress=progress)
    finally:
        if progress is not None:
            progress.done()
        body.close()
    op = wait(ctx, op, "Unpacking layers")  # raises what the import failed with
    fp = str(op.metadata.get("fingerprint") or "")
    for alias in args.alias or []:
        client.create_alias(alias, fp)
    ctx.out.write(f"Image imported with fingerprint: {fp}\n")
    return 0


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client._oci import is_oci_layout

    if is_oci_layout(args.file):
        return _import_oci(ctx, args)
    if args.ref:
        raise CoveError("--ref is for an OCI image layout directory")
    client = ctx.client()
    progress = None
    if not ctx.quiet and ctx.err.isatty():
        progress = Progress(ctx.err, "Uploading image")
    source: str | BinaryIO = args.file
    filename = None
    if os.path.isdir(args.file):
        # A rootfs directory: packed here, uploaded as a plain rootfs tarball.
        source = _tar_directory(args.file)
        filename = os.path.basename(os.path.normpath(args.file)) + ".tar"
    try:
        fp = client.import_image(source, aliases=args.alias or [], public=args.public,
                                 filename=filename, progress=progress)
    finally:
        if progress is not None:
            progress.done()
        if not isinstance(source, str):
            source.close()
    ctx.out.write(f"Image imported with fingerprint: {fp}\n")
    return 0


def image_rows(imgs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for img in imgs:
        props = img.get("properties") or {}
        rows.append([
            "\n".join(str(a.get("name", "")) for a in img.get("aliases") or []),
            str(img.get("fingerprint", ""))[:12],
            "yes" if img.get("public") else "no",
            str(props.get("description", "")),
            str(img.get("architecture", "")),
            render.bytes_iec(img.get("size") or 0),
            render.timestamp(img.get("uploaded_at")),
        ])
    return rows


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    imgs = ctx.client().images()
    if args.filters:
        def matches(img: dict[str, Any]) -> bool:
            names = [str(a.get("name", "")) for a in img.get("aliases") or []]
            fp = str(img.get("fingerprint", ""))
            return any(fp.startswith(f) or any(n.startswith(f) for n in names)
                       for f in args.filters)
        imgs = [i for i in imgs if matches(i)]
    imgs.sort(key=lambda i: (str((i.get("aliases") or [{}])[0].get("name", "~")),
                             str(i.get("fingerprint", ""))))
    ctx.out.write(render.render(args.format, IMAGE_HEADERS, image_rows(imgs), imgs))
    return 0


def resolve_image(client: Client, ref: str) -> str:
    """An alias's target, or ``ref`` itself (a fingerprint or its prefix)."""
    try:
        return str(client.alias(ref).get("target") or ref)
    except NotFound:
        return ref


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    failed = 0
    for ref in args.refs:
        try:
            client.delete_image(resolve_image(client, ref)).wait()
        except CoveError as e:
            failed += 1
            prefix = f"{ref}: " if len(args.refs) > 1 else ""
            ctx.err.write(f"Error: {prefix}{e}\n")
    return 1 if failed else 0


def alias_rows(aliases: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(a.get("name", "")), str(a.get("target", ""))[:12],
             str(a.get("description", ""))] for a in aliases]


def cmd_alias_list(ctx: Context, args: argparse.Namespace) -> int:
    aliases = sorted(ctx.client().aliases(), key=lambda a: str(a.get("name", "")))
    ctx.out.write(render.render(args.format, ALIAS_HEADERS, alias_rows(aliases), aliases))
    return 0


def cmd_alias_create(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    target = args.target
    if len(target) < 64:  # a prefix: the server's image record has the full one
        target = str(client.image(target).get("fingerprint") or target)
    client.create_alias(args.alias, target, args.description or "")
    return 0


def cmd_alias_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    for alias in args.aliases:
        client.delete_alias(alias)
    return 0


def cmd_alias_rename(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().rename_alias(args.old, args.new)
    return 0


def _export(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli.publish import cmd_export
    return cmd_export(ctx, args)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("image", parents=[common], help="Manage images",
                           description="Import, list and delete images, and name them "
                                       "with aliases.",
                           epilog="commands:\n  import, copy, pull, push, list, delete, export, "
                                  "alias\n\n"
                                  "Run 'cove image COMMAND --help' for examples.",
                           formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    isub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = isub.add_parser("import", parents=[common], help="Import an image tarball",
                        description="Upload an image tarball (a root filesystem, or LXD's "
                                    "unified image format), a root filesystem directory, "
                                    "or a directory holding an OCI image layout (its "
                                    "layers stored once each), and name it.",
                        epilog="examples:\n"
                               "  cove image import busybox.tar.gz --alias busybox\n"
                               "  cove image import rootfs.tar --alias app --alias app/1.2\n"
                               "  cove image import ./alpine-oci --ref 3.20 --alias alpine",
                        formatter_class=_RAW)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--ref", metavar="REF",
                   help="the image of an OCI layout to import (its ref.name annotation "
                        "or manifest digest); needed when the layout holds several")
    p.add_argument("--alias", action="append", metavar="ALIAS", help="name it (repeatable)")
    p.add_argument("--public", action="store_true", help="make it public")
    p.set_defaults(func=cmd_import)

    p = isub.add_parser("list", aliases=["ls"], parents=[common], help="List images",
                        description="List images: ALIAS, FINGERPRINT, PUBLIC, DESCRIPTION, "
                                    "ARCHITECTURE, SIZE, UPLOAD DATE.",
                        epilog="examples:\n  cove image list\n  cove image list busy\n"
                               "  cove image list --format json",
                        formatter_class=_RAW)
    p.add_argument("filters", metavar="PREFIX", nargs="*",
                   help="aliases or fingerprints starting so")
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_list)

    p = isub.add_parser("delete", aliases=["rm"], parents=[common], help="Delete images",
                        description="Delete images, named by alias or fingerprint (prefix).",
                        epilog="examples:\n  cove image delete busybox\n"
                               "  cove image delete 3f2a9c81d0e4",
                        formatter_class=_RAW)
    p.add_argument("refs", metavar="IMAGE", nargs="+")
    p.set_defaults(func=cmd_delete)

    from cove.cli import image_copy
    image_copy.register(isub, common)  # cove image copy REMOTE:IMAGE local:

    p = isub.add_parser("export", parents=[common], help="Export an image to files",
                        description="Write an image as LXD's image file(s) into DIR (default: "
                                    "here): the file it was imported from, or a tarball of its "
                                    "layers flattened; two files for a split image.",
                        epilog="examples:\n  cove image export busybox\n"
                               "  cove image export 3f2a9c81d0e4 /tmp",
                        formatter_class=_RAW)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("dir", metavar="DIR", nargs="?")
    p.set_defaults(func=_export)

    alias = isub.add_parser("alias", parents=[common], help="Manage image aliases",
                            description="Create, delete, list and rename image aliases.",
                            epilog="examples:\n"
                                   "  cove image alias create busybox 3f2a9c81d0e4\n"
                                   "  cove image alias list\n"
                                   "  cove image alias rename busybox bb\n"
                                   "  cove image alias delete bb",
                            formatter_class=_RAW)
    alias.set_defaults(help_parser=alias)
    asub = alias.add_subparsers(title="commands", metavar="COMMAND")
    p = asub.add_parser("create", parents=[common], help="Name an image",
                        description="Create an alias for an image.",
                        epilog="examples:\n  cove image alias create busybox 3f2a9c81d0e4",
                        formatter_class=_RAW)
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("target", metavar="FINGERPRINT")
    p.add_argument("--description", metavar="TEXT")
    p.set_defaults(func=cmd_alias_create)
    p = asub.add_parser("delete", aliases=["rm"], parents=[common], help="Delete aliases",
                        description="Delete aliases (the images stay).",
                        epilog="examples:\n  cove image alias delete busybox",
                        formatter_class=_RAW)
    p.add_argument("aliases", metavar="ALIAS", nargs="+")
    p.set_defaults(func=cmd_alias_delete)
    p = asub.add_parser("list", aliases=["ls"], parents=[common], help="List aliases",
                        description="List aliases: ALIAS, FINGERPRINT, DESCRIPTION.",
                        epilog="examples:\n  cove image alias list\n"
                               "  cove image alias list --format csv",
                        formatter_class=_RAW)
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_alias_list)
    p = asub.add_parser("rename", parents=[common], help="Rename an alias",
                        description="Rename an alias.",
                        epilog="examples:\n  cove image alias rename busybox bb",
                        formatter_class=_RAW)
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.set_defaults(func=cmd_alias_rename)

    from cove.cli import image_registry  # pull, push: OCI registries
    image_registry.register(isub, common)
